"""Eval tab: did fine-tuning help, and where? Base vs tuned on the person's held-out material.

One core call (`rhizome.evaluate.evaluate_run`), streamed with progress bars while it works.
Then a side-by-side table (one row per model, with and without retrieval), the score per theme
and the win/loss counts as charts, held-out perplexity, and every answer to read. Earlier evals
of the run can be opened again; each summary says how it moved against the one before.
"""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from ..config import EvalConfig
from ..workspace import UserError
from . import charts
from .common import Context, esc, guard, notice, run_streaming, stage_bars

# The summary's keys, and the column each gets in the side-by-side table
COLUMNS = {"score": "score", "term_recall": "term recall", "similarity": "similarity",
           "source_hit_rate": "right source", "hit_and_cited_rate": "and cited", "style": "style", "words": "words",
           "empty_rate": "empty", "seconds": "s / answer"}
ANSWER_HEADERS = ["question", "model", "answer", "score", "right source", "reference"]
ANSWER_WIDTHS = ["20%", "11%", "37%", "7%", "8%", "17%"]  # the answers are what people read


def build(ctx: Context) -> SimpleNamespace:
    d = EvalConfig()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            gr.Markdown("### Evaluate a run\nThe base and the tuned model answer questions about your notes "
                        "(with and without retrieval) and your held-out conversations; scored against your own "
                        "text. The run must be exported (Export tab).")
            with gr.Row():
                run = gr.Dropdown(runs(ctx), value=next(iter(runs(ctx)), None), label="Run", scale=4,
                                  elem_id="rz-eval-run")
                refresh = gr.Button("↻", scale=0, min_width=44)
            retrieval = gr.Radio([("with and without", "both"), ("with", "on"), ("without", "off")],
                                 value=d.retrieval, label="Retrieval")
            questions = gr.Slider(1, 200, value=d.questions, step=1, label="Document questions",
                                  elem_id="rz-eval-questions")
            seed = gr.Number(d.seed, precision=0, label="Seed (same seed, same numbers)")
            perplexity = gr.Checkbox(d.perplexity, label="Held-out perplexity (base vs adapter)")
            go_btn = gr.Button("Evaluate", variant="primary", elem_id="rz-eval-go")
            earlier = gr.Dropdown([], label="Earlier evals of this run", elem_id="rz-eval-earlier")
        with gr.Column(scale=7, min_width=420):
            status = gr.HTML(notice("Choose an exported run and click <b>Evaluate</b>.", "info"),
                             elem_id="rz-eval-status")
            table = gr.Dataframe(headers=["model", *COLUMNS.values(), "vs base: wins / losses / ties"],
                                 interactive=False, wrap=True, column_widths=["19%", *["7%"] * len(COLUMNS), "18%"],
                                 elem_id="rz-eval-table")
            with gr.Row():
                themes_plot = gr.Plot(charts.eval_theme_bars([], {}), show_label=False, elem_id="rz-eval-themes")
                wins_plot = gr.Plot(charts.eval_win_loss([], [], [], []), show_label=False, elem_id="rz-eval-wins")
            details = gr.HTML()
            answers = gr.Dataframe(headers=ANSWER_HEADERS, interactive=False, wrap=True, max_height=480,
                                   column_widths=ANSWER_WIDTHS, elem_id="rz-eval-answers")
    outputs = [status, table, themes_plot, wins_plot, details, answers, earlier]
    done = go_btn.click(guard(partial(run_eval, ctx)), [run, retrieval, questions, seed, perplexity],
                        outputs, concurrency_limit=1, concurrency_id="eval")
    refresh.click(guard(lambda r: gr.Dropdown(choices=runs(ctx), value=r if r in runs(ctx) else None)), [run], [run])
    run.change(guard(partial(show_latest, ctx)), [run], outputs)
    earlier.select(guard(partial(show_stamp, ctx)), [run, earlier], outputs)
    return SimpleNamespace(run=run, done=done, outputs=outputs)


def runs(ctx: Context) -> list[str]:
    """Runs with an export to evaluate, newest first."""
    return [r for r in ctx.ws.list_runs() if any((ctx.ws.run_dir(r) / "export").glob("*.gguf"))]


def run_eval(ctx: Context, run_id: str | None, retrieval: str, questions: float, seed: float,
             perplexity: bool) -> Iterator[tuple]:
    from ..evaluate import evaluate_run

    if not run_id:
        raise UserError("choose an exported run first (Train, then Export)")
    run_id = ctx.run_id(run_id)
    config = EvalConfig(retrieval=retrieval, questions=int(questions),
                        seed=int(seed or 0), perplexity=bool(perplexity))
    skip = gr.skip()
    for events, result, finished in run_streaming(lambda progress: evaluate_run(ctx.ws, run_id, config, progress)):
        if not finished:
            yield (stage_bars(events),) + (skip,) * 6
    yield view(ctx, result)


def show_latest(ctx: Context, run_id: str | None) -> tuple:
    from ..evaluate import latest_eval

    result = latest_eval(ctx.ws, ctx.run_id(run_id)) if run_id else None
    if result is None:
        return (notice("No eval of this run yet: click <b>Evaluate</b>.", "info"), None, charts.eval_theme_bars([], {}),
                charts.eval_win_loss([], [], [], []), "", None, gr.Dropdown(choices=[], value=None))
    return view(ctx, result)


def show_stamp(ctx: Context, run_id: str, stamp: str) -> tuple:
    from ..evaluate import load_eval

    return view(ctx, load_eval(ctx.ws, ctx.run_id(run_id), stamp))


def view(ctx: Context, result: dict[str, Any]) -> tuple:
    from ..evaluate import list_evals
    from ..evaluate.report import row_name, summary_table

    table = summary_table(result)
    keys = ["model", *COLUMNS, table[0][-1]]
    rows = [[_shown(k, line[table[0].index(k)]) for k in keys] for line in table[1:]]
    themes = sorted({t for r in result["rows"] for t in r.get("per_theme", {})})
    per_row = {row_name(r): [r["per_theme"].get(t) for t in themes] for r in result["rows"]}
    bars = charts.eval_theme_bars(themes, per_row)
    vs = [r for r in result["rows"] if r.get("vs_base")]
    counts = [[r["vs_base"][k] for r in vs] for k in ("wins", "losses", "ties")]
    wins = charts.eval_win_loss([row_name(r) for r in vs], *counts)
    stamps = list_evals(ctx.ws, result["run_id"])
    status = notice(f"Eval <b>{esc(result.get('stamp'))}</b> of run <b>{esc(result['run_id'])}</b>: "
                    f"{len(result['questions'])} questions, {result['timings'].get('total_s')} s. "
                    f"Saved in <code>{esc(result.get('folder'))}</code>.", "ok")
    return (status, rows, bars, wins, _details(result), _answers(result),
            gr.Dropdown(choices=stamps, value=result.get("stamp")))


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def _shown(key: str, value: Any) -> Any:
    """A table cell as people read it: rates in percent, scores to three places."""
    if key.endswith("_rate") and isinstance(value, (int, float)):
        return f"{value:.0%}"
    return round(value, 1) if key in ("words", "seconds") and isinstance(value, float) else _round(value)


def _details(result: dict[str, Any]) -> str:
    from ..evaluate.report import row_name

    ppl = result.get("perplexity")
    parts = []
    if ppl:
        change = "" if ppl.get("reduction") is None else f" ({-ppl['reduction']:+.1%}; lower is better)"
        parts.append(f"<p><b>Held-out perplexity</b> of your replies ({esc(ppl['examples'])} test examples): base "
                     f"{esc(_round(ppl['base']['perplexity']))} → tuned {esc(_round(ppl['tuned']['perplexity']))}"
                     f"{change}.</p>")
    for row in result["rows"]:
        if row.get("style"):
            s = row["style"]
            parts.append(f"<p><b>Style, {esc(row_name(row))}</b> (answers to your conversation prompts): similarity "
                         f"to your replies {esc(_round(s.get('style')))}, {esc(_shown('words', s.get('words')))} "
                         f"words on average, refusals {esc(_shown('refusal_rate', s.get('refusal_rate')))}.</p>")
    for entry in result.get("compared") or []:
        change = entry["changes"].get("score")
        if change:
            parts.append(f"<p>vs previous eval {esc(result.get('previous'))}, <b>{esc(entry['row'])}</b>: score "
                         f"{change['before']:.3f} → {change['after']:.3f}</p>")
    return "".join(parts)


def _answers(result: dict[str, Any]) -> list[list[Any]]:
    from ..evaluate.report import row_name

    out = []
    for i, item in enumerate(result["questions"]):
        for row in result["rows"]:
            ans = row["answers"][i]
            hit = ans.get("source_hit")
            out.append([item["question"], row_name(row), ans["answer"], ans.get("score"),
                        "" if hit is None else ("yes" + (", cited" if ans.get("cited") else "") if hit else "no"),
                        item["reference"][:300]])
    return out
