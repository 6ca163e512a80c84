"""Writing what a build made: split files, dropped examples, the memory index, the metadata.

`dataset/{train,validation,test}.jsonl` hold the messages format TRL and `datasets` read;
the `*_detailed.jsonl` twins add every score, the origin and the split group;
`dropped_detailed.jsonl` keeps each dropped example with its stage and reason (the Data tab can
bring one back by approving it); `dataset_metadata.json` is written last.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..config import BuildConfig
from ..records import Example, Record
from ..workspace import Workspace, write_json, write_jsonl
from .ipf import cooccurrence
from .pairs import Chunk, chunk_text, is_reflection, record_title
from .split import SPLITS, split_summary

COOCCURRENCE_TOP = 20


def citation(record: Record, origin: dict[str, Any]) -> str:
    """How a source is cited beside an answer: "paper.pdf p.3", "Title (export.json)"."""
    file = origin.get("file") or origin.get("path") or ""
    name = Path(str(file)).name if file else ""
    if origin.get("page") is not None:
        return f"{name or record.title} p.{origin['page']}"
    if record.kind == "conversation":
        title = record.title or "conversation"
        return f"{title} ({name})" if name and name != title else title
    return name or record.title or record.source


def memory_entries(records: list[Record], chunks: list[Chunk], cfg: BuildConfig, tokenizer=None) -> list[dict]:
    """Every document chunk and every message (long ones chunked), each distinct text once."""
    entries: list[dict] = []
    seen: set[str] = set()

    def add(record: Record, text: str, kind: str, **where: Any) -> None:
        if text and text not in seen:
            seen.add(text)
            origin = {**record.origin, "record_id": record.id, **where}
            entries.append({"text": text, "title": record_title(record), "source": record.source, "kind": kind,
                            "origin": origin, "citation": citation(record, origin)})

    for chunk in chunks:
        add(chunk.record, chunk.text, "chunk", chunk=chunk.index)
    for record in records:
        if is_reflection(record):
            for k, part in enumerate(chunk_text(record.text or "", cfg, tokenizer)):
                add(record, part, "reflection", chunk=k)
        elif record.kind == "conversation":
            for turn, message in enumerate(record.messages or []):
                if message.role in ("user", "assistant"):
                    for part in chunk_text(message.content, cfg, tokenizer):
                        add(record, part, "message", turn=turn, role=message.role)
    return entries


def dropped_row(ex: Example, stage: str, reason: str, examples: list[Example] | None = None,
                result: Any = None, i: int | None = None) -> dict[str, Any]:
    """A dropped example with why (and, for duplicates, which example it duplicates)."""
    why: dict[str, Any] = {"stage": stage, "reason": reason}
    if result is not None and i is not None and result.dup_of[i] >= 0:
        why["duplicate_of"] = examples[int(result.dup_of[i])].id
        why["similarity"] = round(float(result.similarity[i]), 4)
    return {**ex.to_dict(detailed=True), "dropped": why}


def theme_report(lists: list[list[str]], ipf: dict, cfg: BuildConfig, hierarchy: dict) -> dict[str, Any]:
    counts = Counter(t for themes in lists for t in themes)
    return {
        "method": cfg.semantic_method, "per_example": cfg.themes_per_example, "distinct": len(counts),
        "themeless_examples": sum(1 for t in lists if not t),
        "top": [{"theme": t, "count": c} for t, c in counts.most_common(50)],
        "before_ipf": ipf.pop("themes_before"), "after_ipf": ipf.pop("themes_after"),
        "sources_before_ipf": ipf.pop("sources_before"), "sources_after_ipf": ipf.pop("sources_after"),
        "hierarchy": dict(list(hierarchy.items())[:100]),
    }


def write_dataset(b: Any, kept: list[Example], split_of: np.ndarray, strata: list, lists: list[list[str]]) -> dict:
    """Write the split files and return the metadata (memory and timings are added later)."""
    ws, cfg = b.ws, b.cfg
    groups = b.meta.pop("_split_groups", None)
    for s, name in enumerate(SPLITS):
        idx = np.flatnonzero(split_of == s)
        write_jsonl(ws.split_path(name), (kept[i].to_dict() for i in idx))
        write_jsonl(ws.split_path(name, detailed=True),
                    ({**kept[i].to_dict(detailed=True), "split": name,
                      "group": int(groups[i]) if groups is not None else None} for i in idx))
    write_jsonl(ws.dataset / "dropped_detailed.jsonl", b.dropped)
    counts = {name: int((split_of == s).sum()) for s, name in enumerate(SPLITS)}
    top = [t for t, _ in Counter(t for ts in lists for t in ts).most_common(COOCCURRENCE_TOP)]
    _warn(b, counts, len(kept), bool(top))
    drops_total: Counter = Counter()
    for stage_drops in b.drops.values():
        drops_total.update(stage_drops)
    return {
        "version": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": cfg.to_dict(),
        "counts": {**counts, "total": len(kept)},
        "records": b.meta.pop("records", {}),
        "examples": b.meta.pop("examples", {}),
        "drops": b.drops,
        "drops_total": dict(drops_total),
        "dedup": b.meta["dedup"],
        "quality": b.meta["quality"],
        "themes": theme_report(lists, b.meta["ipf"], cfg, b.meta.pop("themes_hierarchy", {})),
        "ipf": b.meta["ipf"],
        "cooccurrence": cooccurrence(lists, top),
        "splits": split_summary(split_of, strata),
        "curation": b.meta.get("curation", {}),
        "questions": b.meta.get("questions", {}),
        "embeddings": b.meta.get("embeddings", {}),
        "warnings": b.warnings,
    }


def _warn(b: Any, counts: dict[str, int], kept: int, themed: bool) -> None:
    for name in ("validation", "test"):
        if counts[name] == 0 and b.cfg.split[SPLITS.index(name)] > 0:
            b.warnings.append(f"the {name} split is empty: only {kept} examples survived the build")
    if not themed:
        b.warnings.append("no themes found (texts too short, too few, or only stop words): weights stay uniform")
    ipf = b.meta.get("ipf", {})
    if themed and not ipf.get("converged", True):
        b.warnings.append(
            f"IPF stopped at a max marginal error of {ipf['max_marginal_error']:.1%} (tolerance {ipf['tolerance']}): "
            + ("the weight band {} or themes that always occur together make the targets unreachable; the weights "
               "are the closest fit inside the band (widen --weight-min/--weight-max or raise --theme-temperature "
               "towards 1 to ask for less)".format(ipf["trim_band"]) if ipf.get("stalled") else
               "it ran out of sweeps (raise --ipf-max-iterations)"))


def write_memory(ws: Workspace, entries: list[dict], vectors: np.ndarray, embedder: str) -> dict:
    from ..memory.index import build_memory

    return build_memory(ws, entries, vectors, embedder)


def write_metadata(ws: Workspace, meta: dict) -> None:
    write_json(ws.dataset / "dataset_metadata.json", meta)
