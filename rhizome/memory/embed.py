"""One embedding pass: every distinct text is embedded once and cached in the workspace.

Vectors live in `embeddings/<model key>/` as `vectors.npy` (float32, L2-normalised, one row per
text), `keys.json` (the content hash of each row, in row order) and `meta.json`. Dedup, KeyBERT,
quality coherence and the memory index all look their vectors up here, so a text is never
embedded twice, not even across builds. No pickle: `.npy` is loaded with `allow_pickle=False`.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ..cpu import LoadMeter, fit_pools, pool_threads
from ..events import ProgressFn, emit
from ..models import load_embedder, resolve_embedder
from ..workspace import Workspace, atomic_path, read_json, write_json

BATCH = 64
# Texts go to the encoder in slices this big: large enough for its length-sorting to pay off,
# small enough that progress events stay frequent.
SLICE = 2048


class EmbeddingRate:
    """Texts per second so far, and the time left estimated from the characters still to encode
    (a slice of long texts takes longer than one of short ones; characters track that, counts don't)."""

    def __init__(self, total_chars: int) -> None:
        self.started = time.perf_counter()
        self.texts = self.chars = 0
        self.total_chars = total_chars

    def update(self, texts: int, chars: int) -> dict[str, float]:
        self.texts, self.chars = self.texts + texts, self.chars + chars
        spent = max(time.perf_counter() - self.started, 1e-9)
        left = max(self.total_chars - self.chars, 0)
        return {"texts_per_s": round(self.texts / spent, 1), "eta_s": round(left * spent / max(self.chars, 1), 1)}


def text_key(text: str) -> str:
    """Content hash identifying a text in the cache."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def model_key(name: str) -> str:
    """A folder name for one embedder, readable and unique."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(Path(name).parts[-2:])).strip("-")[:48]
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class EmbeddingCache:
    """Embeddings of texts by content hash, for one embedder, persisted in a workspace."""

    def __init__(self, ws: Workspace, embedder: str | None = None) -> None:
        self.model_name = resolve_embedder(embedder)
        self.spec = embedder
        self.folder = ws.embeddings / model_key(self.model_name)
        self.keys: list[str] = []
        self.rows: dict[str, int] = {}
        self.blocks: list[np.ndarray] = []
        self.computed = 0
        self._load()

    def _load(self) -> None:
        keys = read_json(self.folder / "keys.json", default=None)
        vec_path = self.folder / "vectors.npy"
        if not keys or not vec_path.is_file():
            return
        vectors = np.load(vec_path, allow_pickle=False)
        if vectors.shape[0] != len(keys):  # a torn cache is rebuilt rather than trusted
            return
        self.keys = list(keys)
        self.rows = {k: i for i, k in enumerate(self.keys)}
        self.blocks = [vectors.astype(np.float32, copy=False)]

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    @property
    def model(self):
        return load_embedder(self.spec)

    def matrix(self) -> np.ndarray:
        """All cached vectors as one array (blocks are merged lazily)."""
        if len(self.blocks) != 1:
            self.blocks = [np.vstack(self.blocks)] if self.blocks else [np.zeros((0, self.dim), np.float32)]
        return self.blocks[0]

    def embed(self, texts: list[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Vectors for `texts` (row i for text i), embedding only texts never seen before."""
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in self.rows and key not in missing:
                missing[key] = text
        if missing:
            self._encode_missing(list(missing), list(missing.values()), progress)
        return self.matrix()[np.fromiter((self.rows[k] for k in keys), dtype=np.int64, count=len(keys))]

    def _encode_missing(self, keys: list[str], texts: list[str], progress: ProgressFn | None) -> None:
        total = len(texts)
        model = self.model  # loaded before the clock starts: the rate is the encoder's, not the load's
        emit(progress, "embed", 0, total, message=f"embedding {total:,} texts")
        size = max(16, min(SLICE, -(-total // 16)))  # ~16 reports at least, for a live rate and ETA
        on_cpu = str(model.device) == "cpu"
        if on_cpu:
            fit_pools(pool_threads())  # the cores other processes leave free: more would only wait
        rate, meter = EmbeddingRate(sum(map(len, texts))), LoadMeter()
        for start in range(0, total, size):
            other = meter.read() if on_cpu else None
            if other is not None:  # re-fitted as the rest of the machine gets busier or quieter
                fit_pools(pool_threads(other))
            part = texts[start : start + size]
            vecs = model.encode(part, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
            self.blocks.append(np.asarray(vecs, dtype=np.float32))
            for key in keys[start : start + size]:
                self.rows[key] = len(self.keys)
                self.keys.append(key)
            done = min(start + size, total)
            emit(progress, "embed", done, total, **rate.update(len(part), sum(map(len, part))))
        self.computed += total

    def save(self) -> None:
        """Write the cache atomically (vectors first, keys last: keys.json marks it complete)."""
        if not self.keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / "vectors.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.matrix(), allow_pickle=False)
        # The dimension from the vectors themselves: a build whose texts were all cached never loads the model.
        write_json(self.folder / "meta.json", {"model": self.model_name, "dim": int(self.matrix().shape[1]),
                                               "count": len(self.keys)})
        with atomic_path(self.folder / "keys.json") as tmp:
            tmp.write_text(json.dumps(self.keys), encoding="utf-8")


def embed_texts(ws: Workspace, texts: Iterable[str], embedder: str | None = None) -> np.ndarray:
    """Convenience: embed through the workspace cache and save it."""
    cache = EmbeddingCache(ws, embedder)
    vectors = cache.embed(list(texts))
    cache.save()
    return vectors
