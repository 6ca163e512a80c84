"""Generation speed through `rhizome.chat.answer` vs raw llama-cpp-python, same GGUF and prompt.

Both sides load the same GGUF with the same context size and thread count, get the same system
+ user messages, use the same sampling settings, greedy (so they produce the same tokens), and stream. The rate is the
decode rate: generated tokens after the first, divided by the time from the first streamed text
to the end of the stream (prompt processing excluded on both sides). Rounds alternate between
the two sides so background load hits both alike; the median of the rounds is reported.

    .venv/bin/python bench/bench_chat.py [--model PATH.gguf] [--rounds 5] [--max-tokens 128]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhizome.chat import answer  # noqa: E402
from rhizome.config import ChatConfig  # noqa: E402
from rhizome.models import detect_hardware, resolve_gguf  # noqa: E402
from rhizome.workspace import Workspace  # noqa: E402

SYSTEM = "You are a helpful assistant."
QUESTION = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def timed_stream(run) -> tuple[str, float | None, float, float]:
    """(text, time to first text, time of first text, time of end) for one streamed reply."""
    parts, marks = [], []

    def on_text(text: str) -> None:
        if text:
            marks.append(time.perf_counter())
            parts.append(text)

    started = time.perf_counter()
    run(on_text)
    ended = time.perf_counter()
    first = marks[0] if marks else ended
    return "".join(parts), (first - started) if marks else None, first, ended


def raw_side(llm, config: ChatConfig):
    def run(on_text) -> None:
        llm.reset()  # whole prompt evaluated afresh, as rhizome does: same logits, same tokens
        stream = llm.create_chat_completion(
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
            max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p, min_p=config.min_p,
            top_k=config.sample_top_k, repeat_penalty=config.repeat_penalty, seed=config.seed, stream=True,
        )
        for chunk in stream:
            on_text(chunk["choices"][0]["delta"].get("content") or "")

    return run


def rhizome_side(ws: Workspace, config: ChatConfig):
    def run(on_text) -> None:
        answer(ws, QUESTION, config, on_token=on_text)

    return run


def measure(run, count_tokens) -> dict:
    text, ttft, first, ended = timed_stream(run)
    tokens = count_tokens(text)
    return {"tokens": tokens, "ttft_s": ttft, "tokens_per_s": (tokens - 1) / (ended - first), "text": text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="GGUF path (default: the bundled SmolLM2-135M Q4_1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads on both sides (0 = all cores)")
    args = parser.parse_args()

    from llama_cpp import Llama

    path = resolve_gguf(args.model)
    threads = args.threads or detect_hardware().cpu_threads
    ws = Workspace(tempfile.mkdtemp(prefix="bench_chat_")).ensure()
    config = ChatConfig(model=str(path), retrieval=False, temperature=0.0, max_tokens=args.max_tokens,
                        n_ctx=args.n_ctx, n_threads=threads, system_prompt=SYSTEM)
    raw = Llama(model_path=str(path), n_ctx=args.n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    count = lambda text: len(raw.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    sides = {"raw llama-cpp-python": raw_side(raw, config), "rhizome.chat.answer": rhizome_side(ws, config)}
    for run in sides.values():  # warm-up: loads the rhizome engine, faults the weights in
        timed_stream(run)
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, run in sides.items():
            results[name].append(measure(run, count))
    summary = {name: {"median_tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rows), 1),
                      "tokens": rows[0]["tokens"], "median_ttft_s": round(statistics.median(r["ttft_s"] for r in rows), 3)}
               for name, rows in results.items()}
    raw_rate = summary["raw llama-cpp-python"]["median_tokens_per_s"]
    ours = summary["rhizome.chat.answer"]["median_tokens_per_s"]
    same_text = results["raw llama-cpp-python"][0]["text"].strip() == results["rhizome.chat.answer"][0]["text"].strip()
    report = {"model": str(path), "threads": threads, "rounds": args.rounds, "max_tokens": args.max_tokens,
              "sides": summary, "ratio": round(ours / raw_rate, 3), "same_text": same_text}
    raw.close()
    print(json.dumps(report, indent=2))
    print(f"\n| side | decode tokens/s (median of {args.rounds}) | tokens | time to first token s |\n|---|---|---|---|")
    for name, row in summary.items():
        print(f"| {name} | {row['median_tokens_per_s']} | {row['tokens']} | {row['median_ttft_s']} |")
    print(f"\nratio rhizome / raw = {report['ratio']:.3f} (target >= 0.90); identical text: {same_text}")


if __name__ == "__main__":
    main()
