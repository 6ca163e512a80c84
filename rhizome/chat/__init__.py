"""Chat stage: answer a question with a local GGUF model, grounded in the workspace's memory.

`answer(ws, question, config, on_token)` picks the model (`base`, a run id or `run:quant` from
`list_models`, or a .gguf path), retrieves sources (unless retrieval is off), fits them into the
context left after the question and the answer budget, streams the reply token by token to
`on_token`, and returns an `Answer` with the cited sources and timings. `compare` asks base and
tuned model the same question over the same sources. Speech lives in `chat.speech`.

With `session=NAME` the answer continues a stored conversation (`chat.sessions`): its earlier
turns go into the prompt (newest first, as many as fit, see `chat.history`), retrieval searches
with the previous question too, the persona saved with the session is the system prompt, the
question is stored when asked and the answer when complete, and the exchange joins the memory
(unless the session is private). `<think>` reasoning is kept out of the answer text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ChatConfig
from ..cpu import interactive_threads, prompt_threads, recent_load
from ..models import bundled_gguf_path
from ..workspace import UserError, Workspace, read_json
from . import extract, rag
from . import history as hist

__all__ = ["Answer", "answer", "compare", "list_models", "resolve_model"]

MIN_ANSWER_TOKENS = 16  # a question must leave at least this much room to answer in


@dataclass
class Answer:
    """One reply: text, the sources it was given, the model's name, and where the time went."""

    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    model: str = "base"
    timings: dict[str, Any] = field(default_factory=dict)
    reasoning: str = ""
    """What the model thought between <think> and </think>: shown folded, never spoken or remembered."""
    history_turns: int = 0
    """Earlier turns of the session that went into the prompt."""
    session: str | None = None
    saved: bool = False
    """Whether the exchange was stored (False without a session, or when it was deleted meanwhile)."""
    messages: list[dict[str, str]] = field(default_factory=list, repr=False)
    """The chat messages the model was given (system, earlier turns, sources and question)."""

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "sources": self.sources, "model": self.model, "timings": self.timings,
                "reasoning": self.reasoning, "history_turns": self.history_turns, "session": self.session,
                "saved": self.saved}


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
    other = recent_load()  # the cores free now (the last second), not at load time
    engine.set_threads(interactive_threads(config.n_threads, other), prompt_threads(config.n_threads, other))
    return engine


def _messages(config: ChatConfig, user: str, history: list | tuple = ()) -> list[dict[str, str]]:
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    earlier = [m for turn in history for m in hist.turn_messages(turn)]
    return [*system, *earlier, {"role": "user", "content": user}]


def _prepare(engine: Any, question: str, hits: list[dict], config: ChatConfig,
             history: list | tuple = ()) -> tuple[list[int], list[str], list, int, list]:
    """Prompt tokens with as many earlier turns and sources as fit, stop strings, chosen sources,
    answer budget and the turns kept. The system prompt and the question are never cut."""
    bare, stops = engine.prompt_tokens(_messages(config, question))
    if len(bare) + MIN_ANSWER_TOKENS > engine.n_ctx:
        raise UserError(f"the question is too long: with the prompt it takes {len(bare)} tokens of the "
                        f"{engine.n_ctx}-token context; shorten it or raise n_ctx")
    max_tokens = min(config.max_tokens, engine.n_ctx - len(bare))
    # the sources header and instructions cost a few dozen tokens beyond the blocks themselves
    room = engine.n_ctx - len(bare) - max_tokens - 48
    # earlier turns may take half the room when there are sources to share it with, all of it otherwise
    kept = hist.fit_history(list(history), room // 2 if hits else room, engine.count_tokens) if room > 0 else []
    with_history = len(engine.prompt_tokens(_messages(config, question, kept))[0]) if kept else len(bare)
    budget = room - (with_history - len(bare))
    chosen = rag.fit_sources(hits, budget, engine.count_tokens) if hits else []
    while True:
        user = rag.user_message(question, [b for _, b in chosen], config.prompt_layout)
        tokens, stops = engine.prompt_tokens(_messages(config, user, kept))
        if len(tokens) + max_tokens <= engine.n_ctx or not (chosen or kept):
            return tokens, stops, chosen, min(max_tokens, engine.n_ctx - len(tokens)), kept
        if chosen:
            chosen = chosen[:-1]  # the estimate was short: drop the weakest source and re-measure
        else:
            kept = kept[1:]  # then the oldest turn


def _respond(choice: ModelChoice, question: str, hits: list[dict], config: ChatConfig,
             on_token: Callable[[str], None] | None, timings: dict[str, Any], history: list | tuple = ()) -> Answer:
    from .llm import ENGINES

    started = time.perf_counter()
    with ENGINES.lock:  # one generation at a time; also keeps this engine from being evicted mid-answer
        engine = _engine(choice, config)
        load_s, engine.load_s = engine.load_s, 0.0  # reported once, by the answer that paid for it
        tokens, stops, chosen, max_tokens, kept = _prepare(engine, question, hits, config, history)
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
    text, reasoning = hist.split_reasoning(result.text)
    user = rag.user_message(question, [b for _, b in chosen], config.prompt_layout)
    return Answer(text, rag.source_entries(chosen), choice.name, timings, reasoning=reasoning,
                  history_turns=len(kept), messages=_messages(config, user, kept))


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
           on_token: Callable[[str], None] | None = None, session: str | None = None) -> Answer:
    """Answer `question` with the configured model, streaming tokens to `on_token`.

    `session`: continue (or start) that stored conversation; None answers statelessly.
    """
    config = config or ChatConfig()
    question = _check_question(question)
    choice = resolve_model(ws, config.model)
    if session is None:
        hits, timings = _retrieve(ws, question, config)
        return _reply(choice, question, hits, config, on_token, timings)
    store, opened, turns, config = _open_session(ws, session, config)
    hits, timings = _retrieve(ws, hist.retrieval_query(question, turns), config)
    question_id = store.add_question(opened.name, question)
    result = _reply(choice, question, hits, config, on_token, timings, turns)
    return _save_turn(ws, store, opened.name, question_id, question, result)


def _reply(choice: ModelChoice, question: str, hits: list[dict], config: ChatConfig,
           on_token: Callable[[str], None] | None, timings: dict[str, Any], history: list | tuple = ()) -> Answer:
    """Quote the sources (ChatConfig.answer_mode, see chat.extract) or let the model answer."""
    hits = extract.focus_sources(hits, question, config.source_chars)
    wanted = extract.wants_extractive(config.answer_mode, choice.path, choice.lora_path, config.small_model_mb, hits)
    text = extract.extractive_answer(question, hits) if wanted else ""
    if not text:  # generation asked for, or no sentence of the sources to quote
        return _respond(choice, question, hits, config, on_token, timings, history)
    if on_token is not None:
        on_token(text)
    spent = round(timings.get("retrieval_ms", 0) / 1000, 3)
    return Answer(text, rag.source_entries([(h, "") for h in hits]), choice.name,
                  {**timings, "answer_mode": "extractive", "total_s": spent})


def _open_session(ws: Workspace, name: str, config: ChatConfig):
    """The store, the session (created when new), its completed turns, and the config with its persona."""
    from .sessions import SessionStore

    store = SessionStore(ws)
    opened = store.open(name)
    if opened.persona:
        config = config.replace(system_prompt=opened.persona)
    return store, opened, store.turns(opened.name), config


def _save_turn(ws: Workspace, store: Any, name: str, question_id: int, question: str, result: Answer) -> Answer:
    """Store the answer; join the exchange to the memory unless the session is private.

    A session deleted while the answer streamed keeps nothing: the answer is returned, unsaved."""
    from .sessions import Turn

    current = store.add_answer(question_id, result.answer, result.reasoning, result.model, result.sources,
                               result.timings)
    result.saved = current is not None
    result.session = current.name if current else name
    if current is not None and not current.private and result.answer:
        started = time.perf_counter()
        turn = Turn(question, result.answer, asked=time.time(), question_id=question_id)
        hist.remember(ws, current, turn)
        result.timings["remember_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def compare(ws: Workspace, question: str, tuned_model: str, config: ChatConfig | None = None,
            on_token: Callable[[str, str], None] | None = None, session: str | None = None) -> dict[str, Answer]:
    """Base and tuned model answer the same question over the same retrieved sources.

    `on_token(side, text)` streams both replies ("base" first, then "tuned"). With `session`,
    both see its earlier turns and the tuned answer is the one stored.
    """
    config = config or ChatConfig()
    if config.answer_mode == "auto":  # quoting the notes would make both sides the same: compare the models
        config = config.replace(answer_mode="generate")
    question = _check_question(question)
    base, tuned = resolve_model(ws, "base"), resolve_model(ws, tuned_model)
    turns: list = []
    if session is not None:
        store, opened, turns, config = _open_session(ws, session, config)
    hits, timings = _retrieve(ws, hist.retrieval_query(question, turns), config)
    question_id = store.add_question(opened.name, question) if session is not None else 0
    stream = (lambda side: (lambda text: on_token(side, text))) if on_token else (lambda side: None)
    answers = {"base": _reply(base, question, hits, config, stream("base"), dict(timings), turns),
               "tuned": _reply(tuned, question, hits, config, stream("tuned"), dict(timings), turns)}
    if session is not None:
        answers["tuned"] = _save_turn(ws, store, opened.name, question_id, question, answers["tuned"])
        answers["base"].session = answers["tuned"].session
    return answers
