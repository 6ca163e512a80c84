"""Dedup: exact duplicates by normalised hash, then near-duplicates by embedding similarity.

Exact: texts equal after lower-casing and dropping punctuation and spacing share a hash.
Semantic: each example's vector (its prompt and reply vectors from the cache, weighted by length
the way mean pooling would weight them in one text) is queried for its nearest neighbours with
FAISS (an exact flat scan for small sets, an HNSW graph above `FLAT_MAX`, so the cost grows as
n log n, never as all pairs); pairs at cosine >= threshold, and lexical near-copies (typos,
small edits: cosine >= 0.85 and >= 80% shared words, among the nearest 3), form the duplicate graph. Examples are
visited best first (user-approved, then higher quality): an example is kept unless a neighbour
was already kept, so each group keeps its best member and chains of "A~B~C" never remove a
dissimilar A/C.
The same neighbour graph at a looser threshold gives the groups the split keeps together.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix, triu
from scipy.sparse.csgraph import connected_components

FLAT_MAX = 4096
NEIGHBOURS = 16
LEXICAL_FLOOR = 0.85
LEXICAL_JACCARD = 0.8
LEXICAL_TOP = 3
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def exact_key(text: str) -> str:
    """Hash of a text with case, punctuation and spacing normalised away."""
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    return hashlib.sha1(norm.encode("utf-8", "surrogatepass")).hexdigest()


def preference_order(quality: np.ndarray, protected: np.ndarray) -> np.ndarray:
    """Indices best first: protected (user-approved) first, then quality, then corpus order."""
    n = len(quality)
    return np.lexsort((np.arange(n), -np.asarray(quality, dtype=float), ~np.asarray(protected, dtype=bool)))


def exact_duplicates(keys: list[str], order: np.ndarray, protected: np.ndarray) -> np.ndarray:
    """dup_of[i] = index of the kept copy, or -1 when i is kept."""
    dup_of = np.full(len(keys), -1, dtype=np.int64)
    first: dict[str, int] = {}
    for i in order:
        rep = first.setdefault(keys[i], int(i))
        if rep != i and not protected[i]:
            dup_of[i] = rep
    return dup_of


def neighbours(vectors: np.ndarray, k: int = NEIGHBOURS, floor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours (cosine, ids) of every row; rows whose k-th neighbour is still at
    or above `floor` are searched again deeper, so large duplicate groups are not truncated."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n > FLAT_MAX:
        index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(x)
    k = min(k, n)
    sims, ids = _search(index, x, k)
    deep = np.flatnonzero(sims[:, -1] >= floor) if k < n else np.array([], dtype=np.int64)
    if deep.size:
        k2 = min(n, 8 * k)
        s2, i2 = _search(index, x[deep], k2)
        sims = np.pad(sims, ((0, 0), (0, k2 - k)), constant_values=-1.0)
        ids = np.pad(ids, ((0, 0), (0, k2 - k)), constant_values=-1)
        sims[deep], ids[deep] = s2, i2
    return sims, ids


def _search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(32, 2 * k)
    return index.search(queries, k)


def similarity_graph(sims: np.ndarray, ids: np.ndarray, threshold: float) -> csr_matrix:
    """Symmetric sparse graph of neighbour pairs at cosine >= threshold (no self loops)."""
    n = sims.shape[0]
    rows = np.repeat(np.arange(n), sims.shape[1])
    cols, vals = ids.ravel(), sims.ravel()
    keep = (vals >= threshold) & (cols >= 0) & (cols != rows)
    graph = coo_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    return graph.maximum(graph.T).tocsr()


def word_set(text: str) -> frozenset[str]:
    return frozenset(_NON_WORD.sub(" ", text.lower()).split())


def duplicate_edges(graph: csr_matrix, sims: np.ndarray, ids: np.ndarray, threshold: float,
                    texts: list[str]) -> csr_matrix:
    """The duplicate relation: cosine >= threshold, or a lexical near-copy among each example's
    LEXICAL_TOP nearest neighbours (cosine >= LEXICAL_FLOOR and word-set Jaccard >= LEXICAL_JACCARD).
    MiniLM over-weights misspelt topic words (two typos in a 90-word reply can cost 0.1 cosine),
    so typo'd copies are caught by their words; checking only the nearest few keeps it linear."""
    upper = triu(graph, k=1).tocoo()
    keep = upper.data >= threshold
    words: dict[int, frozenset[str]] = {}
    lexical: list[tuple[int, int, float]] = []
    for i, j, sim in _lexical_candidates(sims, ids, threshold):
        for node in (i, j):
            if node not in words:
                words[node] = word_set(texts[node])
        if len(words[i] & words[j]) >= LEXICAL_JACCARD * len(words[i] | words[j]) > 0:
            lexical.append((i, j, sim))
    extra = np.array(lexical, dtype=np.float64).reshape(-1, 3)
    rows = np.concatenate([upper.row[keep], extra[:, 0].astype(np.int64)])
    cols = np.concatenate([upper.col[keep], extra[:, 1].astype(np.int64)])
    edges = coo_matrix((np.concatenate([upper.data[keep], extra[:, 2]]), (rows, cols)), shape=graph.shape).tocsr()
    return edges.maximum(edges.T).tocsr()


def _lexical_candidates(sims: np.ndarray, ids: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Distinct pairs (i < j) among each row's nearest neighbours in [LEXICAL_FLOOR, threshold)."""
    n = sims.shape[0]
    pairs: dict[tuple[int, int], float] = {}
    for rank in range(min(sims.shape[1], LEXICAL_TOP + 1)):  # +1: a row's first hit is itself
        col, sim = ids[:, rank], sims[:, rank]
        ok = np.flatnonzero((col >= 0) & (col != np.arange(n)) & (sim >= LEXICAL_FLOOR) & (sim < threshold))
        for i, j, v in zip(ok.tolist(), col[ok].tolist(), sim[ok].tolist()):
            pairs.setdefault((min(i, j), max(i, j)), v)
    return [(i, j, v) for (i, j), v in pairs.items()]


def semantic_duplicates(graph: csr_matrix, order: np.ndarray, protected: np.ndarray) -> np.ndarray:
    """Greedy best-first: dup_of[i] = the kept neighbour most similar to i, or -1 if i is kept."""
    kept = np.zeros(graph.shape[0], dtype=bool)
    dup_of = np.full(graph.shape[0], -1, dtype=np.int64)
    indptr, indices, data = graph.indptr, graph.indices, graph.data
    for i in order:
        lo, hi = indptr[i], indptr[i + 1]
        if hi > lo and not protected[i]:
            nb, sim = indices[lo:hi], data[lo:hi]
            hit = kept[nb]
            if hit.any():
                dup_of[i] = nb[hit][np.argmax(sim[hit])]
                continue
        kept[i] = True
    return dup_of


@dataclass
class DedupResult:
    """Outcome over the input examples (all arrays have one entry per example)."""

    reason: list[str | None]  # None, "exact_duplicate" or "near_duplicate"
    dup_of: np.ndarray  # index of the kept example each dropped one duplicates, else -1
    similarity: np.ndarray  # cosine to that kept example (1.0 for exact copies)
    group: np.ndarray  # split-group label (near-duplicate neighbourhoods share one)

    def kept(self) -> np.ndarray:
        return np.array([r is None for r in self.reason], dtype=bool)

    def groups_report(self, ids: list[str], limit: int = 20) -> dict:
        members: dict[int, list[int]] = {}
        for i, rep in enumerate(self.dup_of):
            if rep >= 0:
                members.setdefault(int(rep), []).append(i)
        sizes = sorted((len(v) + 1 for v in members.values()), reverse=True)
        biggest = sorted(members.items(), key=lambda kv: -len(kv[1]))[:limit]
        return {
            "groups": len(members),
            "largest_group": sizes[0] if sizes else 0,
            "examples": [{"kept": ids[rep], "removed": [ids[i] for i in rest][:10],
                          "similarity": [round(float(self.similarity[i]), 4) for i in rest][:10]}
                         for rep, rest in biggest],
        }


def deduplicate(texts: list[str], vectors: np.ndarray, quality: np.ndarray, protected: np.ndarray,
                threshold: float, group_threshold: float) -> DedupResult:
    """Exact then semantic dedup over L2-normalised example vectors; also labels split groups."""
    n = len(texts)
    order = preference_order(quality, protected)
    dup_of = exact_duplicates([exact_key(t) for t in texts], order, protected)
    similarity = np.where(dup_of >= 0, 1.0, 0.0)
    reason: list[str | None] = ["exact_duplicate" if d >= 0 else None for d in dup_of]
    alive = np.flatnonzero(dup_of < 0)
    group = np.full(n, -1, dtype=np.int64)
    if alive.size:
        low = min(threshold, group_threshold, LEXICAL_FLOOR)
        sims, ids = neighbours(vectors[alive], floor=threshold)  # deep re-search for duplicate groups only
        graph = similarity_graph(sims, ids, low)
        strict = duplicate_edges(graph, sims, ids, threshold, [texts[i] for i in alive])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        near = semantic_duplicates(strict, np.argsort(rank[alive], kind="stable"), protected[alive])
        for local in np.flatnonzero(near >= 0):
            i, rep = alive[local], alive[near[local]]
            dup_of[i], reason[i], similarity[i] = rep, "near_duplicate", strict[local, near[local]]
        group[alive] = _components(graph, near < 0, group_threshold)
    _resolve_chains(dup_of)
    return DedupResult(reason, dup_of, similarity, group)


def _resolve_chains(dup_of: np.ndarray) -> None:
    """Point every removed example at a kept one (an exact copy of a near-duplicate follows it)."""
    for i in np.flatnonzero(dup_of >= 0):
        rep = dup_of[i]
        while dup_of[rep] >= 0:
            rep = dup_of[rep]
        dup_of[i] = rep


def _components(graph: csr_matrix, survivors: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components among survivors at the split-group threshold (-1 for the removed)."""
    loose = graph.multiply(graph >= threshold).tocsr()
    idx = np.flatnonzero(survivors)
    _, labels = connected_components(loose[idx][:, idx], directed=False)
    out = np.full(graph.shape[0], -1, dtype=np.int64)
    out[idx] = labels
    return out
