"""Trainer callbacks: the event log, the stop request, and checkpoint state and rotation."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from ..events import ProgressFn, emit
from .diversity import ThemeTracker
from .history import append_event, make_event
from .runs import events_path, rotate_checkpoints, stop_requested, write_checkpoint_state, write_status
from .sampler import ThemeWeightedSampler


class EventsCallback(TrainerCallback):
    """Appends every log to events.jsonl and forwards it to the progress callback (main process)."""

    def __init__(self, run_dir: Path, progress: ProgressFn | None, tokens: Callable[[], int], world: int) -> None:
        self.run_dir = run_dir
        self.progress = progress
        self.tokens = tokens
        self.world = world
        self.last: tuple[float, int] | None = None
        self.start: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.last = (now, self.tokens())
        self.start = (now, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        event = self._event(state, logs)
        if event is None:
            return
        append_event(events_path(self.run_dir), event)
        write_status(self.run_dir, "running", step=state.global_step, total=state.max_steps)
        metrics = {k: v for k, v in event.items() if k not in ("step", "total") and v is not None}
        emit(self.progress, "train", state.global_step, state.max_steps, **metrics)

    def _event(self, state, logs: dict[str, Any]) -> dict[str, Any] | None:
        common = {"step": state.global_step, "total": state.max_steps, "epoch": logs.get("epoch", state.epoch)}
        if "eval_loss" in logs:
            themes = {k.split("/", 1)[1]: v for k, v in logs.items() if k.startswith("eval_theme/")}
            return make_event(kind="eval", eval_loss=logs["eval_loss"], perplexity=logs.get("eval_perplexity"),
                              theme_loss=themes or None, **common)
        if "loss" in logs:
            return make_event(kind="train", loss=logs["loss"], lr=logs.get("learning_rate"),
                              grad_norm=logs.get("grad_norm"), coverage=logs.get("coverage"),
                              entropy=logs.get("entropy"), **common, **self._speed(state))
        return None  # the trainer's closing metrics; the run's own "end" event follows

    def _speed(self, state) -> dict[str, float | None]:
        now, tokens = time.perf_counter(), self.tokens()
        last_time, last_tokens = self.last or (now, tokens)
        self.last = (now, tokens)
        # Every process trains on a share of the same size, so the main process's count scales.
        rate = (tokens - last_tokens) * self.world / (now - last_time) if now > last_time else None
        start_time, start_step = self.start or (now, state.global_step)
        done = state.global_step - start_step
        eta = (now - start_time) / done * (state.max_steps - state.global_step) if done > 0 else None
        return {"tokens_per_s": rate, "eta_s": eta}


class ThreadsCallback(TrainerCallback):
    """Re-fits torch's threads to the free cores every `every` seconds, so a training that began
    on an idle machine does not spin-wait on cores another process has taken since (and takes
    them back once they are free). Only when the thread count is not pinned, in one process."""

    def __init__(self, every: float = 15.0) -> None:
        from ..cpu import LoadMeter

        self.every, self.meter, self.last = every, LoadMeter(), time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.last >= self.every:
            from ..cpu import fit_pools, pool_threads

            self.last = time.monotonic()
            other = self.meter.read()
            wanted = pool_threads(other) if other is not None else torch.get_num_threads()
            if wanted != torch.get_num_threads():
                fit_pools(wanted)


class StopCallback(TrainerCallback):
    """Stops at the end of the current step when the event is set or a STOP file appears.

    Under several processes the decision is all-reduced, so every rank stops at the same step.
    """

    def __init__(self, stop_event: threading.Event | None, run_dir: Path) -> None:
        self.stop_event = stop_event
        self.run_dir = run_dir
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        wanted = bool(self.stop_event is not None and self.stop_event.is_set()) or stop_requested(self.run_dir)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([int(wanted)])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            wanted = bool(flag.item())
        if wanted and state.global_step < state.max_steps:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # the stopped run keeps a checkpoint to resume from
        return control


class CheckpointStateCallback(TrainerCallback):
    """Completes each checkpoint with sampler + diversity state, then keeps the newest and best."""

    def __init__(self, run_dir: Path, sampler: ThemeWeightedSampler, tracker: ThemeTracker, keep_best: int) -> None:
        self.run_dir = run_dir
        self.sampler = sampler
        self.tracker = tracker
        self.keep_best = keep_best

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        eval_loss = next(
            (h["eval_loss"] for h in reversed(state.log_history) if "eval_loss" in h and h.get("step") == state.global_step),
            None,
        )
        write_checkpoint_state(checkpoint, {
            "step": state.global_step,
            "eval_loss": eval_loss if eval_loss is None or math.isfinite(eval_loss) else None,
            "sampler": self.sampler.state_dict(),
            "diversity": self.tracker.state_dict(),
        })
        rotate_checkpoints(self.run_dir, self.keep_best)
