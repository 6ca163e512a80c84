"""Progress events: how long work reports what it is doing.

A stage takes an optional `progress` callback and calls it with an `Event`: which stage, how far
(step of total), a line for people, and named numbers (`metrics`). A pipeline of stages (the
build) says which of its parts it has entered in `part`, so a renderer never guesses structure
from the message text. The CLI turns events into a progress bar, the UI streams them, and
training also appends its metrics to `runs/<id>/events.jsonl` (see `train/history.py`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Event:
    """One progress report of a stage."""

    stage: str
    """What is working: ingest, build, embed, questions, train, knowledge_test, export, ..."""
    step: int = 0
    total: int = 0
    """0 when the amount of work is not known (the bar then shows the message alone)."""
    message: str = ""
    """For people; never parsed."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Named values: loss, tokens_per_s, eta_s, file, records, ..."""
    part: str | None = None
    """For a pipeline's own events: the part it has just entered (the build's `dedup`, `embed`, ...)."""
    time: float = field(default_factory=time.time)

    def get(self, key: str, default: Any = None) -> Any:
        """A metric by name (`event.get("loss")`)."""
        return self.metrics.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressFn = Callable[[Event], None]


def emit(progress: ProgressFn | None, stage: str, step: int = 0, total: int = 0, message: str = "",
         part: str | None = None, **metrics: Any) -> None:
    """Send one event if anyone listens."""
    if progress is not None:
        progress(Event(stage, int(step), int(total), message, metrics, part))


class ConsoleProgress:
    """A one-line text progress bar on stderr for the CLI."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.last_stage = None

    def __call__(self, event: Event) -> None:
        if self.last_stage is not None and event.stage != self.last_stage:
            self.stream.write("\n")
        self.last_stage = event.stage
        shown = {k: v for k, v in event.metrics.items() if k in _SHOWN and v is not None}
        extras = "  ".join(f"{_label(k)}={_fmt(k, v)}" for k, v in shown.items())
        text = event.part or event.message
        if event.total:
            filled = int(self.width * min(event.step, event.total) / event.total)
            bar = "█" * filled + "·" * (self.width - filled)
            line = f"\r{event.stage:<12} {bar} {event.step}/{event.total} {text} {extras}"
        else:
            line = f"\r{event.stage:<12} {text} {extras}"
        self.stream.write(line[:160].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        if self.last_stage is not None:
            self.stream.write("\n")
            self.stream.flush()


_SHOWN = ("loss", "eval_loss", "lr", "tokens_per_s", "texts_per_s", "eta_s", "coverage")


def _label(key: str) -> str:
    return {"eta_s": "ETA", "texts_per_s": "texts/s", "tokens_per_s": "tokens/s"}.get(key, key)


def _fmt(key: str, value: Any) -> str:
    if key == "eta_s":
        seconds = int(value)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
