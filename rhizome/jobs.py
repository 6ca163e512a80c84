"""Background work: run a function in a thread, stream what it reports, stop it, re-attach later.

Everything long that the app starts goes through `Job`: a build or an export streamed into the
page (`run_in_background`), a chat answer's tokens, and a training (`start_training`), which is
also registered so that a reloaded page finds it again. A job keeps every event it reported and
hands them, as they come, to the one caller that follows it (`Job.updates`). Run folders,
training locks and stop files belong to `rhizome.train.runs`; this module only uses them.
One training runs per workspace at a time: a second start is refused here (this process) and
by the trainer's own lock (any process: the app and the CLI on one workspace). No gradio here.
"""
from __future__ import annotations

import contextvars
import os
import queue
import sys
import threading
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import cpu, slots
from .config import TrainConfig
from .train import history, runs
from .workspace import UserError, Workspace

_DONE = object()  # put on a job's queue when it ends


@dataclass
class Job:
    """Work running in a background thread; `events` grows as it reports progress."""

    kind: str
    workspace: Path | None = None
    run_id: str | None = None
    events: list[Any] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    status: str = "running"  # running | done | stopped | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    _queue: queue.Queue = field(default_factory=queue.Queue, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def last_event(self) -> Any:
        return self.events[-1] if self.events else None

    def record(self, event: Any) -> None:
        """The `progress` callback handed to the work (an `Event`, or a token for a chat)."""
        self.events.append(event)
        self._queue.put(event)

    def updates(self, poll: float | None = None) -> Iterator[Any]:
        """Each recorded item as it arrives, and None every `poll` seconds without one, until
        the job ends. For one follower: items taken here are not seen by a second caller."""
        while True:
            try:
                item = self._queue.get(timeout=poll)
            except queue.Empty:
                yield None
                continue
            if item is _DONE:
                return
            yield item

    def raise_if_failed(self) -> None:
        """Re-raise the work's exception in the caller's thread (where the UI formats it)."""
        if self.exception is not None:
            raise self.exception

    def stop(self) -> None:
        """Ask the work to stop at its next step (a training keeps its last checkpoint)."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


def run_in_background(fn: Callable[[Job], Any], kind: str = "work", yields: bool = False, **fields: Any) -> Job:
    """Start `fn(job)` in a daemon thread; the job survives a closed page and records its outcome.

    `yields`: CPU-heavy work (a build, a training, an export) that gives way to interactive work
    (`cpu.background_work`: lower priority, its cores counted as taken while it runs).
    """
    job = Job(kind=kind, **fields)
    # In a copy of the caller's context: work started for a signed-in person keeps resolving
    # that person's workspace (the UI keeps it in a context variable).
    job.thread = threading.Thread(target=contextvars.copy_context().run, args=(_run, job, fn, yields),
                                  name=f"rhizome-{kind}", daemon=True)
    job.thread.start()
    return job


def _run(job: Job, fn: Callable[[Job], Any], yields: bool) -> None:
    try:
        with cpu.background_work() if yields else nullcontext():
            job.result = fn(job)
        job.status = "stopped" if job.stop_event.is_set() else "done"
    except UserError as exc:
        job.exception, job.error, job.status = exc, str(exc), "failed"
    except BaseException as exc:  # the thread must record every failure, or the UI waits forever
        traceback.print_exc(file=sys.stderr)
        job.exception, job.error, job.status = exc, f"unexpected {type(exc).__name__}: {exc}", "failed"
    finally:
        job.finished = time.time()
        job._queue.put(_DONE)


# ---- registered jobs: one of a kind per workspace, found again after a page reload ----------

_JOBS: dict[tuple[str, str], Job] = {}
_JOBS_LOCK = threading.Lock()


def start_job(ws: Workspace, kind: str, fn: Callable[[Job], Any], run_id: str | None = None) -> Job:
    """Run `fn(job)` in a thread; refuses a second job of the same kind in this workspace."""
    key = (str(ws.root), kind)
    with _JOBS_LOCK:
        current = _JOBS.get(key)
        if current is not None and current.running:
            raise UserError(f"a {kind} job ({current.run_id or 'unnamed'}) is already running in this workspace; "
                            "stop it or wait for it to finish")
        job = _JOBS[key] = run_in_background(fn, kind, yields=True, workspace=ws.root, run_id=run_id)
    return job


def active_job(ws: Workspace, kind: str = "train") -> Job | None:
    """The running job of this kind in this process, if any."""
    job = _JOBS.get((str(ws.root), kind))
    return job if job is not None and job.running else None


def last_job(ws: Workspace, kind: str = "train") -> Job | None:
    """The most recent job of this kind in this process, running or not."""
    return _JOBS.get((str(ws.root), kind))


# ---- training ---------------------------------------------------------------------------------


def start_training(ws: Workspace, config: TrainConfig | None = None) -> Job:
    """Start `train_lora` in the background; a second training in this workspace is refused."""
    config = slots.cap_training(config or TrainConfig())  # a shared demo caps the steps
    ws.ensure()
    held = training_lock(ws)
    if held is not None:
        raise UserError(f"a training run ({held.get('run_id', '?')}) is already running in this workspace "
                        f"(process {held.get('pid', '?')}); stop it or wait for it to finish")
    if not config.run_id:
        config = config.replace(run_id=runs.resume_target(ws, None) if config.resume else runs.new_run_id(ws))

    def train(job: Job) -> str:
        from .train import train_lora  # heavy (torch, transformers): only when a run starts

        with slots.training_turn(job.record, job.stop_event):  # a shared demo: one at a time, queued
            return train_lora(ws, config, progress=job.record, stop_event=job.stop_event)

    return start_job(ws, "train", train, run_id=config.run_id)


def stop_training(ws: Workspace) -> str | None:
    """Ask the running training to stop at its next step (in this process or another one).

    Returns the run id asked, or None when nothing runs.
    """
    job = active_job(ws, "train")
    if job is not None:
        job.stop()
        return job.run_id
    held = runs.lock_holder(ws)
    if held is not None and held.get("run_id"):
        runs.request_stop(ws, held["run_id"])
        return held["run_id"]
    return None


def training_lock(ws: Workspace) -> dict[str, Any] | None:
    """Who trains in this workspace right now ({"run_id", "pid"}), from any process; else None.

    A job of this process counts from the moment it starts (before the trainer takes the lock).
    """
    job = active_job(ws, "train")
    if job is not None:
        return {"run_id": job.run_id, "pid": os.getpid()}
    return runs.lock_holder(ws)


def read_events(ws: Workspace, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A run's logged events appended since byte `offset`, and the offset to read from next."""
    return history.read_events_since(runs.events_path(ws.run_dir(run_id)), offset)


def run_status(ws: Workspace, run_id: str) -> str:
    """running | done | stopped | failed | interrupted | unknown, for any run of the workspace.

    This process's job knows best; otherwise the run folder tells (`runs.run_state`).
    """
    job = last_job(ws, "train")
    if job is not None and job.run_id == run_id:
        return job.status
    return runs.run_state(ws, run_id)
