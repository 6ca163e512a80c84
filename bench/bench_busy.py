"""Chat speed when the machine is busy: idle vs beside the app's own training vs beside a build,
and the demo's wall time idle vs beside a second CPU-heavy process.

The chat side is `rhizome.chat.answer` with its defaults (threads chosen from the free cores),
greedy, on the bundled model; the rate is the decode rate (tokens after the first / time after
the first), the latency is the time to the first token. The training and the build run the way
the app runs them: in a background job of the same process (lower priority, cores claimed).
Every ratio is against the idle single-thread chat measured in the same run.

    .venv/bin/python bench/bench_busy.py --workspace WS [--rounds 3] [--build-messages 3000] [--demo]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhizome import cpu, jobs  # noqa: E402
from rhizome.config import BuildConfig, ChatConfig, TrainConfig  # noqa: E402
from rhizome.workspace import Workspace  # noqa: E402

QUESTION = "How do I keep my sourdough starter healthy?"
BURNER = ("import torch, time\ntorch.set_num_threads({threads})\na = torch.randn(1024, 1024)\n"
          "end = time.time() + {seconds}\nwhile time.time() < end:\n    a @ a\n")


def chat_round(ws: Workspace, threads: int = 0) -> dict:
    from rhizome.chat import answer

    t = answer(ws, QUESTION, ChatConfig(max_tokens=64, temperature=0.0, n_threads=threads, answer_mode="generate")).timings
    return {"tokens_per_s": t["tokens_per_s"], "first_token_s": t["first_token_s"],
            "threads": threads or cpu.interactive_threads(other=0.0)}


def measure(ws: Workspace, rounds: int, threads: int = 0) -> dict:
    rows = [chat_round(ws, threads) for _ in range(rounds)]
    return {key: statistics.median(r[key] for r in rows) for key in ("tokens_per_s", "first_token_s", "threads")}


def prepare(ws: Workspace) -> None:
    from rhizome.curate import build_dataset
    from rhizome.ingest import ingest_paths

    if not ws.split_path("train").is_file():
        ingest_paths(ws, [ROOT / "assets" / "sample"])
        build_dataset(ws, BuildConfig())


def during_training(ws: Workspace, rounds: int) -> dict:
    job = jobs.start_training(ws, TrainConfig(max_steps=1000, eval_steps=0, save_steps=0, logging_steps=1,
                                              knowledge_test_size=0, run_id=f"busy-{int(time.time())}"))
    try:
        while job.running and not any(e.get("loss") is not None for e in job.events):
            time.sleep(0.5)
        return measure(ws, rounds)
    finally:
        jobs.stop_training(ws)
        job.wait(600)
        shutil.rmtree(ws.run_dir(job.run_id), ignore_errors=True)


def during_build(ws: Workspace, rounds: int, messages: int) -> dict:
    """A cold build of a generated corpus in a background job; the chat is measured while it embeds."""
    from rhizome.curate import build_dataset

    other = Workspace(ws.root.parent / "busy-build")
    shutil.rmtree(other.root, ignore_errors=True)
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_corpus.py"), "--messages", str(messages),
                    "--out", str(other.root)], check=True, capture_output=True)
    job = jobs.run_in_background(lambda job: build_dataset(other, BuildConfig(), progress=job.record),
                                 kind="build", yields=True)
    while job.running and not any(e.stage == "embed" and e.step for e in job.events):
        time.sleep(0.2)
    result = measure(ws, rounds)
    result["build_still_embedding"] = job.running
    job.wait()
    shutil.rmtree(other.root, ignore_errors=True)
    return result


def demo_seconds(workdir: Path, burner_threads: int = 0) -> float:
    """Wall time of `python -m rhizome demo --steps 4`, alone or beside a torch matmul loop."""
    burner = None
    if burner_threads:
        burner = subprocess.Popen([sys.executable, "-c", BURNER.format(threads=burner_threads, seconds=3600)])
    try:
        shutil.rmtree(workdir, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rhizome", "demo", "--workspace", str(workdir), "--steps", "4"],
                       cwd=ROOT, check=True, capture_output=True)
        return round(time.perf_counter() - started, 1)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build-messages", type=int, default=3000)
    ap.add_argument("--demo", action="store_true", help="also time the demo idle vs beside a busy process")
    args = ap.parse_args()
    ws = Workspace(args.workspace).ensure()
    prepare(ws)
    chat_round(ws, 1)  # load the engine and the embedder once
    out = {"physical_cores": cpu.physical_cores(), "other_load_at_start": round(cpu.other_load(1.0), 2)}
    out["idle_one_thread"] = measure(ws, args.rounds, threads=1)
    out["idle_default"] = measure(ws, args.rounds)
    out["during_training"] = during_training(ws, args.rounds)
    out["during_build"] = during_build(ws, args.rounds, args.build_messages)
    ref = out["idle_one_thread"]["tokens_per_s"]
    for key in ("idle_default", "during_training", "during_build"):
        out[key]["rate_vs_idle_one_thread"] = round(out[key]["tokens_per_s"] / ref, 2)
    if args.demo:
        idle = demo_seconds(ws.root.parent / "busy-demo")
        busy = demo_seconds(ws.root.parent / "busy-demo", burner_threads=cpu.logical_cores())
        out["demo_s"] = {"idle": idle, "beside_busy_process": busy, "ratio": round(busy / idle, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
