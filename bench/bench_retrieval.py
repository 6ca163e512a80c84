"""Benchmark of memory search: p95 latency at 100,000 indexed chunks (issue 6: <= 20 ms).

    python bench/bench_retrieval.py --chunks 100000 --queries 500

Builds a real memory index (FAISS + SQLite FTS5) with `build_memory` in `bench/out/retrieval/`
from synthetic chunk texts (`gen_corpus.py`'s generator). `--embed` real embeddings are
computed for that many chunks; the other chunks reuse one of them plus small noise, which keeps
the vector distribution realistic while sparing hours of CPU embedding. Above `HNSW_ABOVE`
chunks the index is an HNSW graph, whose recall@20 against brute force is reported. Times
`Memory.search_vector` (search only: vector + FTS5 + RRF + metadata fetch, the query vector
precomputed) and, separately, `Memory.embed_query`.

    python bench/bench_retrieval.py --chunks 100000 --queries 500 --conversations 300

also adds that many chat exchanges one at a time, the way a chat session does (embed the
exchange, one SQLite transaction, the live FAISS index), timing each add, then times hybrid
search again with the conversation chunks mixed in (issue 12: add <= 50 ms, p95 <= 20 ms).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gen_corpus import QUESTIONS, TOPICS, fill, reply  # noqa: E402

from rhizome.memory import build_memory, open_memory  # noqa: E402
from rhizome.models import load_embedder, resolve_embedder  # noqa: E402
from rhizome.workspace import Workspace, write_json  # noqa: E402


def rare_words(count: int, seed: int) -> list[str]:
    """Invented words (names, jargon) for a long-tailed vocabulary like real notes have."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)})


def chunk_texts(count: int, seed: int, vocab: list[str]) -> list[dict]:
    rng = random.Random(seed)
    topics = list(TOPICS)
    entries = []
    for i in range(count):
        topic = rng.choice(topics)
        # Zipf-like draw: a few invented words are common, most are rare.
        rare = " ".join(vocab[min(int(rng.paretovariate(1.0)) - 1, len(vocab) - 1) * 7 % len(vocab)] for _ in range(2))
        text = f"{reply(rng, topic)} See also {rare}."
        entries.append({"text": text, "title": f"{topic} notes", "source": "markdown", "kind": "chunk",
                        "origin": {"file": f"notes/{topic}.md", "chunk": i}, "citation": f"{topic}.md"})
    return entries


def make_queries(count: int, seed: int, entries: list[dict]) -> list[str]:
    """Questions in the corpus's style; half also name a word taken from some chunk."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        q = fill(rng, rng.choice(QUESTIONS), rng.choice(list(TOPICS)))
        if rng.random() < 0.5:
            q += " What did I note about " + rng.choice(entries)["text"].rsplit("See also ", 1)[1].split()[0] + "?"
        out.append(q)
    return out


def vectors_for(texts: list[str], embed: int, seed: int) -> tuple[np.ndarray, float]:
    model = load_embedder()
    started = time.perf_counter()
    real = model.encode(texts[:embed], batch_size=64, normalize_embeddings=True).astype(np.float32)
    embed_s = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    rest = real[rng.integers(0, embed, len(texts) - embed)] + 0.02 * rng.standard_normal((len(texts) - embed, real.shape[1]))
    vecs = np.vstack([real, rest.astype(np.float32)])
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), embed_s


def percentiles(samples: list[tuple[float, float]]) -> dict:
    """Wall-clock latency percentiles, and the same for the thread's CPU time (what the search
    itself costs when other jobs compete for the cores)."""
    wall, cpu = (np.array(x) * 1000 for x in zip(*samples))
    return {"p50_ms": float(np.percentile(wall, 50)), "p95_ms": float(np.percentile(wall, 95)),
            "p99_ms": float(np.percentile(wall, 99)), "max_ms": float(wall.max()),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p95_ms": float(np.percentile(cpu, 95)),
            "n": len(wall)}


def time_calls(fn, items, clock=time.thread_time) -> list[tuple[float, float]]:
    out = []
    for item in items:
        wall, cpu = time.perf_counter(), clock()
        fn(item)
        out.append((time.perf_counter() - wall, clock() - cpu))
    return out


def vector_recall(memory, vecs: np.ndarray, qvecs: np.ndarray, depth: int) -> float:
    """Share of the exact top-`depth` neighbours (brute force) that the index returns: 1.0 for the
    flat index, the price of speed for HNSW."""
    exact = np.argsort(-(qvecs @ vecs.T), axis=1)[:, :depth]
    found = [set(memory.vector_search(q, depth)[0]) for q in qvecs]
    return float(np.mean([len(f & set(e.tolist())) / depth for f, e in zip(found, exact)]))


def bench_conversations(ws: Workspace, memory, pairs: list, args) -> dict:
    """Add exchanges one at a time through the chat's own path, then search with them mixed in."""
    from types import SimpleNamespace

    from rhizome.chat.history import remember
    from rhizome.chat.sessions import Turn

    rng = random.Random(args.seed + 2)
    session = SimpleNamespace(id=1, name="bench", title="bench chat", created=time.time())
    turns = [Turn(fill(rng, rng.choice(QUESTIONS), t), reply(rng, t), question_id=i)
             for i, t in enumerate(rng.choice(list(TOPICS)) for _ in range(args.conversations))]
    remember(ws, session, turns[0])  # warm-up: the live index file and its first vector
    adds = time_calls(lambda t: remember(ws, session, t), turns[1:], clock=time.process_time)
    live = memory.live
    vec = np.ones((1, memory.meta["dim"]), np.float32) / np.sqrt(memory.meta["dim"])
    store_only = time_calls(lambda i: live.add([{"text": f"x {i}"}], vec, owner="timing", embedder="bench"),
                            range(100), clock=time.process_time)
    live.remove("timing")
    for q, v in pairs[:20]:
        memory.search_vector(v, args.k, q)
    return {"added": len(turns), "memory_chunks": len(memory),
            "add_exchange": percentiles(adds), "add_without_embedding": percentiles(store_only),
            "hybrid_search": percentiles(time_calls(lambda p: memory.search_vector(p[1], args.k, p[0]), pairs)),
            "conversation_hits_in_top_k": sum(any(h["kind"] == "conversation" for h in memory.search_vector(
                p[1], args.k, p[0])) for p in pairs[:100])}


def reuse(out: Path, args) -> None:
    """Conversation timings on an existing benchmark memory (no rebuild, no recall)."""
    ws = Workspace(out)
    memory = open_memory(ws)
    entries = chunk_texts(2000, args.seed, rare_words(1000, args.seed))  # only the queries' style matters
    queries = make_queries(args.queries, args.seed + 1, entries)
    memory.embed_query(queries[0])
    pairs = [(q, memory.embed_query(q)) for q in queries]
    results = {"date": time.strftime("%Y-%m-%d"), "built_chunks": int(memory.index.ntotal),
               "index": memory.meta["index"], "query_embedding": percentiles(
                   time_calls(memory.embed_query, queries[:100], clock=time.process_time)),
               "conversations": bench_conversations(ws, memory, pairs, args)}
    write_json(out.parent / "retrieval_conversations.json", results)
    print(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description="retrieval latency benchmark")
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--embed", type=int, default=3_000, help="chunks embedded for real")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--conversations", type=int, default=0, help="chat exchanges added one by one after the build")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "retrieval"))
    ap.add_argument("--reuse", action="store_true",
                    help="with --conversations: time only the adds and the mixed search on the memory left in --out")
    args = ap.parse_args()
    out = Path(args.out)
    if args.reuse:
        return reuse(out, args)
    shutil.rmtree(out, ignore_errors=True)
    ws = Workspace(out).ensure()
    entries = chunk_texts(args.chunks, args.seed, rare_words(max(1000, args.chunks // 2), args.seed))
    vecs, embed_s = vectors_for([e["text"] for e in entries], min(args.embed, args.chunks), args.seed)
    started = time.perf_counter()
    build_memory(ws, entries, vecs, resolve_embedder(None))
    build_s = time.perf_counter() - started
    memory = open_memory(ws)
    queries = make_queries(args.queries, args.seed + 1, entries)
    memory.embed_query(queries[0])  # warm-up: model load
    q_embed = time_calls(memory.embed_query, queries[:100], clock=time.process_time)  # torch uses all threads
    qvecs = [memory.embed_query(q) for q in queries]
    for q, v in zip(queries[:20], qvecs[:20]):  # warm caches
        memory.search_vector(v, args.k, q)
    pairs = list(zip(queries, qvecs))
    results = {
        "date": time.strftime("%Y-%m-%d"), "chunks": len(memory), "index": memory.meta["index"], "k": args.k,
        "real_embeddings": min(args.embed, args.chunks), "embed_chunks_per_s": min(args.embed, args.chunks) / embed_s,
        "index_build_s": build_s,
        "hybrid_search": percentiles(time_calls(lambda p: memory.search_vector(p[1], args.k, p[0]), pairs)),
        "vector_only": percentiles(time_calls(lambda p: memory.search_vector(p[1], args.k, None), pairs)),
        "fts_only": percentiles(time_calls(lambda p: memory.keyword_search(p[0], max(4 * args.k, 20)), pairs)),
        "query_embedding": percentiles(q_embed),
        "vector_recall_at_20": vector_recall(memory, vecs, np.array(qvecs), 20),
        "example": {"query": queries[0], "top": [h["citation"] for h in memory.search_vector(qvecs[0], args.k, queries[0])]},
    }
    if args.conversations:
        results["conversations"] = bench_conversations(ws, memory, pairs, args)
    write_json(out.parent / "retrieval_results.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
