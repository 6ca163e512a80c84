"""Evaluation on the person's own material: did fine-tuning help, and where?

`evaluate_run(ws, run_id, config, progress)` compares models (the bundled base and the run's
tuned model by default; any run's export, `RUN:lora`, or a .gguf path) on three things:

1. held-out perplexity of the person's replies in the test split, base vs the run's adapter
   (`evaluate.perplexity`, transformers + PEFT, assistant tokens only), per theme;
2. document questions (`evaluate.items`) answered by each model through the chat core
   (`rhizome.chat.answer`, llama.cpp), with and without retrieval, scored by key-term recall and
   embedding similarity to the reference, and whether the right source was retrieved and cited
   (`evaluate.scoring`);
3. style: the answers to the person's own conversation prompts, compared with how they write
   (embedding similarity to the centroid of their replies), plus length, empty and refusal rates.

Results go to `runs/<id>/eval/<timestamp>/` (`results.json`, `summary.md`; see
`evaluate.report`). A fixed seed picks the same questions and seeds llama.cpp's sampler, so
a rerun gives the same numbers.
"""
from __future__ import annotations

import time
from typing import Any

from ..config import ChatConfig, EvalConfig
from ..events import ProgressFn, emit
from ..workspace import UserError, Workspace
from . import items, scoring
from .report import compare_evals, latest_eval, list_evals, load_eval, save_eval

__all__ = ["evaluate_run", "list_evals", "load_eval", "latest_eval", "compare_evals", "model_specs"]


def tuned_spec(ws: Workspace, run_id: str) -> str:
    """The chat model name of a run's tuned model: its exported GGUF, else base + its GGUF LoRA."""
    from ..chat import list_models

    names = [m["name"] for m in list_models(ws) if m.get("run_id") == run_id]
    for name in names:
        if not name.endswith(":lora"):
            return name
    if names:
        return names[0]
    raise UserError(f"run {run_id} has no export: the eval answers through llama.cpp, so export it first "
                    f"(`python -m rhizome export --run {run_id}`, or the Export tab)")


def model_specs(ws: Workspace, run_id: str, wanted: list[str]) -> list[tuple[str, str]]:
    """(label, chat model name) pairs; `tuned` is the run's own model."""
    from ..chat import resolve_model

    specs = [("base", "base"), ("tuned", tuned_spec(ws, run_id))] if not wanted else []
    for spec in wanted:
        if spec in (run_id, "tuned"):
            specs.append(("tuned", tuned_spec(ws, run_id)))
        elif spec in ("base", "bundled"):
            specs.append(("base", "base"))
        else:
            choice = resolve_model(ws, tuned_spec(ws, spec) if ws.run_dir(spec).is_dir() and "/" not in spec else spec)
            specs.append((spec, choice.name))
    seen, out = set(), []
    for label, name in specs:
        if label not in seen:
            seen.add(label)
            out.append((label, name))
    return out


def _check_run(ws: Workspace, run_id: str) -> None:
    if not run_id or "/" in run_id or run_id.startswith(".") or not ws.run_dir(run_id).is_dir():
        runs = ", ".join(ws.list_runs()[:5]) or "none yet"
        raise UserError(f"no run {run_id!r} in {ws.runs} (runs: {runs}): train one with `python -m rhizome train`")


def _check_memory(ws: Workspace) -> None:
    from ..memory import open_memory

    memory = open_memory(ws)
    if memory is None or len(memory) == 0:
        raise UserError(f"no memory index with notes in {ws.memory}: run `python -m rhizome build` first, "
                        "or evaluate without retrieval (--retrieval off)")


def _chat_config(config: EvalConfig, model: str, retrieval: bool, base: ChatConfig) -> ChatConfig:
    return base.replace(model=model, retrieval=retrieval, seed=config.seed, max_tokens=config.max_tokens,
                        answer_mode=config.answer_mode, n_threads=config.n_threads or base.n_threads,
                        temperature=base.temperature if config.temperature is None else config.temperature)


def _answer_all(ws: Workspace, rows: list[dict[str, Any]], questions: list[dict], config: EvalConfig,
                chat: ChatConfig, progress: ProgressFn | None) -> None:
    """Fill each row's `answers`: every question answered by the row's model and retrieval setting."""
    from ..chat import answer

    total, done = len(rows) * len(questions), 0
    for row in rows:
        row["answers"] = []
        settings = _chat_config(config, row["spec"], row["retrieval"], chat)
        for item in questions:
            got = answer(ws, item["question"], settings)
            row["answers"].append({"id": item["id"], "answer": got.answer, "sources": got.sources,
                                   "seconds": got.timings.get("total_s"),
                                   "tokens": got.timings.get("completion_tokens")})
            done += 1
            emit(progress, "answers", done, total, message=row["label"])


def _score_all(ws: Workspace, rows: list[dict], questions: list[dict]) -> dict[str, Any]:
    """Per-answer scores, embedding every distinct text once."""
    from ..memory.embed import EmbeddingCache

    replies = items.person_replies(ws)
    texts = [q["reference"] for q in questions] + replies
    texts += [a["answer"] for r in rows for a in r["answers"] if a["answer"].strip()]
    cache = EmbeddingCache(ws)
    unique = list(dict.fromkeys(texts))
    vectors = dict(zip(unique, cache.embed(unique))) if unique else {}
    centroid = None
    if replies:
        mean = sum(vectors[t] for t in replies) / len(replies)
        centroid = mean / max(float((mean ** 2).sum()) ** 0.5, 1e-9)
    idf = scoring.term_idf([q["reference"] for q in questions])
    for row in rows:
        for ans, item in zip(row["answers"], questions):
            ans.update(scoring.score_answer(ans["answer"], scoring.key_terms(item["reference"], idf),
                                            vectors.get(ans["answer"]), vectors.get(item["reference"]), centroid))
            ans["held_out"], ans["kind"] = item["held_out"], item["kind"]
        if row["retrieval"]:
            for ans, item in zip(row["answers"], questions):
                ans.update(scoring.source_check(ans["sources"], item["record_id"], ans["answer"]))
    return {"replies": len(replies)}


def _summaries(rows: list[dict], questions: list[dict]) -> None:
    base = {r["retrieval"]: r for r in rows if r["label"] == "base"}
    for row in rows:
        row["summary"] = scoring.summarise(row["answers"], row["retrieval"])
        row["per_theme"] = scoring.per_theme(row["answers"], [q["themes"] for q in questions])
        row["per_kind"] = {kind: scoring.summarise([a for a in row["answers"] if a["kind"] == kind], row["retrieval"])
                           for kind in sorted({q["kind"] for q in questions})}
        # style: how the answers to the person's own conversation prompts compare with how they write
        row["style"] = row["per_kind"].get("conversation")
        other = base.get(row["retrieval"])
        if other is not None and other is not row:
            row["vs_base"] = scoring.win_loss(row["answers"], other["answers"])


def evaluate_run(ws: Workspace, run_id: str, config: EvalConfig | None = None,
                 progress: ProgressFn | None = None, chat: ChatConfig | None = None) -> dict[str, Any]:
    """Evaluate the run's models on the workspace's held-out material; returns the saved result.

    `chat` holds the chat settings the models answer with (default: the chat's defaults); the
    eval's own seed, max_tokens, answer_mode and temperature override it.
    """
    config = config or EvalConfig()
    chat = chat or ChatConfig()
    started = time.perf_counter()
    _check_run(ws, run_id)
    test = items.require_test_split(ws)
    specs = model_specs(ws, run_id, config.models)
    settings = {"on": [True], "off": [False], "both": [False, True]}[config.retrieval]
    if True in settings:
        _check_memory(ws)
    emit(progress, "questions", 0, 1)
    questions = items.document_questions(ws, test, config.questions, config.seed)
    emit(progress, "questions", 1, 1, message=f"{len(questions)} questions")
    if not questions:
        raise UserError(f"nothing to ask: {ws.split_path('test')} has no question/answer examples")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    perplexity = _perplexity(ws, run_id, test, config, progress)
    timings["perplexity_s"] = round(time.perf_counter() - clock, 2)
    rows = [{"label": label, "spec": spec, "retrieval": r} for label, spec in specs for r in settings]
    clock = time.perf_counter()
    _answer_all(ws, rows, questions, config, chat, progress)
    timings["answers_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    emit(progress, "score", 0, 1)
    style = _score_all(ws, rows, questions)
    _summaries(rows, questions)
    emit(progress, "score", 1, 1)
    timings["score_s"] = round(time.perf_counter() - clock, 2)
    timings["total_s"] = round(time.perf_counter() - started, 2)
    result = {"run_id": run_id, "config": config.to_dict(), "chat": chat.to_dict(), "questions": questions,
              "rows": rows, "perplexity": perplexity, "style_basis": style, "timings": timings}
    return save_eval(ws, run_id, result)


def _perplexity(ws: Workspace, run_id: str, test: list[dict], config: EvalConfig,
                     progress: ProgressFn | None) -> dict[str, Any] | None:
    if not config.perplexity:
        return None
    from .perplexity import heldout_perplexity, sample_examples

    return heldout_perplexity(ws, run_id, sample_examples(test, config.perplexity_examples, config.seed), progress,
                              of=len(test))
