"""A run's history: its metric log (`runs/<id>/events.jsonl`) and the one figure drawn from it.

Every logging step appends one complete JSON line, so a reloaded UI page or a second process can
re-read a running job's progress at any time (`read_events_since` reads only what was added).
Each line carries the same keys (None where a value was not measured at that step): kind
(train | eval | end), step, total, epoch, loss, eval_loss, perplexity, lr, grad_norm,
tokens_per_s, eta_s, coverage, entropy, theme_loss, time. `build_figure` is the one drawing of
the curves: the Train tab shows it live, and at the end of a run it is saved as an interactive
HTML (plotly, self-contained) and as a PNG with the same panels and traces.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..workspace import append_jsonl, atomic_path

EVENT_KEYS = (
    "kind", "step", "total", "epoch", "loss", "eval_loss", "perplexity", "lr", "grad_norm",
    "tokens_per_s", "eta_s", "coverage", "entropy", "theme_loss",
)
# (panel title, ((event key, trace name, colour), ...))
PANELS = (
    ("Loss", (("loss", "train loss", "#10b981"), ("eval_loss", "eval loss", "#f59e0b"))),
    ("Learning rate", (("lr", "learning rate", "#0ea5e9"),)),
    ("Gradient norm", (("grad_norm", "gradient norm", "#64748b"),)),
    ("Theme diversity", (("coverage", "theme coverage", "#0d9488"), ("entropy", "theme entropy (norm.)", "#f43f5e"))),
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
    return read_events_since(path)[0]


def read_events_since(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events appended since byte `offset`, and the offset to read from next time.

    A line still being written (no newline yet) is left for the next call.
    """
    p = Path(path)
    if not p.is_file():
        return [], offset
    with open(p, "rb") as fh:
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


def series(events: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e[key]) for e in events
              if isinstance(e.get(key), (int, float)) and e.get("step") is not None]
    return [p[0] for p in points], [float(p[1]) for p in points]


def has_curves(events: list[dict[str, Any]]) -> bool:
    return any(e.get("loss") is not None or e.get("lr") is not None for e in events)


def build_figure(events: list[dict[str, Any]]) -> Any:
    """The run's curves as a 2x2 plotly figure: loss and eval loss, learning rate, gradient
    norm, theme diversity. Eval points and short series get markers."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=2, cols=2, subplot_titles=[title for title, _ in PANELS],
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    last_step = max((e.get("step") or 0 for e in events), default=0)
    for n, (_, traces) in enumerate(PANELS):
        row, col = n // 2 + 1, n % 2 + 1
        for key, name, colour in traces:
            xs, ys = series(events, key)
            markers = key == "eval_loss" or len(xs) < 3
            fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines+markers" if markers else "lines",
                                     line=dict(color=colour, dash="dot" if key == "eval_loss" else None),
                                     marker=dict(size=5)), row=row, col=col)
        # whole steps only, about eight ticks
        fig.update_xaxes(title_text="step", dtick=max(1, math.ceil(last_step / 8)), row=row, col=col)
    fig.update_layout(height=560, margin=dict(l=40, r=20, t=40, b=40), legend=dict(orientation="h"))
    return fig


def save_plots(events_path: Path, out_dir: Path) -> dict[str, str]:
    """plots/training.html and plots/training.png from the events; returns their paths."""
    figure = build_figure(read_events(events_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    html, png = out_dir / "training.html", out_dir / "training.png"
    with atomic_path(html) as tmp:
        # Self-contained: the page must open offline, so plotly.js is embedded, not fetched.
        figure.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    with atomic_path(png) as tmp:
        _save_png(figure, tmp)
    return {"html": str(html), "png": str(png)}


def _save_png(figure: Any, path: Path) -> None:
    """The same figure as a static PNG: each plotly trace drawn on its panel with matplotlib
    (plotly's own image export needs a browser engine, which a server may not have)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (title, _) in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.set_xlabel("step")
    for trace in figure.data:
        panel = int((trace.xaxis or "x").lstrip("x") or 1) - 1
        ax = axes.flat[panel]
        ax.plot(list(trace.x or []), list(trace.y or []), label=trace.name, color=trace.line.color,
                linestyle=":" if trace.line.dash == "dot" else "-", marker="o" if "markers" in trace.mode else None)
    for ax in axes.flat:
        if len(ax.get_lines()) > 1:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
