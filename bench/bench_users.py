"""Several people chatting at once: a real app, N concurrent `gradio_client` users, the bundled model.

Starts `app.py --demo` on 127.0.0.1 (each client is a browser-like session with its own
temporary workspace, seeded with the built sample, so answers retrieve over real documents),
then N users each ask `--questions` questions in turn through the `/chat` API endpoint, all N at
the same time. Per request: time to first token (submit → first streamed text), total time,
tokens generated (`--answer-mode generate`, the default here: every answer written by the model).
Reported: every request answered?, error count, p50/p95 time to first token,
p50/p95 total, and total tokens/s (all tokens / wall time of the whole run); the reference, in
the same run: one person alone (time to first token, tokens/s), and the throughput ratio.

    .venv/bin/python bench/bench_users.py [--users 8] [--questions 2] [--out bench/out]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What is in my notes about the garden?", "Summarise what I wrote about learning.",
             "What did I plan to cook this week?", "Which books did I mention?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "RHIZOME_AUTH", "GRADIO_TEMP_DIR")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--demo", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the app did not start")


def open_session(url: str):
    """A client (its own session, so its own demo workspace), opened and seeded before timing."""
    from gradio_client import Client

    client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
    client.predict(api_name="/sources")
    return client


def one_user(client, index: int, questions: int, results: list, barrier: threading.Barrier,
             answer_mode: str) -> None:
    barrier.wait()
    for q in range(questions):
        question = QUESTIONS[(index + q) % len(QUESTIONS)]
        started, first, final, error = time.perf_counter(), None, None, None
        try:
            job = client.submit(question, f"user{index}", answer_mode, api_name="/chat")
            for update in job:
                if first is None and update.get("answer"):
                    first = time.perf_counter()
                final = update
            final = job.result()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        ok = error is None and isinstance(final, dict) and final.get("done") and final.get("answer")
        results.append({"user": index, "question": q, "ok": bool(ok), "error": error,
                        "ttft_s": (first or ended) - started, "total_s": ended - started,
                        "tokens": ((final or {}).get("timings") or {}).get("completion_tokens", 0) if ok else 0})


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--questions", type=int, default=2, help="questions per user, asked one after another")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--answer-mode", default="generate",
                    help="the chat's answer mode: generate (the model writes every answer: the load measured) or "
                         "auto (the default for people: the bundled model quotes its sources, in well under a second)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_app(port, args.out / "bench_users_server.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        results: list[dict] = []
        # people arrive one after another (opening a page is not what is measured), then all ask at once
        clients = [open_session(url) for _ in range(args.users)]
        # warm-up: loads the model and the embedder
        one_user(clients[0], 0, 1, [], threading.Barrier(1), args.answer_mode)
        # the reference, in the same run: one person alone asks one question
        solo: list[dict] = []
        solo_started = time.perf_counter()
        one_user(clients[1 % len(clients)], 0, 1, solo, threading.Barrier(1), args.answer_mode)
        solo_wall = time.perf_counter() - solo_started
        barrier = threading.Barrier(args.users + 1)
        threads = [threading.Thread(target=one_user, args=(clients[i], i, args.questions, results, barrier,
                                                           args.answer_mode))
                   for i in range(args.users)]
        for t in threads:
            t.start()
        barrier.wait()  # every session is open; now all ask at once
        started = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)
    ok = [r for r in results if r["ok"]]
    summary = {
        "users": args.users, "answer_mode": args.answer_mode, "requests": len(results), "answered": len(ok),
        "errors": len(results) - len(ok),
        "ttft_p50_s": round(pct([r["ttft_s"] for r in ok], 50), 2), "ttft_p95_s": round(pct([r["ttft_s"] for r in ok], 95), 2),
        "total_p50_s": round(pct([r["total_s"] for r in ok], 50), 2), "total_p95_s": round(pct([r["total_s"] for r in ok], 95), 2),
        "tokens": sum(r["tokens"] for r in ok), "wall_s": round(wall, 2),
        "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1) if wall else None,
        "mean_tokens_per_answer": round(statistics.mean([r["tokens"] for r in ok]), 1) if ok else 0,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "solo_ttft_s": round(solo[0]["ttft_s"], 2), "solo_total_s": round(solo[0]["total_s"], 2),
        "solo_tokens_per_s": round(solo[0]["tokens"] / solo_wall, 1) if solo[0]["ok"] else None,
    }
    if summary["solo_tokens_per_s"] and summary["tokens_per_s"]:
        summary["throughput_ratio_vs_solo"] = round(summary["tokens_per_s"] / summary["solo_tokens_per_s"], 2)
    (args.out / "users_results.json").write_text(json.dumps({"summary": summary, "requests": results}, indent=2))
    print(json.dumps(summary, indent=2))
    for r in results:
        if r["error"]:
            print("error:", r["error"], file=sys.stderr)


if __name__ == "__main__":
    main()
