"""Retrieval for chat: ask the workspace memory, fit the hits into the context, cite them.

The question is embedded and searched in the memory index (FAISS vectors fused with FTS5
keyword hits by reciprocal rank fusion, see `rhizome.memory`). Hits are added best first while
they fit the token budget left after the question and the answer; the last one that does not
fit is cut rather than dropped when a useful part of it fits. Each source is numbered so the
answer can say [1], and the same numbers label the sources shown beside the answer.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..workspace import UserError, Workspace

MIN_SOURCE_TOKENS = 48  # a cut source shorter than this says too little to be worth its tokens
SNIPPET_CHARS = 400


def retrieve(ws: Workspace, question: str, k: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Top-k hits for the question and how long embedding and search took (ms)."""
    from ..memory import open_memory

    memory = open_memory(ws)
    if memory is None:
        raise UserError(f"no memory index in {ws.memory}: run `python -m rhizome build` first, "
                        "or turn retrieval off (--no-retrieval)")
    if len(memory) == 0:
        raise UserError(f"the memory index in {ws.memory} is empty: add documents, rebuild, "
                        "or turn retrieval off (--no-retrieval)")
    started = time.perf_counter()
    if hasattr(memory, "search_vector"):  # embed and search timed apart
        vector = memory.embed_query(question)
        embedded = time.perf_counter()
        hits = memory.search_vector(vector, k, question)
    else:
        embedded = started
        hits = memory.search(question, k)
    done = time.perf_counter()
    return hits, {"embed_ms": round((embedded - started) * 1000, 2), "search_ms": round((done - embedded) * 1000, 2)}


def cite(hit: dict[str, Any]) -> str:
    """How a source is named to the reader: its citation (file p.3), else title, else source."""
    return str(hit.get("citation") or hit.get("title") or hit.get("source") or "source")


def source_block(number: int, hit: dict[str, Any], text: str | None = None) -> str:
    return f"[{number}] {cite(hit)}\n{(text if text is not None else hit.get('text', '')).strip()}"


def fit_sources(hits: list[dict[str, Any]], budget: int, count_tokens: Callable[[str], int]) -> list[tuple[dict, str]]:
    """(hit, block) pairs, best first, whose blocks fit in `budget` tokens together."""
    chosen: list[tuple[dict, str]] = []
    used = 0
    for hit in hits:
        block = source_block(len(chosen) + 1, hit)
        size = count_tokens(block) + 2  # the blank line between sources
        if used + size <= budget:
            chosen.append((hit, block))
            used += size
            continue
        room = budget - used
        if room >= MIN_SOURCE_TOKENS:
            cut = _cut_to_fit(len(chosen) + 1, hit, room - 2, count_tokens)
            if cut:
                chosen.append((hit, cut))
        break
    return chosen


def _cut_to_fit(number: int, hit: dict[str, Any], room: int, count_tokens: Callable[[str], int]) -> str | None:
    words = str(hit.get("text", "")).split()
    while words:
        block = source_block(number, hit, " ".join(words) + " …")
        size = count_tokens(block)
        if size <= room:
            return block
        words = words[: max(0, int(len(words) * room / size) - 1)]  # shrink in proportion, then re-measure
    return None


def user_message(question: str, blocks: list[str], layout: str = "sources_first") -> str:
    """The user turn with numbered sources (when any), laid out as ChatConfig.prompt_layout says.

    sources_first: sources, instructions, then the question (the question sits nearest the
    answer). question_first: the question, then the sources. compact: sources and the question
    with a one-line instruction (fewer tokens for a small model to get lost in).
    """
    if not blocks:
        return question
    sources = "\n\n".join(blocks)
    if layout == "question_first":
        return (f"Question: {question}\n\nSources:\n{sources}\n\nAnswer the question from the sources above "
                f"and cite them by number like [1].")
    if layout == "compact":
        return f"{sources}\n\nAnswer from the notes above, citing [1]: {question}"
    return (f"Sources:\n{sources}\n\nUsing the sources above where they help, answer the question and cite "
            f"sources by number like [1].\nQuestion: {question}")


def source_entries(chosen: list[tuple[dict, str]]) -> list[dict[str, Any]]:
    """What the UI and `--json` show beside the answer."""
    entries = []
    for number, (hit, _block) in enumerate(chosen, 1):
        text = str(hit.get("text", ""))
        entries.append({
            "n": number, "citation": cite(hit), "title": hit.get("title"), "source": hit.get("source"),
            "kind": hit.get("kind"),
            "origin": hit.get("origin") or {}, "score": hit.get("score"),
            "snippet": text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else ""),
        })
    return entries
