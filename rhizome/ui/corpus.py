"""Browse corpus sub-tab of Data: search and page through `corpus.jsonl`, read one record."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..records import Record
from ..workspace import read_jsonl
from .common import Context, guard

CORPUS_HEADERS = ["Title", "Source", "Kind", "Date", "Size", "Id"]
PAGE_SIZE = 15


def build(ctx: Context) -> SimpleNamespace:
    gr.Markdown("### Corpus\nEvery conversation and document as ingested (`corpus.jsonl`). Click a row to read it.")
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="words in the title or text", scale=4)
        source = gr.Dropdown(["all"], value="all", label="Source", scale=2)
        page = gr.Number(1, precision=0, minimum=1, label="Page", scale=1)
        refresh = gr.Button("Search", scale=1)
    info = gr.Markdown()
    table = gr.Dataframe(headers=CORPUS_HEADERS, interactive=False, wrap=True, max_height=420,
                         column_widths=["40%", "10%", "12%", "10%", "10%", "18%"])
    preview = gr.Markdown(elem_classes=["rz-record"])
    outputs = [table, info, source]
    fn = guard(lambda q, s, p: corpus_page(ctx, q, s, p))
    for trigger in (refresh.click, query.submit, page.submit):
        trigger(fn, [query, source, page], outputs)
    source.input(guard(lambda q, s: corpus_page(ctx, q, s, 1)), [query, source], outputs)

    def on_select(evt: gr.SelectData) -> str:
        return record_preview(ctx, evt)

    table.select(guard(on_select), None, [preview])
    return SimpleNamespace(refresh=(fn, [query, source, page], outputs))


def corpus_page(ctx: Context, query: str, source: str, page: float | None) -> tuple:
    records = list(read_jsonl(ctx.ws.corpus)) if ctx.ws.corpus.is_file() else []
    sources = ["all"] + sorted({r.get("source", "") for r in records})
    needle = (query or "").strip().lower()
    hits = [r for r in records if (source in (None, "all") or r.get("source") == source)
            and (not needle or needle in (r.get("title", "") + "\n" + Record.from_dict(r).full_text()).lower())]
    pages = max(1, -(-len(hits) // PAGE_SIZE))
    page = min(max(1, int(page or 1)), pages)
    rows = [_corpus_row(r) for r in hits[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]]
    info = f"{len(hits):,} of {len(records):,} records · page {page} of {pages}"
    return rows, info, gr.Dropdown(choices=sources, value=source if source in sources else "all")


def _corpus_row(r: dict) -> list[str]:
    size = f"{len(r['messages'])} turns" if r.get("messages") is not None else f"{len((r.get('text') or '').split()):,} words"
    return [r.get("title") or "(untitled)", r.get("source", ""), r.get("kind", ""),
            (r.get("created_at") or "")[:10], size, r.get("id", "")]


def record_preview(ctx: Context, evt: gr.SelectData) -> str:
    row = evt.row_value or []
    record_id = row[-1] if row else None
    for data in read_jsonl(ctx.ws.corpus):
        if data.get("id") == record_id:
            return _render_record(Record.from_dict(data))
    return ""


def _render_record(record: Record, limit: int = 6000) -> str:
    origin = ", ".join(f"{k}: {v}" for k, v in record.origin.items())
    head = f"#### {record.title or '(untitled)'}\n<span class='rz-muted'>{record.source} · {origin}</span>\n\n"
    if record.kind == "document":
        body = (record.text or "")[:limit]
    else:
        body = "\n\n".join(f"**{m.role}** — {m.content}" for m in record.messages or [])[:limit]
    return head + body
