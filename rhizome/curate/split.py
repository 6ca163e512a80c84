"""Split: train / validation / test, stratified by dominant theme and source, by groups.

Near-duplicate neighbourhoods (from dedup) move as one unit, so no group straddles two splits.
Units are ordered by stratum (dominant theme, source) and, within a stratum, by a seeded random
key; each unit then goes to the split that is furthest below its target share so far. Walking
stratum by stratum this way spreads every stratum over the splits in proportion, keeps the
global fractions exact to within one unit, and is fully deterministic for a given seed.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

SPLITS = ("train", "validation", "test")


def stratum(themes: list[str], source: str) -> tuple[str, str]:
    return (themes[0] if themes else "", source)


def assign_splits(groups: np.ndarray, strata: list[tuple[str, str]], fractions: tuple[float, float, float],
                  seed: int) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) per example."""
    n = len(groups)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[int(g) if g >= 0 else -1 - i].append(i)  # ungrouped examples are their own unit
    rng = np.random.default_rng(seed)
    units = sorted(members)
    keys = dict(zip(units, rng.random(len(units))))
    # A unit takes the stratum of its first member; groups are near-copies, so they agree.
    units.sort(key=lambda u: (strata[members[u][0]], keys[u]))
    target = np.asarray(fractions, dtype=np.float64)
    counts = np.zeros(3)
    out = np.zeros(n, dtype=np.int64)
    for u in units:
        size = len(members[u])
        deficit = target * (counts.sum() + size) - counts
        deficit[target == 0] = -np.inf
        choice = int(np.argmax(deficit))
        counts[choice] += size
        out[members[u]] = choice
    return out


def split_summary(split_of: np.ndarray, strata: list[tuple[str, str]]) -> dict[str, dict]:
    """Per split: size, source mix and the most common dominant themes."""
    out = {}
    for s, name in enumerate(SPLITS):
        idx = np.flatnonzero(split_of == s)
        sources: dict[str, int] = defaultdict(int)
        themes: dict[str, int] = defaultdict(int)
        for i in idx:
            themes[strata[i][0] or "(none)"] += 1
            sources[strata[i][1]] += 1
        top = dict(sorted(themes.items(), key=lambda kv: -kv[1])[:10])
        out[name] = {"count": int(idx.size), "sources": dict(sources), "dominant_themes": top}
    return out
