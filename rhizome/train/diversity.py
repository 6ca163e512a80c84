"""Theme diversity during training: coverage, entropy, and per-theme validation loss.

The trainer tells the tracker which examples each step consumed (their indices travel with the
batch), so coverage is "themes seen so far / themes in the training set" and entropy is the
Shannon entropy of the seen theme counts, normalised by log(#themes) to [0, 1] (1 means every
theme was seen equally often). The counts are checkpointed with the sampler state so a resumed
run continues the same curve. Per-theme validation loss reports, for the most frequent themes,
the token-weighted loss of the validation examples carrying that theme.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Sequence

from transformers import TrainerCallback


class ThemeTracker:
    """Counts the themes of consumed training examples."""

    def __init__(self, example_themes: Sequence[Sequence[str]]) -> None:
        self.example_themes = [list(t) for t in example_themes]
        self.all_themes = sorted({t for themes in self.example_themes for t in themes})
        self.counts: Counter = Counter()
        self.examples_seen = 0

    def update(self, indices: Iterable[int]) -> None:
        for i in indices:
            self.examples_seen += 1
            self.counts.update(self.example_themes[int(i)])

    @property
    def coverage(self) -> float | None:
        if not self.all_themes:
            return None
        return sum(1 for t in self.all_themes if self.counts[t]) / len(self.all_themes)

    @property
    def entropy(self) -> float | None:
        total = sum(self.counts.values())
        if len(self.all_themes) < 2 or total == 0:
            return None
        h = -sum(c / total * math.log(c / total) for c in self.counts.values() if c)
        return h / math.log(len(self.all_themes))

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples_seen": self.examples_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = Counter({k: int(v) for k, v in (state.get("counts") or {}).items()})
        self.examples_seen = int(state.get("examples_seen", 0))


class DiversityCallback(TrainerCallback):
    """Adds `coverage` and `entropy` to every training log (read by the events writer)."""

    def __init__(self, tracker: ThemeTracker) -> None:
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            logs["coverage"] = self.tracker.coverage
            logs["entropy"] = self.tracker.entropy


def top_themes(example_themes: Sequence[Sequence[str]], k: int) -> list[str]:
    """The `k` most frequent themes (ties broken by name, for stable charts)."""
    counts = Counter(t for themes in example_themes for t in themes)
    return [t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))[:k]]


def theme_losses(
    sums: Sequence[float], counts: Sequence[float], example_themes: Sequence[Sequence[str]], themes: Sequence[str]
) -> dict[str, float]:
    """Token-weighted mean loss of the examples carrying each theme."""
    out = {}
    for theme in themes:
        s = sum(sums[i] for i, ts in enumerate(example_themes) if theme in ts)
        n = sum(counts[i] for i, ts in enumerate(example_themes) if theme in ts)
        if n:
            out[theme] = s / n
    return out
