"""Sharing the CPU: how many threads interactive work may use, and background work that yields.

Thread pools that spin-wait for each other (llama.cpp's, OpenMP's) collapse when they have more
threads than free cores: on 2 busy cores a chat with every core decoded at 0.4 tokens/s, with one
thread at 19 (bench/RESULTS.md). So interactive work asks `interactive_threads()`: the physical
cores, minus the cores other processes keep busy (read from /proc/stat, this process's own use
taken out), minus the cores this process's own background jobs hold (`background_work` counts
them), and never fewer than one. Background work (a training or a build started from the app)
runs inside `background_work()`, which lowers its thread's priority, so a chat that competes
with it for a core gets the core. No gradio, no torch here: this module is imported everywhere.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

BACKGROUND_NICE = 10  # CFS weight 110 vs 1024 at nice 0: a niced pool yields ~90% of a contested core
_claims: dict[int, int] = {}  # thread id -> cores claimed by this process's background work
_claims_lock = threading.Lock()


def logical_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Cores, not hyper-threads, among those this process may run on (Linux; else logical)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as pkg, open(base + "core_id") as core:
                cores.add((pkg.read().strip(), core.read().strip()))
        except OSError:
            return len(allowed)
    return max(1, len(cores))


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of this process), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    with open("/proc/self/stat") as fh:
        own = fh.read().rsplit(")", 1)[1].split()
    return (sum(fields[:8]) - idle) / tick, (int(own[11]) + int(own[12])) / tick


def other_load(window: float = 0.15) -> float:
    """Cores kept busy by other processes over the last `window` seconds (0 where /proc is missing)."""
    try:
        busy0, own0 = _cpu_seconds()
        started = time.perf_counter()
        time.sleep(window)
        busy1, own1 = _cpu_seconds()
    except (OSError, ValueError, IndexError):
        return 0.0
    spent = time.perf_counter() - started
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / spent)


class LoadMeter:
    """Other processes' load since the previous reading, without sleeping (for a loop that asks
    every few seconds, such as training steps)."""

    def __init__(self) -> None:
        self.last = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        try:
            return (time.perf_counter(), *_cpu_seconds())
        except (OSError, ValueError, IndexError):
            return None

    def read(self) -> float | None:
        """Cores other processes kept busy since the last reading; None when that was under
        0.2 s ago (the kernel counts in 10 ms ticks: a shorter window says nothing)."""
        now, last = self._now(), self.last
        if now is None or last is None or now[0] - last[0] < 0.2:
            return None
        self.last = now
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


_recent: dict[str, float] = {}
_recent_lock = threading.Lock()


def recent_load(period: float = 1.0) -> float:
    """Cores other processes kept busy over about the last `period` seconds, without waiting:
    a daemon thread reads /proc/stat every `period`. The first call measures once itself
    (`other_load`, 150 ms) and starts the thread; later calls (each chat answer) cost nothing."""
    with _recent_lock:
        if "load" not in _recent:
            _recent["load"] = other_load()
            threading.Thread(target=_sample_load, args=(period,), daemon=True, name="rhizome-load").start()
        return _recent["load"]


def _sample_load(period: float) -> None:
    meter = LoadMeter()
    while True:
        time.sleep(period)
        load = meter.read()
        if load is not None:
            _recent["load"] = load


def pool_threads(other: float | None = None) -> int:
    """Threads for a CPU pool (torch, FAISS/OpenMP) of a stage that runs now: the physical cores
    other processes leave free, at least one. More threads than free cores only adds waiting."""
    other = other_load() if other is None else other
    return max(1, physical_cores() - round(other))


def fit_pools(threads: int) -> int:
    """Size torch's and FAISS's thread pools (whichever is loaded) for this process."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    return threads


def claimed_cores() -> int:
    """Cores this process's own background work holds right now."""
    with _claims_lock:
        return sum(_claims.values())


def interactive_threads(pinned: int = 0, other: float | None = None) -> int:
    """Threads for interactive work (a chat answer's decoding, a transcription): `pinned` when the
    person set one, else the physical cores that are free now (`other`: the other processes' load,
    measured when not given), at least one. Decoding threads wait for each other every token,
    so they must not share a core with anything."""
    if pinned > 0:
        return pinned
    other = other_load() if other is None else other
    free = physical_cores() - claimed_cores() - round(other)
    return max(1, min(free, physical_cores()))


def prompt_threads(pinned: int = 0, other: float | None = None) -> int:
    """Threads for reading a prompt (one large batched pass): the cores other processes leave
    free, including those this process's background work holds, which yields them at its lower
    priority. Busy threads need no waiting partner, so these cores are worth taking."""
    return pinned if pinned > 0 else pool_threads(other)


@contextmanager
def background_work(cores: int | None = None) -> Iterator[int]:
    """Run the body as background work: this thread (and the thread pools it starts from now on,
    which inherit it) at lower priority, and `cores` (default: all physical) counted as taken
    while it runs. Yields the cores claimed."""
    cores = physical_cores() if cores is None else cores
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + BACKGROUND_NICE))
    except (OSError, AttributeError):  # not Linux, or not allowed: the work still runs
        before = None
    with _claims_lock:
        _claims[tid] = cores
    try:
        yield cores
    finally:
        with _claims_lock:
            _claims.pop(tid, None)
        if before is not None:
            try:  # lowering a nice value may need privileges; the thread ends soon anyway
                os.setpriority(os.PRIO_PROCESS, tid, before)
            except OSError:
                pass
