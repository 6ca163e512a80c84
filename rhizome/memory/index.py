"""The memory index: every chunk and message, searchable by meaning and by keyword.

`memory/` holds `index.faiss` (inner product over L2-normalised vectors, i.e. cosine),
`chunks.sqlite` (chunk text and metadata, plus an FTS5 keyword table over it) and `meta.json`.
A search runs the vector and the keyword query, then fuses the two rankings by reciprocal rank
fusion (RRF, Cormack et al. 2009): score = sum over rankings of 1 / (60 + rank).
Chunks added after the build (chat exchanges) live in `live.sqlite` (see `memory.live`) and are
searched together with the built ones: vector hits merged by cosine, keyword hits by BM25.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..workspace import Workspace, atomic_path, read_json, write_json
from .live import LIVE_ID_BASE, LiveChunks, live_chunks

RRF_K = 60
# BM25 over every posting of every query word is what makes keyword search slow on a big index.
# Words are taken rarest first while their postings fit this budget; common words carry almost no
# BM25 weight anyway, and the vector side already covers meaning.
FTS_POSTINGS_BUDGET = 4000
# Above this many chunks a graph index (HNSW) answers in about a millisecond; below it an exact
# flat scan is fast enough and needs no build time. A single-threaded flat scan grows by about
# 1 ms per 10,000 chunks here (p95 12.7 ms at 100k, bench/RESULTS.md), too much of the budget.
HNSW_ABOVE = 50_000
_WORD = re.compile(r"\w+", re.UNICODE)


def build_memory(ws: Workspace, entries: list[dict[str, Any]], vectors: np.ndarray, embedder: str) -> dict:
    """Write the FAISS index, the chunk table and its FTS5 index; returns memory stats."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    folder = ws.memory
    folder.mkdir(parents=True, exist_ok=True)
    index = _new_index(vectors.shape[1], len(entries))
    if len(entries):
        index.add(vectors)
    with atomic_path(folder / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(folder / "chunks.sqlite") as tmp:
        _write_chunks(tmp, entries)
    meta = {"count": len(entries), "dim": int(vectors.shape[1]), "embedder": embedder,
            "index": "hnsw" if len(entries) > HNSW_ABOVE else "flat", "metric": "inner_product"}
    write_json(folder / "meta.json", meta)  # written last: a reader trusts only a complete set
    return meta


def _new_index(dim: int, count: int):
    import faiss

    if count > HNSW_ABOVE:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 256  # recall@20 0.95 at 96, see bench/RESULTS.md
        return index
    return faiss.IndexFlatIP(dim)


def _write_chunks(path: Path, entries: list[dict[str, Any]]) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(
            "CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT, title TEXT, source TEXT, kind TEXT,"
            " origin TEXT, citation TEXT);"
            "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, title, content='chunks', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 2');"
            "CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab(chunks_fts, 'row');"
        )
        con.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((i, e["text"], e.get("title", ""), e.get("source", ""), e.get("kind", ""),
              json.dumps(e.get("origin") or {}, ensure_ascii=False), e.get("citation", ""))
             for i, e in enumerate(entries)),
        )
        con.execute("INSERT INTO chunks_fts(rowid, text, title) SELECT id, text, title FROM chunks")
        con.commit()
    finally:
        con.close()


def query_terms(query: str, max_terms: int = 16) -> list[str]:
    """The query's content words, folded the way the FTS5 tokenizer folds indexed text."""
    from ..text import STOP_WORDS  # sklearn's list: loaded on the first query, not at import

    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
        if word not in STOP_WORDS and word not in terms and (len(word) > 1 or not word.isascii()):
            terms.append(word)
    return terms[:max_terms]


def fts_query(terms: list[str]) -> str | None:
    """A safe FTS5 MATCH expression: the terms quoted and OR-ed."""
    return " OR ".join(f'"{t}"' for t in terms) or None


def fuse_rrf(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked id lists; ties keep the order of the first ranking."""
    scores: dict[int, float] = {}
    first_seen: dict[int, int] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            first_seen.setdefault(item, len(first_seen))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))


@contextmanager
def _single_thread() -> Iterator[None]:
    # One query is a small scan: OpenMP's thread start-up costs more than it saves, and on a
    # busy machine it is several times slower, so single queries run on one thread.
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class Memory:
    """A read-only handle on a workspace's memory index."""

    def __init__(self, folder: Path, meta: dict[str, Any], live: LiveChunks | None = None) -> None:
        import faiss

        self.folder = folder
        self.meta = meta
        built = meta.get("count") is not None  # no build yet: only live chunks
        self.index = faiss.read_index(str(folder / "index.faiss")) if built else None
        self.db = sqlite3.connect(f"file:{folder / 'chunks.sqlite'}?mode=ro", uri=True,
                                  check_same_thread=False) if built else None
        self.lock = threading.Lock()  # one sqlite connection shared by the UI's worker threads
        self.live = live or live_chunks(folder)

    def __len__(self) -> int:
        return (int(self.index.ntotal) if self.index is not None else 0) + len(self.live)

    def embed_query(self, query: str) -> np.ndarray:
        from ..models import load_embedder

        model = load_embedder(self.meta.get("embedder"))
        return np.asarray(model.encode([query], normalize_embeddings=True), dtype=np.float32)[0]

    def search(self, query: str, k: int = 4, use_fts: bool = True) -> list[dict[str, Any]]:
        """The k chunks best matching `query` (vector + keyword hits fused by RRF)."""
        if not query.strip() or len(self) == 0 or k <= 0:
            return []
        return self.search_vector(self.embed_query(query), k, query if use_fts else None)

    def search_vector(self, vector: np.ndarray, k: int = 4, query: str | None = None) -> list[dict[str, Any]]:
        """Search with a precomputed query vector; `query` text adds FTS5 keyword hits."""
        if len(self) == 0 or k <= 0:
            return []
        depth = min(len(self), max(4 * k, 20))
        ids, sims = self.vector_search(vector, depth)
        keyword = self.keyword_search(query, depth) if query else []
        fused = fuse_rrf([ids, keyword])[:k]
        cosine = dict(zip(ids, sims))
        vec_rank = {c: r for r, c in enumerate(ids, 1)}
        kw_rank = {c: r for r, c in enumerate(keyword, 1)}
        rows = self._fetch([cid for cid, _ in fused])
        return [
            {**rows[cid], "score": score, "vector_score": cosine.get(cid),
             "vector_rank": vec_rank.get(cid), "keyword_rank": kw_rank.get(cid)}
            for cid, score in fused if cid in rows
        ]

    def vector_search(self, vector: np.ndarray, n: int) -> tuple[list[int], list[float]]:
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        with _single_thread():
            found: list[tuple[int, float]] = []
            if self.index is not None and self.index.ntotal:
                sims, ids = self.index.search(query, min(n, int(self.index.ntotal)))
                found = [(int(i), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0]
            live_ids, live_sims = self.live.vector_search(query, n)
        if live_ids:  # cosines of both indexes are on one scale: merge them
            found = sorted(found + list(zip(live_ids, live_sims)), key=lambda x: -x[1])[:n]
        return [i for i, _ in found], [s for _, s in found]

    def keyword_search(self, query: str, n: int) -> list[int]:
        """Chunk ids by BM25 over the query's informative words (see FTS_POSTINGS_BUDGET)."""
        terms = query_terms(query)
        match = fts_query(self.informative_terms(terms))
        rows: list[tuple[int, float]] = []
        if match is not None and self.db is not None:
            with self.lock:
                rows = self.db.execute(
                    "SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", (match, n)
                ).fetchall()
        # the live table is small: every query word is cheap there, even words the build never saw
        live = self.live.keyword_search(fts_query(terms), n) if terms and len(self.live) else []
        if live:
            rows = sorted([*rows, *live], key=lambda r: r[1])[:n]
        return [int(r[0]) for r in rows]

    def informative_terms(self, terms: list[str]) -> list[str]:
        """Indexed terms, rarest first, while their document counts fit the postings budget."""
        if not terms or self.db is None:
            return []
        marks = ",".join("?" * len(terms))
        with self.lock:
            counts = self.db.execute(f"SELECT term, doc FROM chunks_vocab WHERE term IN ({marks})", terms).fetchall()
        chosen, postings = [], 0
        for term, docs in sorted(counts, key=lambda td: (td[1], td[0])):
            if postings + docs > FTS_POSTINGS_BUDGET:
                break
            chosen.append(term)
            postings += docs
        return chosen

    def _fetch(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        found = self.live.fetch(ids)
        ids = [i for i in ids if i < LIVE_ID_BASE]
        if not ids or self.db is None:
            return found
        marks = ",".join("?" * len(ids))
        with self.lock:
            rows = self.db.execute(
                f"SELECT id, text, title, source, kind, origin, citation FROM chunks WHERE id IN ({marks})", ids
            ).fetchall()
        return {
            **found,
            **{r[0]: {"id": r[0], "text": r[1], "title": r[2], "source": r[3], "kind": r[4],
                      "origin": json.loads(r[5] or "{}"), "citation": r[6]}
               for r in rows},
        }

    def close(self) -> None:
        with self.lock:
            if self.db is not None:
                self.db.close()


_OPEN: dict[str, tuple[int, Memory]] = {}
_OPEN_LOCK = threading.Lock()


def open_memory(ws: Workspace) -> Memory | None:
    """The workspace's memory index, or None when no build has made one yet.

    Handles are cached per workspace and reopened when a new build rewrites the index.
    """
    meta_path = ws.memory / "meta.json"
    meta = read_json(meta_path, default=None)
    if not meta or not (ws.memory / "index.faiss").is_file() or not (ws.memory / "chunks.sqlite").is_file():
        return _live_only(ws)
    stamp = meta_path.stat().st_mtime_ns
    key = str(ws.memory)
    with _OPEN_LOCK:
        cached = _OPEN.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
        memory = Memory(ws.memory, meta)
        _OPEN[key] = (stamp, memory)
        return memory


def _live_only(ws: Workspace) -> Memory | None:
    """Before any build: a memory of the chunks added since (chat exchanges), if there are any."""
    if not (ws.memory / "live.sqlite").is_file():
        return None
    live = live_chunks(ws.memory)
    if len(live) == 0:
        return None
    return Memory(ws.memory, {"embedder": live.embedder, "index": "live"}, live)
