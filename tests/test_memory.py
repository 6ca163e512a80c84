"""Memory: the one-pass embedding cache and the FAISS + FTS5 hybrid index with RRF."""
import numpy as np
import pytest

from rhizome.memory import EmbeddingCache, build_memory, fuse_rrf, open_memory
from rhizome.memory.index import RRF_K, fts_query, query_terms

DOCS = [
    ("Compost needs green kitchen scraps and brown dry leaves; turn the pile weekly.", "guide.pdf", 2),
    ("Feed the sourdough starter twice a day with equal weights of flour and water.", "bread.md", None),
    ("Taper marathon training over the last two weeks before race day.", "running.txt", None),
    ("Zygomorphic flowers such as orchids have a single plane of symmetry.", "botany.pdf", 7),
    ("Mulch keeps garden soil moist and suppresses weeds in dry summers.", "guide.pdf", 3),
]


def entries():
    out = []
    for text, file, page in DOCS:
        origin = {"file": file, **({"page": page} if page else {})}
        out.append({"text": text, "title": file.split(".")[0], "source": "pdf" if page else "markdown",
                    "kind": "chunk", "origin": origin, "citation": f"{file} p.{page}" if page else file})
    return out


@pytest.fixture
def memory(ws):
    cache = EmbeddingCache(ws)
    vectors = cache.embed([e["text"] for e in entries()])
    build_memory(ws, entries(), vectors, cache.model_name)
    return open_memory(ws)


def test_cache_embeds_each_text_once_and_persists(ws):
    cache = EmbeddingCache(ws)
    first = cache.embed(["alpha beta", "gamma delta", "alpha beta"])
    assert cache.computed == 2 and np.allclose(first[0], first[2])
    cache.save()
    files = {p.name for p in cache.folder.iterdir()}
    assert {"vectors.npy", "keys.json", "meta.json"} <= files
    np.load(cache.folder / "vectors.npy", allow_pickle=False)  # plain .npy, no pickle
    again = EmbeddingCache(ws)
    second = again.embed(["gamma delta", "epsilon"])
    assert again.computed == 1  # only the new text
    assert np.allclose(second[0], first[1]) and np.isclose(np.linalg.norm(second[1]), 1.0, atol=1e-5)


def test_rrf_fusion_by_hand():
    fused = fuse_rrf([[1, 2, 3], [3, 1]])
    assert [i for i, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert fused[2][1] == pytest.approx(1 / (RRF_K + 2))


def test_search_finds_meaning_and_cites_page(memory):
    hits = memory.search("how do I make compost from leaves and scraps", k=2)
    assert hits[0]["citation"] == "guide.pdf p.2" and hits[0]["origin"] == {"file": "guide.pdf", "page": 2}
    assert set(hits[0]) >= {"text", "title", "source", "origin", "score", "citation"}
    assert hits[0]["score"] >= hits[1]["score"]


def test_hybrid_order_is_rrf_of_vector_and_keyword_rankings(memory):
    query = "zygomorphic symmetry"
    vector = memory.embed_query(query)
    depth = min(len(memory), 20)
    vec_ids, _ = memory.vector_search(vector, depth)
    kw_ids = memory.keyword_search(query, depth)
    assert kw_ids == [3]  # FTS5 matches the rare keyword only in the botany chunk
    hits = memory.search_vector(vector, k=5, query=query)
    assert [h["id"] for h in hits] == [i for i, _ in fuse_rrf([vec_ids, kw_ids])][:5]
    assert hits[0]["id"] == 3 and hits[0]["keyword_rank"] == 1
    plain = memory.search_vector(vector, k=5, query=None)
    assert [h["id"] for h in plain] == vec_ids[:5] and all(h["keyword_rank"] is None for h in plain)


def test_keyword_query_is_sanitised(memory):
    assert query_terms('the "NEAR( AND OR* compost-pile Café') == ["near", "compost", "pile", "cafe"]
    assert fts_query(["near", "pile"]) == '"near" OR "pile"' and fts_query([]) is None
    hits = memory.search('"unbalanced AND (quote compost', k=3)  # FTS5 syntax in user text cannot break it
    assert hits and hits[0]["citation"] == "guide.pdf p.2"
    assert query_terms("the and of") == []
    assert memory.informative_terms(["compost", "unknownword"]) == ["compost"]


def test_open_memory_absent_empty_and_reopened(ws):
    assert open_memory(ws) is None
    cache = EmbeddingCache(ws)
    build_memory(ws, [], np.zeros((0, cache.dim), np.float32), cache.model_name)
    empty = open_memory(ws)
    assert empty is not None and len(empty) == 0 and empty.search("anything", k=3) == []
    assert open_memory(ws) is empty  # cached handle
    build_memory(ws, entries()[:2], cache.embed([e["text"] for e in entries()[:2]]), cache.model_name)
    fresh = open_memory(ws)
    assert fresh is not empty and len(fresh) == 2


def test_common_words_are_pruned_from_keyword_search(memory, monkeypatch):
    from rhizome.memory import index

    # "dry" is in two chunks, "zygomorphic" and "compost" in one each: rarest first, within budget.
    assert memory.informative_terms(["dry", "zygomorphic", "compost"]) == ["compost", "zygomorphic", "dry"]
    monkeypatch.setattr(index, "FTS_POSTINGS_BUDGET", 2)
    assert memory.informative_terms(["dry", "zygomorphic", "compost"]) == ["compost", "zygomorphic"]
    monkeypatch.setattr(index, "FTS_POSTINGS_BUDGET", 1)
    assert memory.keyword_search("dry zygomorphic compost", 5) == [0]  # only "compost" is searched
    monkeypatch.setattr(index, "FTS_POSTINGS_BUDGET", 0)
    assert memory.keyword_search("dry zygomorphic compost", 5) == []


def test_large_memory_uses_an_hnsw_graph_that_finds_the_same_neighbours(ws, monkeypatch):
    from rhizome.memory import index as memory_index

    monkeypatch.setattr(memory_index, "HNSW_ABOVE", 100)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"text": f"chunk {i}", "title": "t", "citation": f"c{i}"} for i in range(len(vectors))]
    assert build_memory(ws, rows, vectors, "test")["index"] == "hnsw"
    memory = open_memory(ws)
    queries = vectors[:50] + 0.05 * rng.standard_normal((50, 64)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [memory.vector_search(q, 10)[0] for q in queries]
    assert all(f[0] == i for i, f in enumerate(found))  # the chunk a query was made from comes first
    assert np.mean([len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact)]) >= 0.95
