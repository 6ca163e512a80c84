"""Memory: the one cached embedding pass and the hybrid (FAISS + FTS5) retrieval index.

`open_memory(ws)` returns a `Memory` whose `search(query, k)` gives hits
`{"text", "title", "source", "origin", "score", "citation", ...}`; `build_dataset` writes it.
"""
from .embed import EmbeddingCache, embed_texts, text_key
from .index import Memory, build_memory, fuse_rrf, open_memory

__all__ = ["EmbeddingCache", "Memory", "build_memory", "embed_texts", "fuse_rrf", "open_memory", "text_key"]
