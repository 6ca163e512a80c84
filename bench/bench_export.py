"""Benchmark of export: llama.cpp's converter vs Rhizome's former GGUF writer, and chat speed per GGUF type.

    python bench/bench_export.py --old-writer /work/main     # a checkout that still has rhizome/export/gguf.py

1. The bundled SmolLM2-135M, dequantised into an HF folder (what a merged export folder looks
   like), is converted to F16 GGUF `--repeats` times each way, alternating, each in a fresh child
   process: the converter (`rhizome.export.converters.convert_hf`, which itself runs
   convert_hf_to_gguf.py in a grandchild) and the former writer (`write_f16_gguf` imported from
   `--old-writer`). Wall time and peak RSS (the largest `ru_maxrss` of the process and its
   children) are recorded.
2. The converter's F16 is quantised to q8_0 and q4_k_m with llama.cpp's quantiser, then each
   GGUF generates 128 tokens greedily (`--threads`) on a fixed prompt; tokens/s is the decode rate,
   prompt evaluation excluded.
Results go to `bench/out/export_results.json` and are printed as a Markdown block.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

CHILD = r'''
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
src, dst, way = sys.argv[2], sys.argv[3], sys.argv[4]
started = time.perf_counter()
if way == "converter":
    from rhizome.export.converters import convert_hf
    from rhizome.models import bundled_gguf_path
    convert_hf(src, dst, "f16", "bench", bundled_gguf_path())
else:
    from rhizome.export.gguf import write_f16_gguf
    from rhizome.models import bundled_gguf_path
    write_f16_gguf(src, dst, base_gguf=bundled_gguf_path(), name="bench")
seconds = time.perf_counter() - started
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024}))
'''


def convert_once(root: Path, src: Path, dst: Path, way: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(src), str(dst), way],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started  # including Python/torch start-up
    return result


def chat_speed(path: Path, threads: int, n: int = 128) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    try:
        ids = llm.tokenize(b"<|im_start|>user\nTell me a long story about a garden.<|im_end|>\n<|im_start|>assistant\n",
                           special=True)
        llm.eval(ids)
        started, count = time.perf_counter(), 0
        for _ in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=False):
            count += 1
            if count == n:
                break
        return count / (time.perf_counter() - started)
    finally:
        llm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-writer", type=Path, required=True, help="checkout with rhizome/export/gguf.py")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the chat speed")
    parser.add_argument("--chat-only", action="store_true", help="skip the conversions (reuse bench/out's F16)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rhizome.export.quantize import quantize_gguf
    from rhizome.models import resolve_train_model

    OUT.mkdir(parents=True, exist_ok=True)
    src = Path(resolve_train_model("bundled"))
    runs: dict[str, list[dict]] = {"converter": [], "former writer": []}
    for _ in range(0 if args.chat_only else args.repeats):
        runs["converter"].append(convert_once(ROOT, src, OUT / "conv-f16.gguf", "converter"))
        runs["former writer"].append(convert_once(args.old_writer, src, OUT / "old-f16.gguf", "old"))
    f16 = OUT / "conv-f16.gguf"
    speeds = {"f16": chat_speed(f16, args.threads)}
    for quant in ("q8_0", "q4_k_m"):
        speeds[quant] = chat_speed(quantize_gguf(f16, OUT / f"conv-{quant}.gguf", quant), args.threads)
    result = {"load": os.getloadavg(), "runs": runs, "tokens_per_s": speeds,
              "sizes_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(OUT.glob("*-*.gguf"))}}
    (OUT / "export_results.json").write_text(json.dumps(result, indent=2))
    print("| way | wall s (in-process) | with start-up s | peak RSS MB |\n|---|---|---|---|")
    for way, rows in runs.items():
        for r in rows:
            print(f"| {way} | {r['seconds']:.1f} | {r['process_seconds']:.1f} | {r['peak_mb']:.0f} |")
    print("\n| GGUF | tokens/s |\n|---|---|")
    for quant, speed in speeds.items():
        print(f"| {quant} | {speed:.1f} |")
    print(f"\nload average {result['load']}")


if __name__ == "__main__":
    main()
