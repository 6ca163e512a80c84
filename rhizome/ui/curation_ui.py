"""Curate sub-tab of Data: approve, reject or edit built examples before training.

Decisions are stored by the core in `curation.sqlite` (`rhizome.curate.curation`) and honoured
by the next build; this module lists examples and forwards one decision per click.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr

from ..workspace import UserError
from .common import Context, esc, guard, notice

HEADERS = ["Decision", "Split", "Themes", "Quality", "Prompt", "Id"]
PAGE_SIZE = 20
DECISION_ICON = {"approved": "✓ approved", "rejected": "✗ rejected", "edited": "✎ edited", "pending": "—"}


def build(ctx: Context) -> SimpleNamespace:
    gr.Markdown("### Curate examples\nApprove the good ones, reject the rest, fix an answer by editing it. "
                "Decisions are saved at once and applied by the next build.")
    with gr.Row():
        split = gr.Dropdown(["train", "validation", "test", "all", "dropped"], value="train", label="Split", scale=1)
        status = gr.Dropdown([("all", "all"), ("undecided", "pending"), ("approved", "approved"),
                              ("rejected", "rejected"), ("edited", "edited")], value="all", label="Show", scale=1)
        query = gr.Textbox(label="Search", placeholder="words in the example", scale=3)
        page = gr.Number(1, precision=0, minimum=1, label="Page", scale=1)
    info = gr.Markdown()
    table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, max_height=340, elem_id="rz-curate-table",
                         column_widths=["12%", "9%", "20%", "8%", "37%", "14%"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            selected = gr.Textbox(label="Example id", interactive=False, elem_id="rz-curate-id")
            prompt = gr.Textbox(label="Prompt (context)", lines=6, interactive=False)
        with gr.Column(scale=5):
            response = gr.Textbox(label="Response (edit it, then Save edit)", lines=6)
            with gr.Row():
                approve = gr.Button("Approve", variant="primary")
                reject = gr.Button("Reject", variant="stop", elem_id="rz-curate-reject")
                save = gr.Button("Save edit")
                undo = gr.Button("Clear decision")
    feedback = gr.HTML(elem_id="rz-curate-feedback")
    inputs, outputs = [split, status, query, page], [table, info]
    fn = guard(lambda *v: list_page(ctx, *v))
    for trigger in (split.input, status.input, query.submit, page.submit):
        trigger(fn, inputs, outputs)

    def on_select(evt: gr.SelectData) -> tuple:
        return show_example(ctx, evt)

    table.select(guard(on_select), None, [selected, prompt, response])
    for button, decision in ((approve, "approved"), (reject, "rejected"), (save, "edited"), (undo, "clear")):
        button.click(guard(lambda i, r, sp, d=decision: decide(ctx, i, d, r, sp)), [selected, response, split],
                     [feedback]).success(fn, inputs, outputs)
    return SimpleNamespace(refresh_fn=fn, refresh_inputs=inputs, refresh_outputs=outputs)


def list_page(ctx: Context, split: str, status: str, query: str, page: float | None) -> tuple:
    from ..curate.curation import list_examples

    if not (ctx.ws.dataset / "dataset_metadata.json").is_file():
        return [], "No dataset yet: build one first."
    page = max(1, int(page or 1))
    if status == "all":
        got = list_examples(ctx.ws, split=split, query=query or "", page=page, page_size=PAGE_SIZE)
        rows, total, page, pages = got["rows"], got["total"], got["page"], got["pages"]
    else:  # the core pages over every example; a status filter needs them all first
        rows = [r for r in _all_rows(ctx, split, query) if r.get("status") == status]
        total, pages = len(rows), max(1, -(-len(rows) // PAGE_SIZE))
        page = min(page, pages)
        rows = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    table = [[DECISION_ICON.get(r.get("status") or "", "—"), r.get("split", split), ", ".join(r.get("themes") or []),
              f"{float(r.get('quality') or 0):.2f}", (r.get("prompt") or "")[:160], r.get("id", "")] for r in rows]
    return table, f"{total:,} examples · page {page} of {pages}"


def _all_rows(ctx: Context, split: str, query: str) -> list[dict[str, Any]]:
    from ..curate.curation import list_examples

    out, page, pages = [], 1, 1
    while page <= pages:
        got = list_examples(ctx.ws, split=split, query=query or "", page=page, page_size=500)
        out += got["rows"]
        pages, page = got["pages"], page + 1
    return out


def _find(ctx: Context, example_id: str, split: str) -> dict[str, Any] | None:
    for r in _all_rows(ctx, split, example_id):
        if r.get("id") == example_id:
            return r
    return None


def show_example(ctx: Context, evt: gr.SelectData) -> tuple[str, str, str]:
    row = evt.row_value or []
    if len(row) < 2:
        return "", "", ""
    found = _find(ctx, row[-1], row[1])
    return (row[-1], found["prompt"], found["response"]) if found else ("", "", "")


def decide(ctx: Context, example_id: str, decision: str, response: str, split: str) -> str:
    from ..curate.curation import clear_decision, set_decision

    if not example_id:
        raise UserError("click an example in the table first")
    if decision == "clear":
        clear_decision(ctx.ws, example_id)
    elif decision == "edited":
        if not (response or "").strip():
            raise UserError("the edited response is empty; write the answer you want, or Reject the example")
        found = _find(ctx, example_id, split)
        if found is None:
            raise UserError(f"example {example_id} is no longer in the dataset; rebuild and pick it again")
        messages = [dict(m) for m in found["messages"]]
        messages[-1] = {"role": "assistant", "content": response}
        set_decision(ctx.ws, example_id, "edited", messages=messages)
    else:
        set_decision(ctx.ws, example_id, decision)
    label = {"approved": "approved", "rejected": "rejected", "edited": "edited", "clear": "back to automatic"}[decision]
    return notice(f"Example <code>{esc(example_id)}</code> {label}; the next build applies it.", "ok")
