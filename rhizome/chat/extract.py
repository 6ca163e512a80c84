"""Answers taken from the sources themselves: the sentences nearest the question, cited.

A 135M model given four retrieved notes mostly ignores them (or loops on a timestamp); the
notes already hold the answer. `extractive_answer` scores every sentence of the retrieved
sources by the question's words it contains (rarer words count more, IDF over those sentences)
and returns the best few, each with the number of its source, under "From your notes:".
Questions, sentences that only restate the question, and the person's own conversation messages
are never quoted: memory holds what the person asked and told too, and quoting it back answers
nothing (the eval's document questions: 0.725 with them left out, 0.722 with them quoted). When
nothing is left to quote the model answers instead.
`focus_source` shortens a long source to its sentences nearest the question, in their order,
so a small context holds more sources (ChatConfig.source_chars).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..curate.lexicon import STOP_WORDS

HEADER = "From your notes:"
MAX_SENTENCES = 3
MAX_CHARS = 600
MIN_WORDS = 4
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")


def stem(word: str) -> str:
    """A light stem so 'starters' meets 'starter' (no dictionary, no download)."""
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> list[str]:
    """Stemmed words that carry meaning (stop words and 1-2 letter words dropped), in order."""
    return [stem(w) for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOP_WORDS]


def sentences(text: str) -> list[str]:
    """Sentences of a source, markdown list and heading marks removed, short fragments dropped."""
    out = []
    for part in _SENTENCE.split(text or ""):
        part = re.sub(r"^\s*(?:#+|[-*•]|\d+[.)])\s*", "", part).strip()
        if len(part.split()) >= MIN_WORDS:
            out.append(part)
    return out


def _scores(question: str, candidates: list[str]) -> list[float]:
    """Each sentence's IDF-weighted overlap with the question, damped by its length."""
    wanted = set(content_terms(question))
    bags = [set(content_terms(s)) for s in candidates]
    n = len(bags)
    idf = {t: math.log(1 + n / (1 + sum(t in b for b in bags))) for t in wanted}
    # a fourth root: long sentences match more words by chance, but not proportionally more
    return [sum(idf[t] for t in wanted & bag) / max(len(bag), 1) ** 0.25 for bag in bags]


def focus_source(question: str, text: str, chars: int) -> str:
    """`text` cut to about `chars` characters: its sentences nearest the question, in order."""
    if chars <= 0 or len(text) <= chars:
        return text
    parts = sentences(text) or [text]
    scores = _scores(question, parts)
    ranked = sorted(range(len(parts)), key=lambda i: (-scores[i], i))
    keep, used = set(), 0
    for i in ranked:
        if used + len(parts[i]) > chars and keep:
            break
        keep.add(i)
        used += len(parts[i]) + 1
    return " ".join(parts[i] for i in sorted(keep))[: max(chars, 1)]


def focus_sources(hits: list[dict[str, Any]], question: str, chars: int) -> list[dict[str, Any]]:
    """Hits with their text focused (see focus_source); the originals are left untouched."""
    if chars <= 0:
        return hits
    return [{**h, "text": focus_source(question, str(h.get("text", "")), chars)} for h in hits]


def _answers(hit: dict[str, Any]) -> bool:
    """Not the person's own message in a conversation (it asked or told; the replies and notes answer)."""
    return (hit.get("origin") or {}).get("role") != "user"


def _restates(sentence: str, asked: set[str]) -> bool:
    """A question, or a sentence saying nothing the question did not (memory holds the person's own
    questions too, and quoting one back answers nothing)."""
    return sentence.rstrip().endswith("?") or set(content_terms(sentence)) <= asked


def extractive_answer(question: str, hits: list[dict[str, Any]]) -> str:
    """The best sentences of the sources for the question, each cited as [n] (n = hit's number)."""
    asked = set(content_terms(question))
    pool = [(n, i, s) for n, hit in enumerate(hits, 1) if _answers(hit)
            for i, s in enumerate(sentences(str(hit.get("text", "")))) if not _restates(s, asked)]
    if not pool:
        return ""
    scores = _scores(question, [s for _, _, s in pool])
    # ties (and no overlap at all) go to the better-ranked source and the earlier sentence
    order = sorted(range(len(pool)), key=lambda k: (-scores[k], pool[k][0], pool[k][1]))
    chosen, used = [], 0
    for k in order[: MAX_SENTENCES * 4]:
        if len(chosen) == MAX_SENTENCES or (used + len(pool[k][2]) > MAX_CHARS and chosen):
            break
        chosen.append(k)
        used += len(pool[k][2])
    lines = [f"{pool[k][2]} [{pool[k][0]}]" for k in sorted(chosen, key=lambda k: (pool[k][0], pool[k][1]))]
    return HEADER + "\n" + "\n".join(lines)


def is_small_model(path: Path, lora: Path | None, small_model_mb: int) -> bool:
    """A model file too small to answer from its sources (the base file decides for a LoRA)."""
    try:
        return path.stat().st_size < small_model_mb * 2**20
    except OSError:
        return False


def wants_extractive(mode: str, path: Path, lora: Path | None, small_model_mb: int, hits: list) -> bool:
    """Whether this answer should be quoted from the sources rather than generated."""
    if not hits or mode == "generate":
        return False
    return mode == "extractive" or is_small_model(path, lora, small_model_mb)
