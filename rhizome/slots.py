"""Limits a shared machine needs: one training at a time for everyone, with a queue position,
and one writing stage at a time per workspace.

A public demo serves many visitors on one small machine. `configure(one_training=True,
max_train_steps=N)` (the app does this in demo mode) makes every training wait its turn in a
first-come queue, reporting "position k" events while it waits, and caps its steps. Without a
call nothing changes: a local app trains at once, one run per workspace (`jobs.py`).

`workspace_write(ws)` is the slot of the stages that write a workspace (ingest, build, export):
one at a time in a workspace, so two clicks never build over each other, while another person's
workspace (sign-in, demo sessions) goes on at once. No gradio.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .events import ProgressFn, emit
from .workspace import UserError


@dataclass
class Limits:
    one_training: bool = False
    """A single training slot for the whole machine (queued, first come first served)."""
    max_train_steps: int = 0
    """Most optimizer steps a run may take (0: no cap)."""


LIMITS = Limits()


def configure(one_training: bool = False, max_train_steps: int = 0) -> None:
    LIMITS.one_training, LIMITS.max_train_steps = one_training, max(0, int(max_train_steps))


def cap_training(config: Any) -> Any:
    """The config with `max_steps` capped (an epochs-based run gets the cap as its step count)."""
    cap = LIMITS.max_train_steps
    if cap and (config.max_steps == 0 or config.max_steps > cap):
        return config.replace(max_steps=cap)
    return config


class Queue:
    """A first-come slot: `turn()` waits until the caller is first and the slot is free."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[object] = []
        self._busy = False

    def position(self, ticket: object) -> int:
        """1 = next in line (0 once running)."""
        with self._cond:
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else 0

    @contextmanager
    def turn(self, report: ProgressFn | None = None, stop: threading.Event | None = None,
             poll: float = 1.0) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                shown = None
                while self._busy or self._waiting[0] is not ticket:
                    place = self._waiting.index(ticket) + 1 + int(self._busy)
                    if report is not None and place != shown:
                        shown = place
                        emit(report, "queue", message=f"waiting for the shared trainer: position {place - 1} in the queue",
                             position=place - 1)
                    if stop is not None and stop.is_set():
                        raise UserError("stopped while waiting in the training queue")
                    self._cond.wait(poll)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


TRAINING = Queue()


@contextmanager
def training_turn(report: ProgressFn | None = None,
                  stop: threading.Event | None = None) -> Iterator[None]:
    """Wait for the machine-wide training slot when `LIMITS.one_training`; otherwise go at once."""
    if not LIMITS.one_training:
        yield
        return
    with TRAINING.turn(report, stop):
        yield


_WRITERS: dict[Path, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


@contextmanager
def workspace_write(ws: Any, report: ProgressFn | None = None) -> Iterator[None]:
    """Hold `ws`'s write slot (its stages that write: ingest, build, export), waiting while
    another stage of the same workspace holds it; other workspaces' slots are their own."""
    root = Path(ws.root).resolve()
    with _WRITERS_LOCK:
        lock = _WRITERS.setdefault(root, threading.Lock())
    if not lock.acquire(blocking=False):
        emit(report, "waiting", message="waiting for the other step running in this workspace to finish")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
