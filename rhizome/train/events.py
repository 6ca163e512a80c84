"""Training events (`runs/<id>/events.jsonl`) and the plots drawn from them.

Every logging step appends one complete JSON line, so a reloaded UI page or a second process can
re-read a running job's progress at any time. Each event carries the same keys (None where a
value was not measured at that step): kind (train | eval | end), step, total, epoch, loss,
eval_loss, perplexity, lr, grad_norm, tokens_per_s, eta_s, coverage, entropy, theme_loss, time.
At the end the curves are saved as an interactive HTML (plotly, self-contained) and a PNG
(matplotlib): loss and validation loss, learning rate, gradient norm, theme diversity.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..workspace import append_jsonl, atomic_path

EVENT_KEYS = (
    "kind", "step", "total", "epoch", "loss", "eval_loss", "perplexity", "lr", "grad_norm",
    "tokens_per_s", "eta_s", "coverage", "entropy", "theme_loss",
)
PANELS = (
    ("Loss", ("loss", "eval_loss")),
    ("Learning rate", ("lr",)),
    ("Gradient norm", ("grad_norm",)),
    ("Theme diversity", ("coverage", "entropy")),
)


def make_event(**values: Any) -> dict[str, Any]:
    """An event with every key present, in a stable order."""
    event = {key: values.get(key) for key in EVENT_KEYS}
    event["time"] = values.get("time", time.time())
    return event


def append_event(path: Path, event: dict[str, Any]) -> None:
    append_jsonl(path, event)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete events; a torn last line (a crash mid-write) is skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    events = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def series(events: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e[key]) for e in events if e.get(key) is not None and e.get("step") is not None]
    return [p[0] for p in points], [float(p[1]) for p in points]


def build_figure(events: list[dict[str, Any]]) -> Any:
    """A 2x2 plotly figure of the run (also used by the Train tab for its live chart)."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=2, cols=2, subplot_titles=[title for title, _ in PANELS])
    for n, (_, keys) in enumerate(PANELS):
        row, col = n // 2 + 1, n % 2 + 1
        for key in keys:
            xs, ys = series(events, key)
            mode = "lines+markers" if key == "eval_loss" or len(xs) < 3 else "lines"
            fig.add_trace(go.Scatter(x=xs, y=ys, name=key, mode=mode), row=row, col=col)
        fig.update_xaxes(title_text="step", row=row, col=col)
    fig.update_layout(height=640, margin=dict(l=40, r=20, t=40, b=40), legend=dict(orientation="h"))
    return fig


def save_plots(events_path: Path, out_dir: Path) -> dict[str, str]:
    """plots/training.html and plots/training.png from the events; returns their paths."""
    events = read_events(events_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    html, png = out_dir / "training.html", out_dir / "training.png"
    with atomic_path(html) as tmp:
        # Self-contained: the page must open offline, so plotly.js is embedded, not fetched.
        build_figure(events).write_html(str(tmp), include_plotlyjs=True, full_html=True)
    with atomic_path(png) as tmp:
        _draw_png(events, tmp)
    return {"html": str(html), "png": str(png)}


def _draw_png(events: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (title, keys) in zip(axes.flat, PANELS):
        for key in keys:
            xs, ys = series(events, key)
            ax.plot(xs, ys, marker="o" if key == "eval_loss" or len(xs) < 3 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
