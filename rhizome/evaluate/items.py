"""What an evaluation asks: questions about the person's material, held-out prompts, their replies.

Questions come first from the held-out test split (a conversation turn: the person's prompt and
their real reply; or a question the build wrote for a chunk of the notes, with the chunk as the
reference), then from the other chunks of the notes in the memory index, their questions written
as the build writes them (`curate.questions.ask_questions`: the template mode, or the cached LLM
questions), then from the training examples when still more are wanted (marked as seen in
training). Each item knows its record (`record_id`), so a retrieved source can be checked
against it, and its themes, so scores can be split by theme. A fixed seed picks the same items.
"""
from __future__ import annotations

import random
import sqlite3
from typing import Any

from ..workspace import UserError, Workspace, read_json


def read_examples(ws: Workspace, split: str) -> list[dict[str, Any]]:
    """A split's examples; from `*_detailed.jsonl` when there, which adds each example's origin."""
    from ..train.data import read_split

    return read_split(ws, split, detailed=True)


def require_test_split(ws: Workspace) -> list[dict[str, Any]]:
    """The test split's examples, or a clear error when the workspace has none."""
    test = read_examples(ws, "test")
    if not test:
        raise UserError(f"no held-out test split in {ws.split_path('test')}: run `python -m rhizome build` "
                        "(with a test fraction above 0) before evaluating")
    return test


def is_document(example: dict[str, Any]) -> bool:
    """A question -> note-chunk example (the build writes one per chunk of every document)."""
    return "chunk" in (example.get("origin") or {})


def _last_pair(example: dict[str, Any]) -> tuple[str, str] | None:
    msgs = example.get("messages") or []
    if len(msgs) < 2 or msgs[-1].get("role") != "assistant" or msgs[-2].get("role") != "user":
        return None
    return str(msgs[-2].get("content") or ""), str(msgs[-1].get("content") or "")


def _key(origin: dict[str, Any]) -> tuple[str, str]:
    """Which piece of material an example or chunk is: its record and chunk (or turn)."""
    where = f"chunk{origin['chunk']}" if "chunk" in origin else f"turn{origin.get('turn', '')}"
    return str(origin.get("record_id")), where


def _item(key: tuple[str, str], question: str, reference: str, title: Any, themes: list[str], kind: str,
          held_out: bool) -> dict[str, Any]:
    return {"id": f"{key[0]}:{key[1]}", "question": question, "reference": reference, "record_id": key[0],
            "title": title, "themes": themes, "kind": kind, "held_out": held_out}


def _example_items(examples: list[dict[str, Any]], held_out: bool) -> list[dict[str, Any]]:
    items = []
    for ex in examples:
        pair, origin = _last_pair(ex), ex.get("origin") or {}
        if pair and pair[0].strip() and pair[1].strip() and origin.get("record_id"):
            items.append(_item(_key(origin), pair[0], pair[1], origin.get("title"), list(ex.get("themes") or []),
                               "note" if is_document(ex) else "conversation", held_out))
    return items


def _memory_chunks(ws: Workspace) -> list[dict[str, Any]]:
    import json

    path = ws.memory / "chunks.sqlite"
    if not path.is_file():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT text, title, origin FROM chunks WHERE kind = 'chunk' ORDER BY id").fetchall()
    finally:
        db.close()
    return [{"text": t, "title": title or "", "origin": json.loads(o or "{}")} for t, title, o in rows]


def _note_items(ws: Workspace, themes: dict[tuple[str, str], list[str]]) -> list[dict[str, Any]]:
    """A question for every chunk of the notes, written as the build writes them."""
    from ..config import BuildConfig
    from ..curate.questions import ask_questions

    chunks = _memory_chunks(ws)
    if not chunks:
        return []
    mode = ((read_json(ws.dataset / "dataset_metadata.json", default={}) or {}).get("questions") or {}).get("mode")
    # all chunks at once: template questions pick keyphrases against the other chunks, as the build did
    questions, _ = ask_questions(ws, [c["text"] for c in chunks], [c["title"] for c in chunks],
                                 BuildConfig(question_mode="llm" if mode == "llm" else "template"))
    return [_item(_key(c["origin"]), q, c["text"], c["title"], themes.get(_key(c["origin"]), []), "note", False)
            for c, q in zip(chunks, questions) if q.strip() and c["text"].strip()]


def document_questions(ws: Workspace, test: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` question/reference items about the person's material, in a seeded order.

    First the held-out test split (notes and conversations), then the other chunks of the
    notes, then training examples (marked `held_out: False`, their scores reported apart).
    """
    rng = random.Random(seed)
    trained = read_examples(ws, "train") + read_examples(ws, "validation")
    themes = {_key(ex["origin"]): list(ex.get("themes") or []) for ex in trained + test if ex.get("origin")}
    tiers = [_example_items(test, True), _note_items(ws, themes), _example_items(trained, False)]
    chosen, seen = [], set()
    for tier in tiers:
        rng.shuffle(tier)
        for item in tier:
            if item["id"] not in seen and len(chosen) < n:
                seen.add(item["id"])
                chosen.append(item)
    return chosen


def person_replies(ws: Workspace, limit: int = 2000) -> list[str]:
    """The person's own replies (assistant turns of conversations) outside the test split."""
    replies = []
    for split in ("train", "validation"):
        for ex in read_examples(ws, split):
            pair = _last_pair(ex)
            if not is_document(ex) and pair and pair[1].strip():
                replies.append(pair[1])
    return replies[:limit]
