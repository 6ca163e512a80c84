"""Interactive work first: the chat stays fast beside the app's own training and builds, the
thread count it picks follows the app's jobs, and a build reports its embedding rate and ETA."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from rhizome import cpu, jobs
from rhizome.config import BuildConfig, ChatConfig, TrainConfig
from rhizome.workspace import Workspace

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample"
QUESTION = "How do I keep my sourdough starter healthy?"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sample, ingested and built from a cold embedding cache, with every progress event kept."""
    from rhizome.curate import build_dataset
    from rhizome.ingest import ingest_paths

    ws = Workspace(tmp_path_factory.mktemp("busy") / "ws").ensure()
    ingest_paths(ws, [SAMPLE])
    events = []
    build_dataset(ws, BuildConfig(), progress=lambda e: events.append((time.perf_counter(), e)))
    return ws, events


def test_recent_load_sees_a_busy_process_without_waiting():
    import subprocess
    import sys

    cpu.recent_load(period=0.25)  # starts the sampler
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(2.5)  # sampler periods with the spinner running (1 s if a chat started it first)
        started = time.perf_counter()
        load = cpu.recent_load()
        spent = time.perf_counter() - started
    finally:
        spinner.kill()
        spinner.wait()
    assert spent < 0.01  # a chat answer no longer waits 150 ms to measure
    assert load >= 0.5  # the spinner alone keeps most of a core busy


def test_background_work_yields_and_the_chat_count_follows_it():
    before = cpu.interactive_threads(other=0.0)
    started, release = threading.Event(), threading.Event()

    def work(job):
        started.set()
        release.wait(10)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    job = jobs.run_in_background(work, kind="test", yields=True)
    assert started.wait(10)
    during = cpu.interactive_threads(other=0.0)
    release.set()
    job.wait(10)
    after = cpu.interactive_threads(other=0.0)
    assert job.result == os.getpriority(os.PRIO_PROCESS, 0) + cpu.BACKGROUND_NICE  # the job's thread yields
    assert during == 1 and after == before == cpu.physical_cores()
    assert cpu.prompt_threads(other=0.0) == cpu.physical_cores()  # a prompt may take the yielded cores
    assert cpu.interactive_threads(pinned=3) == 3  # a person's explicit choice always wins


def test_build_progress_carries_embedding_rate_and_a_fair_eta(built):
    _, events = built
    embeds = [(t, e) for t, e in events if e.stage == "embed" and e.step]
    assert len(embeds) >= 4 and all(e.get("texts_per_s") > 0 for _, e in embeds)
    end = embeds[-1][0]
    # an early, a middle and a late estimate, each within a factor of two of the time that was left
    for t, e in (embeds[len(embeds) // 4], embeds[len(embeds) // 2], embeds[3 * len(embeds) // 4]):
        real = end - t
        assert real / 2 <= e.get("eta_s") <= real * 2, (e.step, e.total, e.get("eta_s"), real)


def _chat(ws, threads: int = 0):
    from rhizome.chat import answer

    result = answer(ws, QUESTION, ChatConfig(max_tokens=48, temperature=0.0, n_threads=threads, answer_mode="generate"))
    return result.timings["tokens_per_s"], result.timings["first_token_s"]


@pytest.mark.slow
def test_chat_beside_a_running_training_keeps_half_its_idle_speed(built):
    ws = built[0]
    _chat(ws, 1)  # load the engine and the embedder
    idle_rate, _ = _chat(ws, 1)  # the reference: one thread on an idle machine
    _, idle_first = _chat(ws)  # and the first token with the chat's own choice of threads
    idle_threads = cpu.interactive_threads(other=0.0)
    job = jobs.start_training(ws, TrainConfig(max_steps=500, eval_steps=0, save_steps=0, logging_steps=1,
                                              knowledge_test_size=0))
    try:
        deadline = time.time() + 300
        while job.running and not any(e.get("loss") is not None for e in job.events) and time.time() < deadline:
            time.sleep(0.5)
        assert job.running, job.error  # training is in its step loop, all cores busy
        busy_threads = cpu.interactive_threads(other=0.0)
        rate, first = _chat(ws)
    finally:
        jobs.stop_training(ws)
        job.wait(300)
    assert busy_threads < idle_threads or idle_threads == 1
    assert cpu.interactive_threads(other=0.0) == idle_threads
    assert rate >= 0.5 * idle_rate, (rate, idle_rate)
    # within 2 s, or (on a machine too slow to read this prompt in 2 s even when idle) no later
    # than a quarter more than idle: the training costs the answer almost nothing
    assert first <= max(2.0, 1.25 * idle_first), (first, idle_first)
    shutil.rmtree(ws.runs, ignore_errors=True)
