"""The right-hand side of the Train tab: one run's progress bar, numbers and live charts.

A timer re-reads `runs/<id>/events.jsonl` once a second (only the bytes added since the last
read) and redraws only when something changed. Nothing streams from the training itself, so a
reloaded page, a second browser, or a run started from the CLI all show the same live view.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .. import jobs
from ..config import TrainConfig
from ..train.memory import MemoryEstimate
from ..workspace import read_json
from . import charts
from .common import Context, cards, esc, fmt_num, fmt_seconds, guard, notice, progress_bar

KNOWLEDGE_HEADERS = ["Prompt", "Base answer", "Tuned answer", "Reference", "Similarity base → tuned"]
STATUS_LABEL = {"running": "Training", "done": "Finished", "stopped": "Stopped", "failed": "Failed",
                "interrupted": "Interrupted (resumable)"}


def build(ctx: Context) -> SimpleNamespace:
    with gr.Row():
        run = gr.Dropdown(ctx.ws.list_runs(), value=None, label="Run", allow_custom_value=True, scale=4,
                          elem_id="rz-train-run")
        refresh = gr.Button("↻ Runs", scale=1, min_width=80)
    progress = gr.HTML(progress_bar(0, 0, "No run selected"), elem_id="rz-train-progress")
    stats = gr.HTML()
    plot = gr.Plot(charts.training_curves([]), show_label=False, elem_id="rz-train-plot")
    with gr.Accordion("Which tokens are trained (preview)", open=False):
        preview_btn = gr.Button("Show preview of the first training example", size="sm")
        preview = gr.HTML()
    with gr.Accordion("Knowledge test: base vs tuned", open=False):
        knowledge_summary = gr.HTML()
        knowledge = gr.Dataframe(headers=KNOWLEDGE_HEADERS, wrap=True, interactive=False, max_height=360,
                                 column_widths=["22%", "26%", "26%", "18%", "8%"])
    seen = gr.State(None)  # this page's copy of the run's events, and what it last drew
    timer = gr.Timer(1.0)
    outputs = [progress, stats, plot, knowledge, knowledge_summary, seen]
    fn = guard(lambda run_id, state: poll(ctx, run_id, state))
    timer.tick(fn, [run, seen], outputs, concurrency_limit=None, show_progress="hidden")
    run.input(fn, [run, seen], outputs, concurrency_limit=None)
    refresh.click(guard(lambda r: run_choices(ctx, r)), [run], [run])
    return SimpleNamespace(run=run, preview_btn=preview_btn, preview=preview,
                           refresh=(fn, [run, seen], outputs))


def run_choices(ctx: Context, selected: str | None = None) -> gr.Dropdown:
    """Every run folder, plus the running one (its folder may not exist yet), newest first."""
    runs = ctx.ws.list_runs()
    live = current_run(ctx)
    for run_id in (live, selected):
        if run_id and run_id not in runs:
            runs.insert(0, run_id)
    return gr.Dropdown(choices=runs, value=selected or live)


def current_run(ctx: Context) -> str | None:
    """The run to show after a page (re)load: the running one (from any process), else the newest."""
    held = jobs.training_lock(ctx.ws)
    if held is not None and held.get("run_id"):
        return held["run_id"]
    runs = ctx.ws.list_runs()
    return runs[0] if runs else None


def poll(ctx: Context, run_id: str | None, state: dict | None) -> tuple:
    """Read what the run logged since the last tick; redraw only if anything changed."""
    skip = (gr.skip(),) * 5
    if not run_id:
        return (progress_bar(0, 0, "No run selected"), "", charts.training_curves([]), [], "", None) \
            if state is not None else (*skip, None)
    run_id = ctx.run_id(run_id)
    if not state or state.get("run") != run_id:
        state = {"run": run_id, "offset": 0, "events": [], "drawn": None}
    new, state["offset"] = jobs.read_events(ctx.ws, run_id, state["offset"])
    state["events"] += new
    status, live = jobs.run_status(ctx.ws, run_id), _live_message(ctx, run_id)
    key = [len(state["events"]), status, live]
    if key == state["drawn"]:
        return (*skip, state)
    state["drawn"] = key
    events = state["events"]
    knowledge = knowledge_view(ctx, run_id) if status != "running" else (gr.skip(), gr.skip())
    return (render(ctx, run_id, events, status, live), stats_html(events),
            charts.training_curves(events), *knowledge, state)


def _live_message(ctx: Context, run_id: str) -> str:
    """What an in-process job is doing before its first logged step (loading, tokenising…)."""
    job = jobs.last_job(ctx.ws, "train")
    event = job.last_event if job is not None and job.run_id == run_id and job.running else None
    if event is not None and event.stage != "train":
        return event.message or event.stage
    return ""


def render(ctx: Context, run_id: str, events: list[dict[str, Any]], status: str, live: str) -> str:
    steps = [e for e in events if e.get("total") and e.get("step") is not None]
    metrics = [e for e in events if e.get("loss") is not None]
    step, total = (steps[-1]["step"], steps[-1]["total"]) if steps else (0, 0)
    detail = live
    if not detail and metrics:
        last = metrics[-1]
        speed = f"{fmt_num(last.get('tokens_per_s'))} tokens/s"
        detail = (f"ETA {fmt_seconds(last.get('eta_s'))} · {speed}" if status == "running"
                  else f"final loss {fmt_num(last.get('loss'))} · {speed}")
    label = STATUS_LABEL.get(status, status.capitalize())
    html = progress_bar(step, total, f"{label} · {run_id}", detail) + _setup_note(ctx, run_id)
    job = jobs.last_job(ctx.ws, "train")
    if status == "failed" and job is not None and job.run_id == run_id and job.error:
        html += notice(f"The run failed: {esc(job.error)}", "error")
    elif status == "failed":
        reason = (read_json(ctx.ws.run_dir(run_id) / "status.json", default={}) or {}).get("message", "")
        html += notice(f"The run failed. {esc(reason)}", "error")
    return html


def _setup_note(ctx: Context, run_id: str) -> str:
    """What the run decided before training: its memory estimate and any mapped target modules."""
    status = read_json(ctx.ws.run_dir(run_id) / "status.json", default={}) or {}
    lines = [status["target_note"]] if status.get("target_note") else []
    if status.get("memory"):
        lines.insert(0, MemoryEstimate(**status["memory"]).describe())
    return "".join(f'<p class="rz-muted">{esc(line)}</p>' for line in lines)


def stats_html(events: list[dict[str, Any]]) -> str:
    def latest(key: str) -> Any:
        return next((e[key] for e in reversed(events) if e.get(key) is not None), None)
    eval_loss, lr, coverage = latest("eval_loss"), latest("lr"), latest("coverage")
    return cards([("loss", fmt_num(latest("loss"))), ("eval loss", fmt_num(eval_loss)),
                  ("perplexity", fmt_num(latest("perplexity") or (math.exp(eval_loss) if eval_loss else None))),
                  ("learning rate", "—" if lr is None else f"{lr:.1e}"),
                  ("theme coverage", "—" if coverage is None else f"{coverage:.0%}")])


def knowledge_view(ctx: Context, run_id: str) -> tuple[list[list[str]], str]:
    """The run's knowledge test (same prompts, base vs tuned) as table rows and a summary line."""
    data = read_json(ctx.ws.run_dir(run_id) / "knowledge_test.json") or {}
    rows = []
    for r in data.get("rows") or []:
        base, tuned = r.get("base") or {}, r.get("tuned") or {}
        rows.append([r.get("prompt", ""), base.get("answer", ""), tuned.get("answer", ""), r.get("reference") or "",
                     f"{fmt_num(base.get('similarity'))} → {fmt_num(tuned.get('similarity'))}"])
    summary = data.get("summary") or {}
    if not summary:
        return rows, '<p class="rz-muted">The knowledge test runs after training finishes.</p>' if not rows else ""
    b, t = summary.get("base") or {}, summary.get("tuned") or {}
    return rows, cards([
        ("similarity to reference", f"{fmt_num(b.get('mean_similarity'))} → {fmt_num(t.get('mean_similarity'))}",
         "TF-IDF cosine, base → tuned"),
        ("mean latency", f"{fmt_num(b.get('mean_latency_s'))}s → {fmt_num(t.get('mean_latency_s'))}s"),
        ("empty answers", f"{b.get('empty_rate', 0):.0%} → {t.get('empty_rate', 0):.0%}")])


def token_preview(ctx: Context, config: TrainConfig) -> str:
    """The first training example as the trainer sees it: which tokens carry loss."""
    from ..train.data import preview_first_example  # heavy (a tokenizer): only when asked

    tokens = preview_first_example(ctx.ws, config.model, config.max_length, config.trust_remote_code)
    trained = sum(t["trained"] for t in tokens)
    parts = [f'<span class="{"rz-tok-trained" if t["trained"] else "rz-tok-masked"}">{esc(t["token"])}</span>'
             for t in tokens]
    legend = (f'<p class="rz-muted"><span class="rz-tok-trained">Highlighted</span> tokens carry the loss '
              f'(the assistant\'s reply): {trained} of {len(tokens)}. Faded tokens are context only.</p>')
    return legend + f'<div class="rz-tokens">{"".join(parts)}</div>'
