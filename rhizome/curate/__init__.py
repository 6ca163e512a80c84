"""Curate: turn `corpus.jsonl` into a clean, deduplicated, theme-balanced training set.

Stages, one module each: clean, pairs (+ questions), dedup, quality, themes, ipf, split,
curation (the person's decisions); `build_dataset` in `build.py` runs them in order.
"""
from __future__ import annotations

from typing import Any


def build_dataset(ws, config=None, progress=None) -> dict[str, Any]:
    """corpus.jsonl -> dataset/ + memory/; returns the dataset_metadata.json content."""
    from .build import build_dataset as run

    return run(ws, config, progress)


def __getattr__(name: str) -> Any:
    # The curation helpers are light; import them on first use so `import rhizome.curate` stays cheap.
    if name in ("set_decision", "load_decisions", "list_examples", "clear_decision"):
        from . import curation

        return getattr(curation, name)
    raise AttributeError(name)


__all__ = ["build_dataset", "clear_decision", "list_examples", "load_decisions", "set_decision"]
