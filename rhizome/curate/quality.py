"""Quality: a score in [0, 1] for each example from named signals, kept for inspection.

Signals, each in [0, 1], judged on the reply the model is trained to give:
* `length`      — very short replies teach little; very long ones are often pasted dumps.
* `alpha`       — share of letters among visible characters (symbol soup scores low).
* `repetition`  — share of distinct word trigrams (loops like "the the the" score low).
* `coherence`   — cosine between the prompt's and the reply's cached embeddings.
* `formatting`  — unbalanced code fences, leaked markup, shouting, runs of punctuation.
The score is their weighted mean, gated by the two degeneracy signals: a reply that loops or is
mostly symbols scores low whatever else it does well (gate = min(1, 2*repetition, 2*alpha)).
`qa_quality_score_threshold` drops the low ones.
"""
from __future__ import annotations

import re

import numpy as np

from ..records import Example

WEIGHTS = {"length": 0.2, "alpha": 0.15, "repetition": 0.25, "coherence": 0.25, "formatting": 0.15}
_MARKUP = re.compile(r"<\|?/?(?:div|span|p|br|script|endoftext|im_start|im_end)\b|\ufffd|&nbsp;|&amp;|\\u[0-9a-f]{4}", re.I)
_PUNCT_RUN = re.compile(r"([!?.*#=~_-])\1{5,}")


def length_signal(words: int) -> float:
    """0 for an empty reply, 1 from 12 words, easing down past 1,500 words."""
    if words >= 1500:
        return max(0.5, 1.0 - (words - 1500) / 5000)
    return min(1.0, words / 12)


def alpha_signal(text: str) -> float:
    visible = len(text) - sum(map(str.isspace, text))
    if not visible:
        return 0.0
    letters = sum(map(str.isalpha, text))
    return float(np.clip((letters / visible - 0.3) / 0.4, 0.0, 1.0))


def repetition_signal(text: str) -> float:
    words = text.lower().split()
    if len(words) < 6:
        return 1.0
    grams = list(zip(words, words[1:], words[2:]))
    distinct = len(set(grams)) / len(grams)
    return float(np.clip((distinct - 0.3) / 0.5, 0.0, 1.0))


def formatting_signal(text: str) -> float:
    score = 1.0
    if text.count("```") % 2:
        score -= 0.4
    if _MARKUP.search(text):
        score -= 0.3
    letters = sum(map(str.isalpha, text))
    if letters > 20 and sum(map(str.isupper, text)) > 0.6 * letters:
        score -= 0.3
    if _PUNCT_RUN.search(text):
        score -= 0.2
    return max(0.0, score)


def coherence_signal(cosines: np.ndarray) -> np.ndarray:
    """Related question/answer pairs sit around 0.3-0.8 cosine with MiniLM; unrelated near 0."""
    return np.clip(cosines / 0.45, 0.0, 1.0)


def score_examples(examples: list[Example], prompt_vecs: np.ndarray, reply_vecs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Quality per example and the signal breakdown (arrays aligned with `examples`)."""
    replies = [e.response_text() for e in examples]
    signals = {
        "length": np.array([length_signal(len(t.split())) for t in replies], dtype=np.float64),
        "alpha": np.array([alpha_signal(t) for t in replies], dtype=np.float64),
        "repetition": np.array([repetition_signal(t) for t in replies], dtype=np.float64),
        "coherence": coherence_signal(np.einsum("ij,ij->i", prompt_vecs, reply_vecs).astype(np.float64)),
        "formatting": np.array([formatting_signal(t) for t in replies], dtype=np.float64),
    }
    score = sum(WEIGHTS[name] * values for name, values in signals.items())
    gate = np.minimum(1.0, 2 * np.minimum(signals["repetition"], signals["alpha"]))
    return np.round(score * gate, 4), signals


def quality_stats(scores: np.ndarray, signals: dict[str, np.ndarray], threshold: float) -> dict:
    """Summary for dataset_metadata.json and the quality histogram of the Themes & IPF tab."""
    if scores.size == 0:
        return {"count": 0, "threshold": threshold}
    counts, edges = np.histogram(scores, bins=20, range=(0.0, 1.0))
    return {
        "count": int(scores.size),
        "threshold": threshold,
        "mean": float(scores.mean()),
        "median": float(np.median(scores)),
        "p10": float(np.percentile(scores, 10)),
        "p90": float(np.percentile(scores, 90)),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "below_threshold": int((scores < threshold).sum()),
        "histogram": {"edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()},
        "signals_mean": {name: float(v.mean()) for name, v in signals.items()},
    }
