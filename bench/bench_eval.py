"""Tune the chat's answer settings by the eval: each variant answers the same document questions.

    .venv/bin/python bench/bench_eval.py --workspace WS --run RUN [--questions 50] [--models base,tuned]

For each variant of ChatConfig (sources, prompt layout, sampling, extractive answers) the eval
asks the same seeded document questions with retrieval on and prints one Markdown table row
per variant and model: score (mean of key-term recall and embedding similarity), the rate of
answers citing the right source, words and seconds per answer. The variant that scores best
becomes the ChatConfig default (bench/RESULTS.md records the table).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rhizome.config import ChatConfig, EvalConfig  # noqa: E402
from rhizome.evaluate import evaluate_run  # noqa: E402
from rhizome.workspace import Workspace  # noqa: E402

BEFORE = dict(top_k=4, source_chars=0, prompt_layout="sources_first", temperature=0.7, top_p=0.9,
              repeat_penalty=1.1, answer_mode="generate")
VARIANTS = {
    "before (defaults until now)": {},
    "greedy": dict(temperature=0.0),
    "greedy, repeat penalty 1.3": dict(temperature=0.0, repeat_penalty=1.3),
    "greedy, 2 sources": dict(temperature=0.0, top_k=2),
    "greedy, 3 sources of 400 chars": dict(temperature=0.0, top_k=3, source_chars=400),
    "greedy, 2 sources of 300 chars, compact": dict(temperature=0.0, top_k=2, source_chars=300, prompt_layout="compact"),
    "greedy, question first": dict(temperature=0.0, prompt_layout="question_first"),
    "greedy, compact prompt": dict(temperature=0.0, prompt_layout="compact"),
    "extractive (from your notes)": dict(answer_mode="extractive"),
    "extractive, 2 sources": dict(answer_mode="extractive", top_k=2),
    "extractive, 1 source": dict(answer_mode="extractive", top_k=1),
    "extractive, 3 sources": dict(answer_mode="extractive", top_k=3),
    "extractive, 2 sources of 300 chars": dict(answer_mode="extractive", top_k=2, source_chars=300),
    "after (new defaults)": None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--models", default="base,tuned")
    parser.add_argument("--only", default="", help="variant names separated by ';' (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = the chat's setting)")
    args = parser.parse_args()
    ws = Workspace(args.workspace)
    only = [v.strip() for v in args.only.split(";") if v.strip()]
    print("| variant | model | score | term recall | similarity | right source cited | words | s/answer |")
    print("|---|---|---|---|---|---|---|---|")
    for name, changes in VARIANTS.items():
        if only and name not in only:
            continue
        settings = {**BEFORE, **changes} if changes is not None else ChatConfig().to_dict()
        chat = ChatConfig().replace(**{k: settings[k] for k in BEFORE if k != "answer_mode"})
        config = EvalConfig(models=args.models.split(","), retrieval="on", questions=args.questions,
                            perplexity=False, max_tokens=args.max_tokens, answer_mode=settings["answer_mode"],
                            temperature=settings["temperature"], n_threads=args.threads)
        started = time.perf_counter()
        result = evaluate_run(ws, args.run, config, chat=chat)
        for row in result["rows"]:
            s = row["summary"]
            print(f"| {name} | {row['label']} | {s['score']:.3f} | {s['term_recall']:.3f} | {s['similarity']:.3f} | "
                  f"{s['hit_and_cited_rate']:.2f} | {s['words']:.0f} | {s['seconds'] or 0:.2f} |", flush=True)
        print(f"<!-- {name}: {time.perf_counter() - started:.0f} s, eval {result['stamp']} -->", flush=True)


if __name__ == "__main__":
    main()
