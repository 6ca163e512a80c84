"""build_dataset: `corpus.jsonl` -> `dataset/` + `memory/`, one timed stage after another.

load -> clean -> pairs -> curation -> embed (once) -> quality -> dedup -> themes -> ipf ->
split -> write -> memory. Every stage counts what it drops and why; the counts, timings and
statistics end up in `dataset/dataset_metadata.json`, which is also the return value.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from ..config import BuildConfig
from ..events import ProgressFn, emit
from ..records import Example, Record
from ..workspace import UserError, Workspace
from . import report
from .clean import clean_records
from .curation import apply_decisions, load_decisions
from .dedup import deduplicate
from .ipf import weigh_examples
from .pairs import make_examples
from .quality import quality_stats, score_examples
from .questions import ask_questions
from .split import assign_splits, stratum
from .themes import extract_themes, theme_hierarchy

STAGES = ("load", "clean", "pairs", "curation", "embed", "quality", "dedup", "themes", "ipf", "split", "write", "memory")


@dataclass
class Build:
    """State shared by the stages of one build: timings, drops, warnings, the report."""

    ws: Workspace
    cfg: BuildConfig
    progress: ProgressFn | None
    timings: dict[str, float] = field(default_factory=dict)
    drops: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        emit(self.progress, "build", STAGES.index(name), len(STAGES), part=name)
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 4)

    def drop(self, stage: str, counts: Counter) -> None:
        if counts:
            self.drops.setdefault(stage, {}).update({k: int(v) for k, v in counts.items()})


def load_corpus(ws: Workspace, include_conversations: bool = False) -> tuple[list[Record], int]:
    """Records of corpus.jsonl, then the saved chat sessions opted in for training;
    malformed lines are skipped and counted, never fatal."""
    from ..chat.sessions import training_records

    chats = training_records(ws, include_conversations)
    if not ws.corpus.is_file() and not chats:
        raise UserError(f"no corpus at {ws.corpus}: run `python -m rhizome ingest PATH` first")
    records, bad = [], 0
    if not ws.corpus.is_file():
        return chats, 0
    with open(ws.corpus, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                records.append(Record.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                bad += 1
    records += chats
    if not records:
        raise UserError(f"{ws.corpus} has no usable records: ingest some files first")
    return records, bad


def _require(items: list, what: str, b: Build) -> None:
    if not items:
        reasons = ", ".join(f"{r}={n}" for d in b.drops.values() for r, n in d.items()) or "none recorded"
        raise UserError(f"no {what} left after cleaning and filtering (dropped: {reasons}); add more material "
                        "or relax --min-chars / --qa-quality-score-threshold / --dedup-similarity-threshold")


def prompt_key(ex: Example) -> str:
    """The text a reply answers: the last user message before it (or all earlier text)."""
    for m in reversed(ex.messages[:-1]):
        if m.role == "user":
            return m.content
    return ex.prompt_text()


def build_dataset(ws: Workspace, config: BuildConfig | None = None, progress: ProgressFn | None = None) -> dict:
    """Run every build stage; writes dataset/ and memory/ and returns the metadata."""
    from ..memory.embed import EmbeddingCache

    b = Build(ws.ensure(), config or BuildConfig(), progress)
    started = time.perf_counter()
    records = _load_and_clean(b)
    cache = EmbeddingCache(ws, b.cfg.embedder)
    tokenizer = cache.model.tokenizer if b.cfg.chunk_unit == "tokens" else None
    examples, chunks, protected_ids = _pair_and_curate(b, records, tokenizer)
    with b.stage("embed"):
        # saved chats are in the live memory already, each exchange once (see memory.live)
        entries = report.memory_entries([r for r in records if r.source != "rhizome"], chunks, b.cfg, tokenizer)
        n = len(examples)
        texts = [prompt_key(e) for e in examples] + [e.response_text() for e in examples] + [e["text"] for e in entries]
        vectors = cache.embed(texts, progress)
        cache.save()
        b.meta["embeddings"] = {"model": cache.model_name, "computed": cache.computed, "texts": len(vectors)}
    kept, ex_vecs = _filter(b, examples, vectors[:n], vectors[n : 2 * n], protected_ids)
    kept, lists = _theme_and_weigh(b, kept, ex_vecs, cache)
    meta = _split_and_write(b, kept, lists)
    if b.cfg.build_memory:
        with b.stage("memory"):
            meta["memory"] = report.write_memory(ws, entries, vectors[2 * n :], cache.model_name)
    meta["timings"] = {**b.timings, "total": round(time.perf_counter() - started, 4)}
    report.write_metadata(ws, meta)
    emit(progress, "build", len(STAGES), len(STAGES), message="done")
    return meta


def _load_and_clean(b: Build) -> list[Record]:
    with b.stage("load"):
        records, bad = load_corpus(b.ws, b.cfg.include_conversations)
        b.drop("load", Counter({"malformed_record": bad}) if bad else Counter())
    with b.stage("clean"):
        b.meta["records"] = {"input": len(records) + bad, "malformed": bad,
                             "conversations": sum(r.source == "rhizome" for r in records)}
        records, drops = clean_records(records, b.cfg.min_chars)
        b.drop("clean", drops)
        b.meta["records"]["after_clean"] = len(records)
    _require(records, "records", b)
    return records


def _pair_and_curate(b: Build, records: list[Record], tokenizer) -> tuple[list[Example], list, set[str]]:
    with b.stage("pairs"):
        examples, chunks = _pairs(b, records, tokenizer)
    with b.stage("curation"):
        decisions = load_decisions(b.ws)
        b.dropped += [report.dropped_row(e, "curation", "rejected") for e in examples
                      if decisions.get(e.id, {}).get("status") == "rejected"]
        paired = len(examples)
        examples, protected_ids, drops, b.meta["curation"] = apply_decisions(examples, decisions)
        b.drop("curation", drops)
    _require(examples, "training examples", b)
    b.meta["examples"] = {"paired": paired, "after_curation": len(examples)}
    return examples, chunks, protected_ids


def _theme_and_weigh(b: Build, kept: list[Example], ex_vecs: np.ndarray, cache) -> tuple[list[Example], list]:
    cfg = b.cfg
    with b.stage("themes"):
        texts = [prompt_key(e) + "\n" + e.response_text() for e in kept]
        lists = extract_themes(texts, ex_vecs, cache.embed, cfg.semantic_method, cfg.themes_per_example)
        cache.save()  # the candidate phrases KeyBERT needed are cached too
    with b.stage("ipf"):
        weights, b.meta["ipf"] = weigh_examples(
            lists, [e.source for e in kept], max_themes=cfg.max_themes, theme_temperature=cfg.theme_temperature,
            source_temperature=cfg.source_temperature, w_min=cfg.weight_min, w_max=cfg.weight_max,
            max_iter=cfg.ipf_max_iterations, tol=cfg.ipf_tolerance)
    kept = [replace(e, themes=t, weight=round(float(w), 5)) for e, t, w in zip(kept, lists, weights)]
    return kept, lists


def _split_and_write(b: Build, kept: list[Example], lists: list[list[str]]) -> dict:
    with b.stage("split"):
        strata = [stratum(e.themes, e.source) for e in kept]
        b.meta["_split_groups"] = b.meta.pop("_groups")
        split_of = assign_splits(b.meta["_split_groups"], strata, b.cfg.split, b.cfg.seed)
    with b.stage("write"):
        b.meta["themes_hierarchy"] = theme_hierarchy(lists)
        return report.write_dataset(b, kept, split_of, strata, lists)


def _pairs(b: Build, records: list[Record], tokenizer) -> tuple[list[Example], list]:
    def ask(chunks):
        questions, b.meta["questions"] = ask_questions(b.ws, [c.text for c in chunks], [c.title for c in chunks],
                                                       b.cfg, b.progress)
        return questions

    examples, drops, chunks = make_examples(records, b.cfg, ask, tokenizer)
    b.drop("pairs", drops)
    b.meta.setdefault("questions", {"mode": b.cfg.question_mode, "generated": 0})
    return examples, chunks


def example_vectors(examples: list[Example], p_vecs: np.ndarray, r_vecs: np.ndarray) -> np.ndarray:
    """One vector per example from its cached prompt and reply vectors, weighted by word count
    (capped where the embedder truncates) as mean pooling over the joined text would weight
    them: a typo in a short question barely moves it, a different reply does."""
    wp = np.array([min(len(prompt_key(e).split()), 200) for e in examples], dtype=np.float32)
    wr = np.array([min(len(e.response_text().split()), 200) for e in examples], dtype=np.float32)
    vecs = np.maximum(wp, 1)[:, None] * p_vecs + np.maximum(wr, 1)[:, None] * r_vecs
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def _filter(b: Build, examples: list[Example], p_vecs: np.ndarray, r_vecs: np.ndarray,
            protected_ids: set[str]) -> tuple[list[Example], np.ndarray]:
    """Quality scores, dedup (keeping the better member), then the quality threshold."""
    cfg = b.cfg
    protected = np.array([e.id in protected_ids for e in examples], dtype=bool)
    ex_vecs = example_vectors(examples, p_vecs, r_vecs)
    with b.stage("quality"):
        quality, signals = score_examples(examples, p_vecs, r_vecs)
        b.meta["quality"] = quality_stats(quality, signals, cfg.qa_quality_score_threshold)
    with b.stage("dedup"):
        texts = [prompt_key(e) + "\n" + e.response_text() for e in examples]
        result = deduplicate(texts, ex_vecs, quality, protected, cfg.dedup_similarity_threshold,
                             cfg.split_group_similarity)
        b.meta["dedup"] = result.groups_report([e.id for e in examples])
    low = (quality < cfg.qa_quality_score_threshold) & ~protected
    keep_idx, dedup_drops, quality_drops = [], Counter(), Counter()
    for i, ex in enumerate(examples):
        ex.quality = float(quality[i])
        ex.scores = {**{k: round(float(v[i]), 4) for k, v in signals.items()}, "quality": float(quality[i])}
        if result.reason[i]:
            dedup_drops[result.reason[i]] += 1
            b.dropped.append(report.dropped_row(ex, "dedup", result.reason[i], examples, result, i))
        elif low[i]:
            quality_drops["low_quality"] += 1
            b.dropped.append(report.dropped_row(ex, "quality", "low_quality"))
        else:
            keep_idx.append(i)
    b.drop("dedup", dedup_drops)
    b.drop("quality", quality_drops)
    _require(keep_idx, "training examples", b)
    b.meta["_groups"] = result.group[keep_idx]
    return [examples[i] for i in keep_idx], ex_vecs[keep_idx]
