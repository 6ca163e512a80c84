"""Plotly figures for the Themes & IPF and Train tabs, built from plain lists and dicts."""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

GREEN, TEAL, SKY, AMBER, ROSE, SLATE = "#10b981", "#0d9488", "#0ea5e9", "#f59e0b", "#f43f5e", "#64748b"


def _layout(fig: go.Figure, title: str, height: int = 320, **extra: Any) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=15)), height=height,
                      margin=dict(l=10, r=10, t=48, b=10), template="plotly_white",
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
                      font=dict(family="system-ui, sans-serif", size=12), **extra)
    return fig


def empty(title: str, message: str = "Nothing to show yet", height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=14, color=SLATE), x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height)


def themes_before_after(names: list[str], before: list[float], after: list[float]) -> go.Figure:
    """Share of each theme in the data as found vs after IPF weighting."""
    if not names:
        return empty("Top themes: before vs after IPF")
    fig = go.Figure([
        go.Bar(y=names, x=before, orientation="h", name="as found", marker_color=SLATE),
        go.Bar(y=names, x=after, orientation="h", name="after IPF", marker_color=GREEN),
    ])
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickformat=".1%", title="share of examples")
    return _layout(fig, "Top themes: before vs after IPF", height=max(320, 26 * len(names) + 90), barmode="group")


def histogram(values: list[float], title: str, xlabel: str, color: str = TEAL,
              threshold: float | None = None, bins: int = 30) -> go.Figure:
    if not values:
        return empty(title)
    fig = go.Figure(go.Histogram(x=values, nbinsx=bins, marker_color=color, opacity=0.9))
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color=ROSE,
                      annotation_text=f"threshold {threshold:g}", annotation_position="top")
    fig.update_xaxes(title=xlabel)
    fig.update_yaxes(title="examples")
    return _layout(fig, title)


def binned(edges: list[float], counts: list[int], title: str, xlabel: str, color: str = TEAL,
           threshold: float | None = None) -> go.Figure:
    """A histogram already binned by the core (edges has one more entry than counts)."""
    if not counts or len(edges) != len(counts) + 1 or not any(counts):
        return empty(title)
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    widths = [b - a for a, b in zip(edges, edges[1:])]
    fig = go.Figure(go.Bar(x=centres, y=counts, width=widths, marker_color=color, opacity=0.9,
                           marker_line=dict(color="white", width=1),
                           hovertemplate="%{x:.2f}: %{y} examples<extra></extra>"))
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color=ROSE,
                      annotation_text=f"threshold {threshold:g}", annotation_position="top left")
    fig.update_xaxes(title=xlabel)
    fig.update_yaxes(title="examples")
    return _layout(fig, title)


def bars(labels: list[str], values: list[float], title: str, color: str = SKY, ylabel: str = "",
         none: str = "Nothing to show yet") -> go.Figure:
    if not labels:
        return empty(title, none)
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=color, text=values, textposition="outside",
                           cliponaxis=False))
    fig.update_yaxes(title=ylabel, range=[0, max(values) * 1.15 if values and max(values) > 0 else 1])
    return _layout(fig, title)


def heatmap(labels: list[str], matrix: list[list[float]], title: str) -> go.Figure:
    if not labels or not matrix:
        return empty(title)
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="RdBu", zmid=0,
                               colorbar=dict(title="PMI", thickness=12)))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=max(360, 22 * len(labels) + 120))


def training_curves(events: list[dict[str, Any]], title: str = "") -> go.Figure:
    """A run's curves, drawn by the core (`train.history.build_figure`) in the app's style."""
    from ..train.history import build_figure, has_curves

    if not has_curves(events):
        return empty(title or "Training", "Live loss, learning rate and theme diversity appear here once a "
                     "run logs its first step", height=340)
    fig = _layout(build_figure(events), title, height=560)
    fig.update_layout(legend=dict(orientation="h", y=-0.12, x=0.5, xanchor="center", yanchor="top"),
                      margin=dict(l=10, r=10, t=48, b=70))
    return fig


def eval_theme_bars(themes: list[str], rows: dict[str, list[float | None]]) -> go.Figure:
    """Eval tab: mean document-question score per theme, one bar per model row."""
    if not themes or not rows:
        return empty("Score per theme")
    colors = [SLATE, GREEN, SKY, TEAL, AMBER, ROSE]
    fig = go.Figure([go.Bar(y=themes, x=[v if v is not None else 0 for v in values], orientation="h", name=name,
                            marker_color=colors[i % len(colors)]) for i, (name, values) in enumerate(rows.items())])
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, 1], title="score (0-1)")
    fig = _layout(fig, "Score per theme", height=max(340, 22 * len(themes) * max(1, len(rows)) // 2 + 150),
                  barmode="group")
    # four model rows do not fit beside the title: the legend goes under the axis
    return fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=-0.2, yanchor="top"),
                             margin=dict(b=70))


def eval_win_loss(names: list[str], wins: list[int], losses: list[int], ties: list[int]) -> go.Figure:
    """Eval tab: questions each model answered better / worse / as well as the base."""
    if not names:
        return empty("Wins and losses vs base")
    fig = go.Figure([go.Bar(y=names, x=wins, orientation="h", name="better", marker_color=GREEN),
                     go.Bar(y=names, x=ties, orientation="h", name="tie", marker_color=SLATE),
                     go.Bar(y=names, x=losses, orientation="h", name="worse", marker_color=ROSE)])
    fig.update_xaxes(title="questions")
    return _layout(fig, "Wins and losses vs base", height=max(220, 48 * len(names) + 110), barmode="stack")
