"""LoRA supervised fine-tuning of a causal LM on `dataset/`: the `train` stage's entry point.

`train_lora(ws, config)` opens a run folder (`runs.open_run`: inputs checked, one training per
workspace at a time), then hands over to `loop.execute`, which loads the model (`model.py`),
tokenises the splits with the model's chat template (loss on assistant tokens only, `data.py`)
and trains with TRL's SFTTrainer: theme-weighted sampling, padding-free batches, evaluation with
perplexity and per-theme loss, early stopping, resumable checkpoints. The same function runs
under `accelerate launch` / `torchrun` (see `launch.py`): rank 0 owns the run folder and the
others follow it.
"""
from __future__ import annotations

import threading
from pathlib import Path

from ..config import TrainConfig
from ..events import ProgressFn
from ..workspace import UserError, Workspace
from . import runs
from .processes import broadcast, init_processes


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
    outcome = _open(ws, config or TrainConfig(), procs, lock) if procs.main else None
    outcome = broadcast(outcome, procs)
    if isinstance(outcome, str):  # rank 0 refused: every rank reports the same reason
        raise UserError(outcome)
    run = runs.Run(outcome["id"], ws.run_dir(outcome["id"]), TrainConfig.from_dict(outcome["config"]),
                   Path(outcome["checkpoint"]) if outcome["checkpoint"] else None, procs)
    try:
        # torch, transformers and trl load only once the inputs are known to be good
        from .loop import execute
        from .model import is_out_of_memory, out_of_memory_error

        try:
            execute(ws, run, progress, stop_event)
        except BaseException as exc:
            if procs.main:
                runs.record_failure(run, exc)
            if not isinstance(exc, UserError) and is_out_of_memory(exc):
                raise out_of_memory_error(run.config, exc) from exc
            raise
    finally:
        lock.release()
    return run.id


def _open(ws: Workspace, config: TrainConfig, procs, lock: runs.TrainingLock) -> dict | str:
    """Rank 0 opens the run; under several processes a refusal is sent to the others as text."""
    try:
        return runs.open_run(ws, config, lock)
    except Exception as exc:
        lock.release()
        if procs.world > 1:  # the other ranks wait on a broadcast: send them the reason
            return str(exc)
        raise
