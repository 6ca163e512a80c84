"""LoRA fine-tuning (the `train` stage): `train_lora(ws, config, progress, stop_event) -> run_id`.

Also exported for the UI and CLI: `preview_labels` (which tokens an example trains),
`read_events` / `build_figure` (live chart), `read_status` / `request_stop` (re-attach to a run,
stop it from another process). Names load on first use, so importing this package does not
pull in torch or trl.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train_lora": "sft",
    "preview_labels": "data",
    "read_events": "history",
    "build_figure": "history",
    "read_status": "runs",
    "request_stop": "runs",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rhizome.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
