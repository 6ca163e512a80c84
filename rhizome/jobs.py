"""Background jobs: run a long stage in a thread, stream its events, re-attach after a reload.

The UI must not hold a long stage inside a request: a page reload would orphan it and a second
click would start a second one. So a job runs in its own thread, its events are kept in memory
(and, for training, appended by the trainer to `runs/<id>/events.jsonl`), and any page can read
them back. One training runs per workspace at a time: a second start is refused here (this
process) and by the trainer's own lock (any process: the app and the CLI on one workspace).
No gradio here.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import slots
from .config import TrainConfig
from .workspace import UserError, Workspace, read_json

STATES = {"finished": "done", "stopped": "stopped", "failed": "failed", "interrupted": "interrupted"}


@dataclass
class Job:
    """A stage running in a background thread; `events` grows as it reports progress."""

    kind: str
    workspace: Path
    run_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    status: str = "running"  # running | done | stopped | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def last_event(self) -> dict[str, Any] | None:
        return self.events[-1] if self.events else None

    def record(self, event: dict[str, Any]) -> None:
        """The `progress` callback handed to the stage."""
        self.events.append(dict(event))

    def stop(self) -> None:
        """Ask the stage to stop at its next step (it keeps its last checkpoint)."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


_JOBS: dict[tuple[str, str], Job] = {}
_JOBS_LOCK = threading.Lock()


def new_run_id() -> str:
    """A sortable run name, date and time to the second (the trainer's own format)."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def start_job(ws: Workspace, kind: str, fn: Callable[[Job], Any], run_id: str | None = None) -> Job:
    """Run `fn(job)` in a thread; refuses a second job of the same kind in this workspace."""
    key = (str(ws.root), kind)
    with _JOBS_LOCK:
        current = _JOBS.get(key)
        if current is not None and current.running:
            raise UserError(f"a {kind} job ({current.run_id or 'unnamed'}) is already running in this workspace; "
                            "stop it or wait for it to finish")
        job = Job(kind=kind, workspace=ws.root, run_id=run_id)
        _JOBS[key] = job
    job.thread = threading.Thread(target=_run, args=(job, fn), name=f"rhizome-{kind}", daemon=True)
    job.thread.start()
    return job


def _run(job: Job, fn: Callable[[Job], Any]) -> None:
    try:
        job.result = fn(job)
        job.status = "stopped" if job.stop_event.is_set() else "done"
    except UserError as exc:
        job.error, job.status = str(exc), "failed"
    except Exception as exc:  # the thread must record every failure, or the UI waits forever
        traceback.print_exc(file=sys.stderr)
        job.error, job.status = f"unexpected {type(exc).__name__}: {exc}", "failed"
    finally:
        job.finished = time.time()


def active_job(ws: Workspace, kind: str = "train") -> Job | None:
    """The running job of this kind in this process, if any."""
    job = _JOBS.get((str(ws.root), kind))
    return job if job is not None and job.running else None


def last_job(ws: Workspace, kind: str = "train") -> Job | None:
    """The most recent job of this kind in this process, running or not."""
    return _JOBS.get((str(ws.root), kind))


# ---- training -----------------------------------------------------------------------------
# The trainer itself holds an exclusive flock on runs/.train.lock while it runs (from any
# process: the app, the CLI, an accelerate launch) and keeps runs/<id>/status.json; these names
# must match rhizome.train.runs, which is not imported here because it pulls in torch.
TRAIN_LOCK = ".train.lock"
STOP_FILE = "STOP"


def start_training(ws: Workspace, config: TrainConfig | None = None) -> Job:
    """Start `train_lora` in the background; a second training in this workspace is refused."""
    config = slots.cap_training(config or TrainConfig())  # a shared demo caps the steps
    ws.ensure()
    held = training_lock(ws)
    if held is not None:
        raise UserError(f"a training run ({held.get('run_id', '?')}) is already running in this workspace "
                        f"(process {held.get('pid', '?')}); stop it or wait for it to finish")
    if not config.run_id:
        config = config.replace(run_id=_resume_target(ws) if config.resume else new_run_id())

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
    held = training_lock(ws)
    if held is not None and held.get("run_id"):
        stop_file = ws.run_dir(held["run_id"]) / STOP_FILE  # the trainer polls for this file
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.write_text(str(time.time()), encoding="utf-8")
        return held["run_id"]
    return None


def _resume_target(ws: Workspace) -> str:
    runs = [r for r in ws.list_runs() if (ws.run_dir(r) / "config.yaml").is_file()]
    if not runs:
        raise UserError("nothing to resume: this workspace has no runs yet")
    return runs[0]


def training_lock(ws: Workspace) -> dict[str, Any] | None:
    """Who trains in this workspace right now ({"run_id", "pid"}), from any process; else None.

    A job of this process counts from the moment it starts (before the trainer takes the lock).
    """
    job = active_job(ws, "train")
    if job is not None:
        return {"run_id": job.run_id, "pid": os.getpid()}
    path = ws.runs / TRAIN_LOCK
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        try:  # probing: if we can take the lock, nobody holds it
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(path.read_text(encoding="utf-8") or "{}")
            except (OSError, ValueError):
                return {}
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


# ---- events on disk: what a reloaded page reads back ----------------------------------------


def events_path(ws: Workspace, run_id: str) -> Path:
    return ws.run_dir(run_id) / "events.jsonl"


def read_events(ws: Workspace, run_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events appended since byte `offset`, and the offset to read from next time.

    A line still being written (no newline yet) is left for the next call.
    """
    path = events_path(ws, run_id)
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    events = []
    for line in complete.decode("utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # one damaged line must not hide the rest of the run
    return events, offset + len(complete)


def run_status(ws: Workspace, run_id: str) -> str:
    """running | done | stopped | failed | interrupted | unknown, for any run of the workspace.

    This process's job knows best; otherwise the trainer's lock and its `status.json` tell.
    """
    job = last_job(ws, "train")
    if job is not None and job.run_id == run_id:
        return job.status
    lock = training_lock(ws)
    if lock is not None and lock.get("run_id") == run_id:
        return "running"
    state = (read_json(ws.run_dir(run_id) / "status.json", default={}) or {}).get("state")
    if state == "running":
        return "interrupted"  # its process is gone without saying how it ended; resumable
    if state in STATES:
        return STATES[state]
    return "done" if (ws.run_dir(run_id) / "adapter").is_dir() else "unknown"
