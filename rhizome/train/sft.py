"""LoRA supervised fine-tuning of a causal LM on `dataset/`: the `train` stage.

`train_lora(ws, config)` checks its inputs, opens a run folder (one training per workspace at a
time), tokenises the splits with the model's chat template (loss on assistant tokens only),
and trains with TRL's SFTTrainer: theme-weighted sampling, padding-free batches, evaluation with
perplexity and per-theme loss, early stopping, resumable checkpoints. It then saves the adapter,
plots and a summary, and runs the knowledge test. The same function runs under `accelerate
launch` / `torchrun` (see `rhizome.train.launch`): rank 0 owns the run folder and the others
follow it.
"""
from __future__ import annotations

import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..events import ProgressFn, emit
from ..models import resolve_train_model
from ..workspace import UserError, Workspace, write_json
from . import runs
from .context import Processes, broadcast, init_processes, is_out_of_memory, out_of_memory_error
from .events import append_event, make_event, save_plots


@dataclass
class Run:
    """The run this process works on."""

    id: str
    dir: Path
    config: TrainConfig
    checkpoint: Path | None
    procs: Processes


def train_lora(
    ws: Workspace | str | Path,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
) -> str:
    """Fine-tune with LoRA; returns the run id (runs/<id>/ holds adapter, events, plots, ...)."""
    ws = (ws if isinstance(ws, Workspace) else Workspace(ws)).ensure()
    procs = init_processes()
    lock = runs.TrainingLock(ws)
    outcome = _open_run(ws, config or TrainConfig(), procs, lock) if procs.main else None
    outcome = broadcast(outcome, procs)
    if isinstance(outcome, str):  # rank 0 refused: every rank reports the same reason
        raise UserError(outcome)
    run = Run(outcome["id"], ws.run_dir(outcome["id"]), TrainConfig.from_dict(outcome["config"]),
              Path(outcome["checkpoint"]) if outcome["checkpoint"] else None, procs)
    try:
        from .loop import execute  # heavy imports (torch, trl) only once inputs are known good

        execute(ws, run, progress, stop_event)
    except BaseException as exc:
        if procs.main:
            _record_failure(run, exc)
        if not isinstance(exc, UserError) and is_out_of_memory(exc):
            raise out_of_memory_error(run.config, exc) from exc
        raise
    finally:
        lock.release()
    return run.id


def _record_failure(run: Run, exc: BaseException) -> None:
    """A fresh run that failed before its first checkpoint leaves no folder; others keep theirs."""
    fresh = run.checkpoint is None and not runs.complete_checkpoints(run.dir) and not run.config.resume
    if fresh and isinstance(exc, UserError):
        shutil.rmtree(run.dir, ignore_errors=True)
    else:
        runs.write_status(run.dir, "failed", message=f"{exc.__class__.__name__}: {exc}")


def _open_run(ws: Workspace, config: TrainConfig, procs: Processes, lock: runs.TrainingLock) -> dict[str, Any] | str:
    """Rank 0: validate, lock, create or reopen the run folder. A refusal comes back as a message."""
    try:
        return _prepare_run(ws, config, lock)
    except Exception as exc:
        lock.release()
        if procs.world > 1:  # the other ranks wait on a broadcast: send them the reason
            return str(exc)
        raise


def _prepare_run(ws: Workspace, config: TrainConfig, lock: runs.TrainingLock) -> dict[str, Any]:
    if config.resume:
        run_id = runs.resume_target(ws, config.run_id)
        config = TrainConfig.load_yaml(ws.run_dir(run_id) / "config.yaml").replace(run_id=run_id, resume=True)
    from .data import require_train_split

    require_train_split(ws)
    resolve_train_model(config.model)  # a missing model path fails here, before any folder is made
    if not config.resume:
        run_id = runs.new_run_id(ws, config.run_id)
        config = config.replace(run_id=run_id)
    lock.acquire(run_id)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = runs.latest_checkpoint(run_dir) if config.resume else None
    if checkpoint is not None:
        runs.trim_events(run_dir / "events.jsonl", int(checkpoint.name.split("-")[-1]))
    else:
        (run_dir / "events.jsonl").unlink(missing_ok=True)
        config.replace(resume=False).save_yaml(run_dir / "config.yaml")
    runs.clear_stop(run_dir)
    runs.write_status(run_dir, "running", run_id=run_id, started=time.time(), step=0,
                      resumed_from=checkpoint.name if checkpoint else None)
    return {"id": run_id, "config": config.to_dict(), "checkpoint": str(checkpoint) if checkpoint else None}


def finish_run(run: Run, trainer: Any, base: dict[str, float], final: dict[str, float], stopped: bool,
               adapter_step: int, progress: ProgressFn | None) -> dict[str, Any]:
    """Rank 0: summary.json, plots and status once the adapter is saved."""
    events_path = run.dir / "events.jsonl"
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
    }
    append_event(events_path, make_event(kind="end", step=summary["steps"], total=summary["max_steps"],
                                         eval_loss=summary["eval_loss"], perplexity=summary["perplexity"]))
    summary["plots"] = save_plots(events_path, run.dir / "plots")
    write_json(run.dir / "summary.json", summary)
    emit(progress, "train", summary["steps"], summary["max_steps"], message=summary["state"],
         eval_loss=summary["eval_loss"], perplexity=summary["perplexity"])
    return summary


def _drop(before: float | None, after: float | None) -> float | None:
    if not before or after is None or not math.isfinite(before):
        return None
    return round(1.0 - after / before, 4)
