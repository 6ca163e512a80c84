"""Scores of one answer against its reference, and of a row of answers together.

* key-term recall: of the reference's most distinctive content words (rarest across all the
  references first, at most KEY_TERMS), the share the answer contains (light stemming).
* similarity: cosine of the answer's and the reference's embeddings (the bundled embedder,
  each text embedded once); an empty answer scores 0.
* score: the mean of the two, the number wins and losses are counted on.
* with retrieval: whether a source the answer was given is the note the question is about
  (`source_hit`), and whether the answer cites that source's number (`cited`).
* style: cosine to the centroid of the person's own replies; length, empty and refusal rates.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np

from ..chat.extract import content_terms

KEY_TERMS = 15
TIE = 0.01  # score differences below this are ties in the win/loss count
REFUSAL = re.compile(r"\b(?:i can(?:no|')t|i'm sorry|i am sorry|as an ai|i (?:do not|don't) have (?:access|any|enough)"
                     r"|i'm (?:not able|unable)|i am (?:not able|unable))\b", re.I)


def term_idf(references: list[str]) -> dict[str, float]:
    """Inverse document frequency of each content term over the references."""
    df = Counter(t for ref in references for t in set(content_terms(ref)))
    n = len(references)
    return {t: math.log(1 + n / c) for t, c in df.items()}


def key_terms(reference: str, idf: dict[str, float], limit: int = KEY_TERMS) -> list[str]:
    """The reference's distinctive terms: rarest first, ties in order of appearance."""
    seen: dict[str, int] = {}
    for i, term in enumerate(content_terms(reference)):
        seen.setdefault(term, i)
    return sorted(seen, key=lambda t: (-idf.get(t, 0.0), seen[t]))[:limit]


def term_recall(answer: str, terms: list[str]) -> float:
    if not terms:
        return 0.0
    have = set(content_terms(answer))
    return sum(t in have for t in terms) / len(terms)


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Cosine of two L2-normalised vectors, 0 when either text was empty."""
    if a is None or b is None:
        return 0.0
    return float(max(0.0, min(1.0, float(np.dot(a, b)))))


def is_refusal(answer: str) -> bool:
    return bool(REFUSAL.search(answer or ""))


def source_check(sources: list[dict[str, Any]], record_id: str, answer: str) -> dict[str, Any]:
    """Was the question's note among the sources (at which number), and did the answer cite it?"""
    numbers = [s.get("n", i) for i, s in enumerate(sources, 1)
               if str((s.get("origin") or {}).get("record_id")) == str(record_id)]
    return {"source_hit": bool(numbers), "hit_rank": numbers[0] if numbers else None,
            "cited": any(f"[{n}]" in (answer or "") for n in numbers)}


def score_answer(answer: str, terms: list[str], answer_vec: np.ndarray | None, ref_vec: np.ndarray | None,
                 centroid: np.ndarray | None) -> dict[str, Any]:
    """Every per-answer number (see the module docstring)."""
    empty = not (answer or "").strip()
    recall = 0.0 if empty else term_recall(answer, terms)
    similarity = 0.0 if empty else cosine(answer_vec, ref_vec)
    return {"term_recall": round(recall, 4), "similarity": round(similarity, 4),
            "score": round((recall + similarity) / 2, 4), "words": len((answer or "").split()),
            "empty": empty, "refusal": is_refusal(answer),
            "style": None if empty or centroid is None else round(cosine(answer_vec, centroid), 4)}


def _mean(values: list[Any]) -> float | None:
    values = [float(v) for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def summarise(rows: list[dict[str, Any]], retrieval: bool) -> dict[str, Any]:
    """Means over one row's answers (a model with or without retrieval)."""
    out = {"n": len(rows)}
    for key in ("score", "term_recall", "similarity", "style", "words", "seconds"):
        out[key] = _mean([r.get(key) for r in rows])
    out["empty_rate"] = _mean([r["empty"] for r in rows])
    out["refusal_rate"] = _mean([r["refusal"] for r in rows])
    out["held_out_score"] = _mean([r["score"] for r in rows if r.get("held_out")])
    if retrieval:
        out["source_hit_rate"] = _mean([r["source_hit"] for r in rows])
        out["cited_rate"] = _mean([r["cited"] for r in rows])
        out["hit_and_cited_rate"] = _mean([r["source_hit"] and r["cited"] for r in rows])
    return out


def per_theme(rows: list[dict[str, Any]], themes: list[list[str]]) -> dict[str, float | None]:
    """Mean score per theme (an item with several themes counts in each)."""
    by: dict[str, list[float]] = {}
    for row, item_themes in zip(rows, themes):
        for theme in item_themes or ["(no theme)"]:
            by.setdefault(theme, []).append(row["score"])
    return {t: _mean(v) for t, v in sorted(by.items())}


def win_loss(model_rows: list[dict[str, Any]], base_rows: list[dict[str, Any]]) -> dict[str, int]:
    """Questions a model answered better / worse / as well as the base (same retrieval setting)."""
    out = {"wins": 0, "losses": 0, "ties": 0}
    for mine, theirs in zip(model_rows, base_rows):
        diff = mine["score"] - theirs["score"]
        out["wins" if diff > TIE else "losses" if diff < -TIE else "ties"] += 1
    return out
