"""Run folders: one training at a time, run ids, opening and finishing a run, status, stop
requests, checkpoints and resumption. The only owner of `runs/<id>/` and its file names.

A run lives in `runs/<id>/` (config.yaml, status.json, events.jsonl, checkpoints/, adapter/,
plots/, summary.json). A lock on `runs/.train.lock` (flock, so the kernel drops it when a process dies, even by
SIGKILL) refuses a second training while one runs. A checkpoint counts as complete only once
`rhizome_state.json` (sampler and diversity state) is written into it, after the trainer's own
files, so a run killed mid-save resumes from the previous one.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..events import ProgressFn, emit
from ..models import resolve_train_model
from ..workspace import UserError, Workspace, read_json, write_json, write_jsonl
from .history import append_event, make_event, save_plots
from .processes import Processes

LOCK_NAME = ".train.lock"
STATE_NAME = "rhizome_state.json"
STOP_NAME = "STOP"


class TrainingLock:
    """An exclusive, non-blocking flock on `runs/.train.lock`; released on close or process death."""

    def __init__(self, ws: Workspace) -> None:
        self.path = ws.runs / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, run_id: str) -> "TrainingLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_holder(self.path)
            raise UserError(
                f"a training is already running in this workspace (run {holder.get('run_id', '?')}, "
                f"pid {holder.get('pid', '?')}): wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.time()}).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def lock_holder(ws: Workspace) -> dict[str, Any] | None:
    """Who holds the training lock of this workspace ({"run_id", "pid"}), from any process; else None."""
    path = ws.runs / LOCK_NAME
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        try:  # probing: if we can take the lock, nobody holds it
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def new_run_id(ws: Workspace, wanted: str | None = None) -> str:
    """`wanted` or a date-time id; a suffix keeps an existing run's folder untouched."""
    base = wanted or time.strftime("%Y%m%d-%H%M%S")
    if "/" in base or base.startswith("."):
        raise UserError(f"run_id must be a plain folder name, not {base!r}")
    candidate, n = base, 2
    while ws.run_dir(candidate).exists() and any(ws.run_dir(candidate).iterdir()):
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def resume_target(ws: Workspace, run_id: str | None) -> str:
    """The run to continue: the one named, else the newest run that has a config."""
    if run_id:
        if not (ws.run_dir(run_id) / "config.yaml").is_file():
            raise UserError(f"cannot resume: run {run_id!r} has no config.yaml in {ws.runs}")
        return run_id
    for rid in ws.list_runs():
        if (ws.run_dir(rid) / "config.yaml").is_file():
            return rid
    raise UserError(f"cannot resume: no training run found in {ws.runs}")


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints with their state file written, oldest first."""
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if (p / STATE_NAME).is_file() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def write_checkpoint_state(checkpoint: Path, state: dict[str, Any]) -> None:
    write_json(checkpoint / STATE_NAME, state)


def read_checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    return read_json(checkpoint / STATE_NAME, default={}) or {}


def rotate_checkpoints(run_dir: Path, keep_best: int) -> list[str]:
    """Keep the newest checkpoint (for resuming) and the `keep_best` with the lowest eval loss."""
    done = complete_checkpoints(run_dir)
    if len(done) <= 1:
        return []
    scored = [(read_checkpoint_state(p).get("eval_loss"), p) for p in done[:-1]]
    ranked = sorted((s, int(p.name[11:]), p) for s, p in scored if s is not None)
    keep = {p for _, _, p in ranked[: max(keep_best, 0)]} | {done[-1]}
    removed = []
    for path in done:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def best_checkpoint(run_dir: Path) -> tuple[Path, float] | None:
    scored = [(read_checkpoint_state(p).get("eval_loss"), p) for p in complete_checkpoints(run_dir)]
    scored = [(s, p) for s, p in scored if s is not None]
    return min(scored, key=lambda sp: sp[0])[::-1] if scored else None


def trim_events(events_path: Path, last_step: int) -> None:
    """On resume, drop events logged after the checkpoint: those steps run again."""
    if not events_path.is_file():
        return
    rows = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    write_jsonl(events_path, [r for r in rows if int(r.get("step") or 0) <= last_step and r.get("kind") != "end"])


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """status.json: running | finished | stopped | failed, for the UI to re-attach to."""
    status = read_json(run_dir / "status.json", default={}) or {}
    status.update({"state": state, "pid": os.getpid(), "updated": time.time(), **extra})
    write_json(run_dir / "status.json", status)


def read_status(ws: Workspace, run_id: str) -> dict[str, Any]:
    """A run's status; a `running` run whose process is gone reads as `interrupted` (resumable)."""
    status = read_json(ws.run_dir(run_id) / "status.json", default={}) or {}
    if status.get("state") == "running" and not _pid_alive(status.get("pid")):
        status["state"] = "interrupted"
    return status


STATES = {"finished": "done", "stopped": "stopped", "failed": "failed", "interrupted": "interrupted"}


def run_state(ws: Workspace, run_id: str) -> str:
    """running | done | stopped | failed | interrupted | unknown, from the lock and status.json."""
    holder = lock_holder(ws)
    if holder is not None and holder.get("run_id") == run_id:
        return "running"
    state = (read_json(ws.run_dir(run_id) / "status.json", default={}) or {}).get("state")
    if state == "running":
        return "interrupted"  # its process is gone without saying how it ended; resumable
    if state in STATES:
        return STATES[state]
    return "done" if (ws.run_dir(run_id) / "adapter").is_dir() else "unknown"


def events_path(run_dir: Path) -> Path:
    """The run's metric log, one JSON line per logged step (see `train/history.py`)."""
    return run_dir / "events.jsonl"


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def request_stop(ws: Workspace, run_id: str) -> None:
    """Ask a run in another process (CLI, UI job, multi-process launch) to stop at its next step."""
    path = ws.run_dir(run_id) / STOP_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time()), encoding="utf-8")


def stop_requested(run_dir: Path) -> bool:
    return (run_dir / STOP_NAME).exists()


def clear_stop(run_dir: Path) -> None:
    (run_dir / STOP_NAME).unlink(missing_ok=True)


# ---- opening and finishing a run ----------------------------------------------------------------


@dataclass
class Run:
    """The run this process works on."""

    id: str
    dir: Path
    config: TrainConfig
    checkpoint: Path | None
    procs: Processes


def open_run(ws: Workspace, config: TrainConfig, lock: TrainingLock) -> dict[str, Any]:
    """Rank 0: validate, lock, create or reopen the run folder; returns what every rank needs."""
    if config.resume:
        run_id = resume_target(ws, config.run_id)
        config = TrainConfig.load_yaml(ws.run_dir(run_id) / "config.yaml").replace(run_id=run_id, resume=True)
    from .data import require_train_split

    require_train_split(ws)
    resolve_train_model(config.model)  # a missing model path fails here, before any folder is made
    if not config.resume:
        run_id = new_run_id(ws, config.run_id)
        config = config.replace(run_id=run_id)
    lock.acquire(run_id)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(run_dir) if config.resume else None
    if checkpoint is not None:
        trim_events(events_path(run_dir), int(checkpoint.name.split("-")[-1]))
    else:
        events_path(run_dir).unlink(missing_ok=True)
        config.replace(resume=False).save_yaml(run_dir / "config.yaml")
    clear_stop(run_dir)
    write_status(run_dir, "running", run_id=run_id, started=time.time(), step=0,
                 resumed_from=checkpoint.name if checkpoint else None)
    return {"id": run_id, "config": config.to_dict(), "checkpoint": str(checkpoint) if checkpoint else None}


def record_failure(run: Run, exc: BaseException) -> None:
    """A fresh run that failed before its first checkpoint leaves no folder; others keep theirs."""
    fresh = run.checkpoint is None and not complete_checkpoints(run.dir) and not run.config.resume
    if fresh and isinstance(exc, UserError):
        shutil.rmtree(run.dir, ignore_errors=True)
    else:
        write_status(run.dir, "failed", message=f"{exc.__class__.__name__}: {exc}")


def finish_run(run: Run, trainer: Any, base: dict[str, float], final: dict[str, float], stopped: bool,
               adapter_step: int, progress: ProgressFn | None, setup: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rank 0: summary.json, plots and the closing event once the adapter is saved; `setup` adds what
    the run decided before training (its memory estimate, mapped target modules)."""
    summary = {
        "run_id": run.id,
        "state": "stopped" if stopped else "finished",
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "adapter_step": adapter_step,
        "base_eval_loss": base.get("base_loss"),
        "base_perplexity": base.get("base_perplexity"),
        "eval_loss": final.get("eval_loss"),
        "perplexity": final.get("eval_perplexity"),
        "perplexity_drop": _drop(base.get("base_perplexity"), final.get("eval_perplexity")),
        "train_seconds": round(trainer.train_seconds, 2),
        "tokens_trained": trainer.tokens_seen * run.procs.world,
        "labelled_tokens": trainer.trained_tokens_seen * run.procs.world,
        "tokens_per_s": round(trainer.tokens_seen * run.procs.world / trainer.train_seconds, 1)
        if trainer.train_seconds else None,
        "processes": run.procs.world,
        **(setup or {}),
    }
    append_event(events_path(run.dir), make_event(kind="end", step=summary["steps"], total=summary["max_steps"],
                                                  eval_loss=summary["eval_loss"], perplexity=summary["perplexity"]))
    summary["plots"] = save_plots(events_path(run.dir), run.dir / "plots")
    write_json(run.dir / "summary.json", summary)
    emit(progress, "train", summary["steps"], summary["max_steps"], message=summary["state"],
         eval_loss=summary["eval_loss"], perplexity=summary["perplexity"])
    return summary


def _drop(before: float | None, after: float | None) -> float | None:
    if not before or after is None or not math.isfinite(before):
        return None
    return round(1.0 - after / before, 4)
