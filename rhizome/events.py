"""Progress events: how long work reports what it is doing.

A stage takes an optional `progress` callback and calls it with plain dicts such as
`{"stage": "dedup", "step": 3, "total": 10, "loss": 1.2}`. The CLI turns them into a progress
bar, the UI streams them, and training appends them to `runs/<id>/events.jsonl`.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

ProgressFn = Callable[[dict[str, Any]], None]


def emit(progress: ProgressFn | None, stage: str, step: int = 0, total: int = 0, **metrics: Any) -> None:
    """Send one event if anyone listens."""
    if progress is not None:
        progress({"stage": stage, "step": step, "total": total, "time": time.time(), **metrics})


class ConsoleProgress:
    """A one-line text progress bar on stderr for the CLI."""

    def __init__(self, stream=sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.last_stage = None

    def __call__(self, event: dict[str, Any]) -> None:
        stage, step, total = event.get("stage", ""), event.get("step", 0), event.get("total", 0)
        if self.last_stage is not None and stage != self.last_stage:
            self.stream.write("\n")
        self.last_stage = stage
        extras = "  ".join(f"{k}={_fmt(v)}" for k, v in event.items() if k in _SHOWN and v is not None)
        if total:
            filled = int(self.width * min(step, total) / total)
            bar = "█" * filled + "·" * (self.width - filled)
            line = f"\r{stage:<12} {bar} {step}/{total} {extras}"
        else:
            line = f"\r{stage:<12} {event.get('message', '')} {extras}"
        self.stream.write(line[:160].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        if self.last_stage is not None:
            self.stream.write("\n")
            self.stream.flush()


_SHOWN = ("loss", "eval_loss", "lr", "tokens_per_s", "eta_s", "coverage")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
