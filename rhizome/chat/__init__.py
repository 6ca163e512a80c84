"""Chat stage: answer a question with a local GGUF model, grounded in the workspace's memory.

`answer(ws, question, config, on_token)` picks the model (`base`, a run id or `run:quant` from
`list_models`, or a .gguf path), retrieves sources (unless retrieval is off), fits them into the
context left after the question and the answer budget, streams the reply token by token to
`on_token`, and returns an `Answer` with the cited sources and timings. `compare` asks base and
tuned model the same question over the same sources. Speech lives in `chat.speech`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ChatConfig
from ..cpu import interactive_threads, other_load, prompt_threads
from ..models import bundled_gguf_path
from ..workspace import UserError, Workspace, read_json
from . import extract, rag

__all__ = ["Answer", "answer", "compare", "list_models", "resolve_model"]

MIN_ANSWER_TOKENS = 16  # a question must leave at least this much room to answer in


@dataclass
class Answer:
    """One reply: text, the sources it was given, the model's name, and where the time went."""

    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    model: str = "base"
    timings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "sources": self.sources, "model": self.model, "timings": self.timings}


@dataclass(frozen=True)
class ModelChoice:
    name: str
    path: Path
    lora_path: Path | None = None


def list_models(ws: Workspace) -> list[dict[str, Any]]:
    """Chat models: the bundled base, every GGUF each run exported, and GGUFs in WS/models/."""
    base = bundled_gguf_path()
    models = [_entry("base", base, "base")]
    for run_id in ws.list_runs():
        export = ws.run_dir(run_id) / "export"
        for gguf in sorted(export.glob("model-*.gguf")):
            models.append(_entry(f"{run_id}:{gguf.stem.removeprefix('model-')}", gguf, "export", run_id=run_id))
        lora = export / "adapter-lora.gguf"
        if lora.is_file():
            manifest = read_json(export / "export.json", default={}) or {}
            base_gguf = Path(manifest.get("base_gguf") or base)
            models.append(_entry(f"{run_id}:lora", base_gguf, "lora", run_id=run_id, lora_path=str(lora)))
    if ws.models.is_dir():
        models += [_entry(f"models/{p.name}", p, "file") for p in sorted(ws.models.glob("*.gguf"))]
    return models


def _entry(name: str, path: Path, kind: str, **extra: Any) -> dict[str, Any]:
    size = path.stat().st_size if path.is_file() else 0
    return {"name": name, "path": str(path), "kind": kind, "size_mb": round(size / 2**20, 1), **extra}


def resolve_model(ws: Workspace, spec: str | None) -> ModelChoice:
    """base | a name from list_models | a run id (its exported GGUF) | a .gguf path."""
    spec = (spec or "base").strip()
    if spec in ("base", "bundled"):
        return ModelChoice("base", bundled_gguf_path())
    models = list_models(ws)
    for entry in models:
        if entry["name"] == spec:
            lora = entry.get("lora_path")
            return ModelChoice(spec, Path(entry["path"]), Path(lora) if lora else None)
    if "/" not in spec and ws.run_dir(spec).is_dir():
        return _run_model(ws, spec)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        return ModelChoice(str(path), path)
    names = ", ".join(m["name"] for m in models)
    raise UserError(f"unknown model {spec!r}: choose one of {names}, a run id, or a path to a .gguf file")


def _run_model(ws: Workspace, run_id: str) -> ModelChoice:
    export = ws.run_dir(run_id) / "export"
    manifest = read_json(export / "export.json", default={}) or {}
    candidates = [Path(manifest["gguf"])] if manifest.get("gguf") else []
    candidates += [export / f"model-{q}.gguf" for q in ("q8_0", "q4_k_m", "f16")]
    for path in candidates:
        if path.is_file():
            return ModelChoice(f"{run_id}:{path.stem.removeprefix('model-')}", path)
    raise UserError(f"run {run_id} has no exported GGUF yet: run `python -m rhizome export --run {run_id}`")


def _engine(choice: ModelChoice, config: ChatConfig):
    from .llm import ENGINES

    engine = ENGINES.get(choice.path, config.n_ctx, choice.lora_path, config.max_loaded_models)
    other = other_load()  # the cores free now, not at load time
    engine.set_threads(interactive_threads(config.n_threads, other), prompt_threads(config.n_threads, other))
    return engine


def _messages(config: ChatConfig, user: str) -> list[dict[str, str]]:
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    return [*system, {"role": "user", "content": user}]


def _prepare(engine: Any, question: str, hits: list[dict],
             config: ChatConfig) -> tuple[list[int], list[str], list, int]:
    """Prompt tokens with as many sources as fit, stop strings, chosen sources, answer budget."""
    bare, stops = engine.prompt_tokens(_messages(config, question))
    if len(bare) + MIN_ANSWER_TOKENS > engine.n_ctx:
        raise UserError(f"the question is too long: with the prompt it takes {len(bare)} tokens of the "
                        f"{engine.n_ctx}-token context; shorten it or raise n_ctx")
    max_tokens = min(config.max_tokens, engine.n_ctx - len(bare))
    # the sources header and instructions cost a few dozen tokens beyond the blocks themselves
    budget = engine.n_ctx - len(bare) - max_tokens - 48
    chosen = rag.fit_sources(hits, budget, engine.count_tokens) if hits else []
    while True:
        tokens, stops = engine.prompt_tokens(_messages(config, rag.user_message(question, [b for _, b in chosen],
                                                                                config.prompt_layout)))
        if len(tokens) + max_tokens <= engine.n_ctx or not chosen:
            return tokens, stops, chosen, min(max_tokens, engine.n_ctx - len(tokens))
        chosen = chosen[:-1]  # the estimate was short: drop the weakest source and re-measure


def _respond(choice: ModelChoice, question: str, hits: list[dict], config: ChatConfig,
             on_token: Callable[[str], None] | None, timings: dict[str, Any]) -> Answer:
    from .llm import ENGINES

    started = time.perf_counter()
    with ENGINES.lock:  # one generation at a time; also keeps this engine from being evicted mid-answer
        engine = _engine(choice, config)
        load_s, engine.load_s = engine.load_s, 0.0  # reported once, by the answer that paid for it
        tokens, stops, chosen, max_tokens = _prepare(engine, question, hits, config)
        result = engine.generate(tokens, stops, config, max_tokens, on_token)
    decode_s = result.seconds - (result.first_token_s or 0.0)
    rate = (result.completion_tokens - 1) / decode_s if result.completion_tokens > 1 and decode_s > 0 else None
    timings = {
        **timings, "load_s": round(load_s, 3), "prompt_tokens": len(tokens),
        "completion_tokens": result.completion_tokens,
        "first_token_s": round(result.first_token_s, 3) if result.first_token_s is not None else None,
        "generation_s": round(result.seconds, 3),
        "tokens_per_s": round(rate, 1) if rate else None,
        "total_s": round(time.perf_counter() - started + timings.get("retrieval_ms", 0) / 1000, 3),
        "finish_reason": result.finish_reason, "template": engine.template_source,
    }
    return Answer(result.text.strip(), rag.source_entries(chosen), choice.name, timings)


def _retrieve(ws: Workspace, question: str, config: ChatConfig) -> tuple[list[dict], dict[str, Any]]:
    if not config.retrieval or config.top_k == 0:
        return [], {"retrieval": False}
    hits, spent = rag.retrieve(ws, question, config.top_k)
    return hits, {"retrieval": True, **spent, "retrieval_ms": round(spent["embed_ms"] + spent["search_ms"], 2)}


def _check_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise UserError("the question is empty: type or say something to ask")
    return question


def answer(ws: Workspace, question: str, config: ChatConfig | None = None,
           on_token: Callable[[str], None] | None = None) -> Answer:
    """Answer `question` with the configured model, streaming tokens to `on_token`."""
    config = config or ChatConfig()
    question = _check_question(question)
    choice = resolve_model(ws, config.model)
    hits, timings = _retrieve(ws, question, config)
    return _reply(choice, question, hits, config, on_token, timings)


def _reply(choice: ModelChoice, question: str, hits: list[dict], config: ChatConfig,
           on_token: Callable[[str], None] | None, timings: dict[str, Any]) -> Answer:
    """Quote the sources (ChatConfig.answer_mode, see chat.extract) or let the model answer."""
    hits = extract.focus_sources(hits, question, config.source_chars)
    wanted = extract.wants_extractive(config.answer_mode, choice.path, choice.lora_path, config.small_model_mb, hits)
    text = extract.extractive_answer(question, hits) if wanted else ""
    if not text:  # generation asked for, or no sentence of the sources to quote
        return _respond(choice, question, hits, config, on_token, timings)
    if on_token is not None:
        on_token(text)
    spent = round(timings.get("retrieval_ms", 0) / 1000, 3)
    return Answer(text, rag.source_entries([(h, "") for h in hits]), choice.name,
                  {**timings, "answer_mode": "extractive", "total_s": spent})


def compare(ws: Workspace, question: str, tuned_model: str, config: ChatConfig | None = None,
            on_token: Callable[[str, str], None] | None = None) -> dict[str, Answer]:
    """Base and tuned model answer the same question over the same retrieved sources.

    `on_token(side, text)` streams both replies ("base" first, then "tuned").
    """
    config = config or ChatConfig()
    if config.answer_mode == "auto":  # quoting the notes would make both sides the same: compare the models
        config = config.replace(answer_mode="generate")
    question = _check_question(question)
    base, tuned = resolve_model(ws, "base"), resolve_model(ws, tuned_model)
    hits, timings = _retrieve(ws, question, config)
    stream = (lambda side: (lambda text: on_token(side, text))) if on_token else (lambda side: None)
    return {"base": _reply(base, question, hits, config, stream("base"), dict(timings)),
            "tuned": _reply(tuned, question, hits, config, stream("tuned"), dict(timings))}
