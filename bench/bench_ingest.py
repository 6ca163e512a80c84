"""Benchmark: ingest a large synthetic ChatGPT export and measure time and peak memory.

    python bench/bench_ingest.py --size-mb 1000            # generate ~1 GB, ingest it, print results
    python bench/bench_ingest.py --size-mb 200 --keep       # keep the generated files in bench/out/

The export is written as a stream (the generator never holds it in memory) with realistic
structure: a hidden system node, custom instructions, an edited branch, citation markers and
image parts. Ingest runs in a child process so its peak RSS (ru_maxrss) is measured alone.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYLLABLES = ["ra", "zo", "mi", "ta", "ke", "lu", "no", "si", "ve", "da", "po", "rin", "gal", "tor", "en", "ash"]


def make_vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    return ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(size)]


def sentence(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


def node(node_id: str, parent: str | None, role: str | None, parts: list | None, t: float, **meta) -> dict:
    message = None
    if role is not None:
        message = {"id": node_id, "author": {"role": role, "name": None, "metadata": {}}, "create_time": t,
                   "content": {"content_type": meta.pop("content_type", "text"), "parts": parts},
                   "status": "finished_successfully", "recipient": "all", "metadata": meta}
    return {"id": node_id, "message": message, "parent": parent, "children": []}


def make_conversation(rng: random.Random, words: list[str], index: int) -> dict:
    """One conversation of 4-30 turns with an edited branch and the usual hidden nodes."""
    t = 1.6e9 + index * 3600.0
    nodes = [node("root", None, None, None, t), node("sys", "root", "system", [""], t,
                                                    is_visually_hidden_from_conversation=True)]
    parent = "sys"
    for turn in range(rng.randint(4, 30)):
        role = "user" if turn % 2 == 0 else "assistant"
        text = " ".join(sentence(rng, words, rng.randint(6, 25)) for _ in range(rng.randint(1, 12)))
        if role == "assistant" and rng.random() < 0.3:
            text += " \ue200cite\ue202turn0search0\ue201"
        parts: list = [text]
        if role == "user" and rng.random() < 0.05:
            parts = [{"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"}, text]
        node_id = f"n{turn}"
        nodes.append(node(node_id, parent, role, parts, t + turn,
                          content_type="multimodal_text" if len(parts) > 1 else "text"))
        if role == "user" and turn == 2:  # an edit: the abandoned sibling branch
            nodes.append(node(f"old{turn}", parent, "user", ["an earlier wording"], t + turn - 0.5))
        parent = node_id
    mapping = {n["id"]: n for n in nodes}
    for n in nodes:
        if n["parent"]:
            mapping[n["parent"]]["children"].append(n["id"])
    return {"title": sentence(rng, words, 4), "create_time": t, "update_time": t + 100, "mapping": mapping,
            "current_node": parent, "conversation_id": f"conv-{index}", "default_model_slug": "gpt-4o"}


def generate_export(path: Path, size_mb: float, seed: int = 7) -> int:
    """Stream conversations into `path` until it reaches `size_mb`; returns how many were written."""
    rng = random.Random(seed)
    words = make_vocabulary(rng)
    target = int(size_mb * 1024 * 1024)
    written = count = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[")
        while written < target:
            chunk = ("," if count else "") + json.dumps(make_conversation(rng, words, count), ensure_ascii=False)
            fh.write(chunk)
            written += len(chunk.encode("utf-8"))
            count += 1
        fh.write("]")
    return count


CHILD = """
import json, sys, time
from rhizome.ingest import ingest_paths
from rhizome.workspace import Workspace
start = time.perf_counter()
report = ingest_paths(Workspace(sys.argv[1]), [sys.argv[2]])
print(json.dumps({"seconds": time.perf_counter() - start, "records_added": report["records_added"],
                  "entry": report["files"][0]}))
"""


def measure_ingest(workspace: Path, export: Path) -> dict:
    """Run ingest in a child process; returns its timing, peak RSS and report entry."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(workspace), str(export)], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=wall, peak_rss_mb=peak_kb / 1024, earlier_children_peak_mb=before / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=200.0, help="size of the generated export")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ingest")
    parser.add_argument("--keep", action="store_true", help="keep the export and workspace afterwards")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    export = args.out / "conversations.json"
    start = time.perf_counter()
    count = generate_export(export, args.size_mb)
    size_mb = export.stat().st_size / 1024 / 1024
    print(f"generated {count} conversations, {size_mb:.0f} MB in {time.perf_counter() - start:.0f} s", flush=True)
    result = measure_ingest(args.out / "ws", export)
    corpus_mb = (args.out / "ws" / "corpus.jsonl").stat().st_size / 1024 / 1024
    print(json.dumps({"export_mb": round(size_mb, 1), "conversations": count, "corpus_mb": round(corpus_mb, 1),
                      "ingest_seconds": round(result["seconds"], 1), "wall_seconds": round(result["wall_seconds"], 1),
                      "peak_rss_mb": round(result["peak_rss_mb"], 1), "records_added": result["records_added"],
                      "reason": result["entry"]["reason"]}, indent=2))
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
