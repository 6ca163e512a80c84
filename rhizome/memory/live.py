"""Live memory: chunks added one at a time after a build (each exchange of a chat session).

A build writes `index.faiss` + `chunks.sqlite` in one go and never changes them; appending to
them would mean rewriting a 150 MB HNSW file per chat turn, and HNSW cannot remove a vector.
Chunks added later live in `memory/live.sqlite` instead: one row per chunk holding its text,
metadata, its embedding (float32 bytes) and the owner that may remove it (a chat session), plus
an FTS5 table over the text. Adding or removing a chunk is ONE SQLite transaction covering the
row, its FTS entry and its vector, so the keyword index and the vector index cannot disagree,
even after a crash between writes: there is no second write. The vector side that searches is
an in-memory FAISS `IndexIDMap2` over a flat inner-product index, derived from those rows (exact
search; live chunks number in the thousands, a scan of which costs well under a millisecond),
updated in place by this process's own writes and reloaded when `PRAGMA data_version` says
another process (the CLI, a second app) wrote. A build leaves this file alone.

Live chunk ids start at LIVE_ID_BASE, so they never collide with a build's ids (0..n-1).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

LIVE_ID_BASE = 1 << 40
FILE = "live.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
  id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, title TEXT, source TEXT, kind TEXT,
  origin TEXT, citation TEXT, owner TEXT, vector BLOB NOT NULL, added REAL NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_owner ON chunks(owner);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, title, content='chunks', content_rowid='id',
  tokenize='unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT);
"""


class LiveChunks:
    """Chunks added after the build; thread-safe, one connection per handle."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILE
        self.db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, no fsync per turn
        self.db.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self.index = None
        self.version = None
        self._reload()

    # ---- the derived vector index ------------------------------------------------------------

    def _reload(self) -> None:
        import faiss

        rows = self.db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        dim = self.dim or (len(rows[0][1]) // 4 if rows else 0)
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim)) if dim else None
        if rows and self.index is not None:
            vectors = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in rows])
            self.index.add_with_ids(vectors, np.array([LIVE_ID_BASE + i for i, _ in rows], dtype=np.int64))
        self.version = self._data_version()

    def _data_version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _fresh(self) -> None:
        """Reload when another connection changed the file since we last looked."""
        if self._data_version() != self.version:
            self._reload()

    @property
    def dim(self) -> int:
        row = self.db.execute("SELECT value FROM info WHERE key = 'dim'").fetchone()
        return int(row[0]) if row else 0

    @property
    def embedder(self) -> str | None:
        row = self.db.execute("SELECT value FROM info WHERE key = 'embedder'").fetchone()
        return row[0] if row else None

    def __len__(self) -> int:
        with self.lock:
            self._fresh()
            return int(self.index.ntotal) if self.index is not None else 0

    # ---- writes ------------------------------------------------------------------------------

    def add(self, entries: list[dict[str, Any]], vectors: np.ndarray, owner: str, embedder: str) -> list[int]:
        """Add chunks (text, title, source, kind, origin, citation) with their vectors; returns ids."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(entries), -1)
        with self.lock:
            self._fresh()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self._check_dim(vectors.shape[1], embedder)
                ids = []
                for entry, vector in zip(entries, vectors):
                    cur = self.db.execute(
                        "INSERT INTO chunks(text, title, source, kind, origin, citation, owner, vector, added)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (entry["text"], entry.get("title", ""), entry.get("source", ""), entry.get("kind", ""),
                         json.dumps(entry.get("origin") or {}, ensure_ascii=False), entry.get("citation", ""),
                         owner, vector.tobytes(), time.time()))
                    self.db.execute("INSERT INTO chunks_fts(rowid, text, title) VALUES (?, ?, ?)",
                                    (cur.lastrowid, entry["text"], entry.get("title", "")))
                    ids.append(int(cur.lastrowid))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if self.index is None:
                self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
            self.index.add_with_ids(vectors, np.array([LIVE_ID_BASE + i for i in ids], dtype=np.int64))
            self.version = self._data_version()
        return [LIVE_ID_BASE + i for i in ids]

    def _check_dim(self, dim: int, embedder: str) -> None:
        known = self.dim
        if known and known != dim:
            raise ValueError(f"live memory holds {known}-dimensional vectors, got {dim} (embedder changed?)")
        if not known:
            self.db.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)", [("dim", str(dim)), ("embedder", embedder)])

    def remove(self, owner: str) -> int:
        """Remove every chunk of `owner` (text, FTS entry and vector together); returns how many."""
        with self.lock:
            self._fresh()
            self.db.execute("BEGIN IMMEDIATE")
            try:
                rows = self.db.execute("SELECT id, text, title FROM chunks WHERE owner = ?", (owner,)).fetchall()
                for cid, text, title in rows:  # an external-content FTS5 table is told the old values
                    self.db.execute("INSERT INTO chunks_fts(chunks_fts, rowid, text, title) VALUES ('delete', ?, ?, ?)",
                                    (cid, text, title))
                self.db.execute("DELETE FROM chunks WHERE owner = ?", (owner,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if rows and self.index is not None:
                self.index.remove_ids(np.array([LIVE_ID_BASE + r[0] for r in rows], dtype=np.int64))
            self.version = self._data_version()
        return len(rows)

    # ---- reads -------------------------------------------------------------------------------

    def vector_search(self, query: np.ndarray, n: int) -> tuple[list[int], list[float]]:
        with self.lock:
            self._fresh()
            if self.index is None or self.index.ntotal == 0 or query.shape[1] != self.index.d:
                return [], []
            sims, ids = self.index.search(query, min(n, int(self.index.ntotal)))
        keep = ids[0] >= 0
        return [int(i) for i in ids[0][keep]], [float(s) for s in sims[0][keep]]

    def keyword_search(self, match: str, n: int) -> list[tuple[int, float]]:
        """(id, bm25) best first; bm25 is negative, lower is better, as SQLite reports it."""
        with self.lock:
            rows = self.db.execute("SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
                                   (match, n)).fetchall()
        return [(LIVE_ID_BASE + int(r[0]), float(r[1])) for r in rows]

    def fetch(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        local = [i - LIVE_ID_BASE for i in ids if i >= LIVE_ID_BASE]
        if not local:
            return {}
        marks = ",".join("?" * len(local))
        with self.lock:
            rows = self.db.execute(f"SELECT id, text, title, source, kind, origin, citation FROM chunks"
                                   f" WHERE id IN ({marks})", local).fetchall()
        return {LIVE_ID_BASE + r[0]: {"id": LIVE_ID_BASE + r[0], "text": r[1], "title": r[2], "source": r[3],
                                      "kind": r[4], "origin": json.loads(r[5] or "{}"), "citation": r[6]}
                for r in rows}

    def owners(self) -> dict[str, int]:
        with self.lock:
            return dict(self.db.execute("SELECT owner, count(*) FROM chunks GROUP BY owner").fetchall())

    def close(self) -> None:
        with self.lock:
            self.db.close()


_OPEN: dict[str, LiveChunks] = {}
_OPEN_LOCK = threading.Lock()


def live_chunks(folder: Path) -> LiveChunks:
    """The process's one handle on a memory folder's live chunks."""
    key = str(folder)
    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = LiveChunks(folder)
        return _OPEN[key]
