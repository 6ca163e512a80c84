"""Themes & IPF tab: how balanced the built dataset is, drawn from `dataset_metadata.json`.

Top themes before and after IPF weighting, the weight distribution, theme co-occurrence (PMI),
quality scores, drops by reason and split sizes, with entropy and effective sample size as
numbers. Nothing is computed here beyond picking fields out of the metadata the build wrote.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr

from ..workspace import read_json
from . import charts
from .common import Context, cards, esc, fmt_num, guard, notice

TOP_THEMES = 15


def build(ctx: Context) -> SimpleNamespace:
    with gr.Row():
        gr.Markdown("### Theme balance\nThemes are extracted from every example; IPF (iterative proportional "
                    "fitting) gives each example a weight so that rare themes get a fair share of training.")
        refresh = gr.Button("Refresh", scale=0, min_width=120)
    stats = gr.HTML(elem_id="rz-theme-stats")
    with gr.Row():
        themes_plot = gr.Plot(show_label=False, elem_id="rz-theme-chart")
        pmi_plot = gr.Plot(show_label=False)
    with gr.Row():
        weight_plot = gr.Plot(show_label=False)
        quality_plot = gr.Plot(show_label=False)
    with gr.Row():
        drops_plot = gr.Plot(show_label=False)
        split_plot = gr.Plot(show_label=False)
    outputs = [stats, themes_plot, pmi_plot, weight_plot, quality_plot, drops_plot, split_plot]
    fn = guard(lambda: render(read_json(ctx.ws.dataset / "dataset_metadata.json")))
    refresh.click(fn, None, outputs)
    return SimpleNamespace(refresh_fn=fn, outputs=outputs)


def render(meta: dict | None) -> tuple:
    if not meta:
        blank = [charts.empty(t, "Build the dataset to see this chart") for t in
                 ("Top themes: before vs after IPF", "Theme co-occurrence (PMI)", "IPF weights",
                  "Quality scores", "Dropped examples by reason", "Split sizes")]
        return (notice("No dataset yet: build one in <b>Data → Build dataset</b>.", "info"), *blank)
    view = theme_view(meta)
    weights, quality = view["weights"], view["quality"]
    return (
        stats_html(view),
        charts.themes_before_after(view["names"], view["before"], view["after"]),
        charts.heatmap(view["pmi_labels"], view["pmi"], "Theme co-occurrence (PMI)"),
        charts.binned(weights.get("edges") or [], weights.get("counts") or [], "IPF weights", "weight (mean 1)",
                      color=charts.GREEN),
        charts.binned(quality.get("edges") or [], quality.get("counts") or [], "Quality scores", "quality",
                      threshold=view["quality_threshold"]),
        charts.bars(list(view["drops"]), list(view["drops"].values()), "Dropped examples by reason",
                    color=charts.AMBER, ylabel="examples", none="No example was dropped"),
        charts.bars(list(view["splits"]), list(view["splits"].values()), "Split sizes", ylabel="examples"),
    )


def stats_html(view: dict[str, Any]) -> str:
    ipf = view["ipf"]
    converged = ipf.get("converged")
    ipf_text = "—" if converged is None else (
        "converged" if converged else "closest fit" if ipf.get("stalled") else "not converged")
    error = ipf.get("max_marginal_error")
    ratio = ipf.get("ess_ratio")
    html = cards([
        ("examples", fmt_num(sum(view["splits"].values()))),
        ("distinct themes", fmt_num(view["theme_count"])),
        ("entropy before", fmt_num(view["entropy_before"]), "normalised; 1 = perfectly even"),
        ("entropy after", fmt_num(view["entropy_after"]), "after IPF weighting"),
        ("effective sample size", fmt_num(view["ess"]), f"{ratio:.0%} of examples" if ratio else "Kish ESS"),
        ("IPF", ipf_text, f"{ipf.get('iterations', '—')} sweeps"
                          + (f", max marginal error {error:.1%}" if error is not None else "")),
    ])
    for warning in view["warnings"]:
        html += notice(esc(warning), "warn")
    return html


def theme_view(meta: dict) -> dict[str, Any]:
    """The numbers the charts need, picked out of `dataset_metadata.json`."""
    themes, ipf = meta.get("themes") or {}, meta.get("ipf") or {}
    before = (themes.get("before_ipf") or {}).get("shares") or {}
    after = (themes.get("after_ipf") or {}).get("shares") or {}
    names = [t for t in sorted(before, key=lambda t: -before[t]) if t != "(other)"][:TOP_THEMES]
    co = meta.get("cooccurrence") or {}
    return {
        "names": names,
        "before": [before[t] for t in names],
        "after": [after.get(t, 0.0) for t in names],
        "theme_count": themes.get("distinct", len(before)),
        "pmi_labels": co.get("themes") or [],
        "pmi": co.get("pmi") or [],
        "weights": ipf.get("weight_histogram") or {},
        "quality": (meta.get("quality") or {}).get("histogram") or {},
        "quality_threshold": (meta.get("quality") or {}).get("threshold"),
        "drops": {k: int(v) for k, v in (meta.get("drops_total") or {}).items() if v},
        "splits": {k: int(v) for k, v in (meta.get("counts") or {}).items() if k in ("train", "validation", "test")},
        "entropy_before": (themes.get("before_ipf") or {}).get("normalized_entropy"),
        "entropy_after": (themes.get("after_ipf") or {}).get("normalized_entropy"),
        "ess": ipf.get("ess"),
        "ipf": ipf,
        "warnings": meta.get("warnings") or [],
    }
