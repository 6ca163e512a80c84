"""Data tab: upload sources and read the ingest report, build the dataset stage by stage.

Its other sub-tabs are the corpus browser (`corpus.py`) and curation (`curation_ui.py`).
Uploads arrive in the workspace's upload folder (set by `build_app`) and are copied into
`sources/` by the core; nothing here reads or writes outside the workspace.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from .. import slots
from ..config import BuildConfig
from ..events import Event
from ..workspace import UserError, read_json
from . import corpus, curation_ui
from .common import Context, cards, discard_uploads, esc, fmt_num, guard, notice, run_streaming, stage_bars
from .users import WRITE_QUEUE

STATUS_ICON = {"ok": "✓ ok", "skipped": "– skipped", "error": "✗ error"}
REPORT_HEADERS = ["File", "Status", "Format", "Records", "New", "Details"]
ACCEPTED = ".json .jsonl .zip .md .markdown .txt .pdf .csv .parquet"


def build(ctx: Context) -> SimpleNamespace:
    with gr.Tabs():
        with gr.Tab("Import", id="data-import"):
            imp = _build_import(ctx)
        with gr.Tab("Build dataset", id="data-build"):
            bld = _build_build(ctx)
        with gr.Tab("Browse corpus", id="data-corpus") as corpus_tab:
            cor = corpus.build(ctx)
        with gr.Tab("Curate examples", id="data-curate") as curate_tab:
            cur = curation_ui.build(ctx)
    corpus_tab.select(*cor.refresh)
    curate_tab.select(cur.refresh_fn, cur.refresh_inputs, cur.refresh_outputs)
    for dep in imp.done:
        dep.success(*cor.refresh)
    for dep in bld.done:
        dep.success(cur.refresh_fn, cur.refresh_inputs, cur.refresh_outputs)
    return SimpleNamespace(ingested=imp.done, built=bld.done, state_outputs=[imp.summary, imp.report, bld.result],
                           state_fn=lambda: current_state(ctx))


def current_state(ctx: Context) -> tuple:
    """What the Data tab shows on a fresh page load: the last ingest report and build result."""
    report = read_json(ctx.ws.ingest_report)
    return report_summary(report), report_rows(report), build_summary(_metadata(ctx))


# ---- import -------------------------------------------------------------------------------


def _build_import(ctx: Context) -> SimpleNamespace:
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320):
            gr.Markdown("### Add your material\nChatGPT and Claude exports (`conversations.json` or the whole "
                        "`.zip`), PDFs, Markdown and Obsidian notes, plain text, JSONL chats, CSV/Parquet. "
                        "Zip a folder to upload it in one go. Files are copied into the workspace; "
                        "re-adding a file adds nothing twice.")
            files = gr.File(label="Files to ingest", file_count="multiple", height=170, elem_id="rz-upload")
            with gr.Row():
                ingest_btn = gr.Button("Ingest files", variant="primary", elem_id="rz-ingest")
                sample_btn = gr.Button("Load the sample data", elem_id="rz-sample")
            gr.Markdown(f'<span class="rz-muted">Accepted: {ACCEPTED}</span>')
        with gr.Column(scale=7, min_width=420):
            gr.Markdown("### Ingest report")
            summary = gr.HTML(report_summary(read_json(ctx.ws.ingest_report)), elem_id="rz-ingest-summary")
            report = gr.Dataframe(value=report_rows(read_json(ctx.ws.ingest_report)), headers=REPORT_HEADERS,
                                  interactive=False, wrap=True, max_height=360, elem_id="rz-ingest-report",
                                  column_widths=["24%", "10%", "12%", "10%", "7%", "37%"])
    outputs = [summary, report, files]
    # Stages that write the workspace run one at a time in it (`slots.workspace_write`), whoever clicks.
    upload = ingest_btn.click(guard(lambda paths, progress=gr.Progress(): ingest_uploads(ctx, paths, progress)),
                              [files], outputs, **WRITE_QUEUE)
    sample = sample_btn.click(guard(lambda progress=gr.Progress(): ingest_samples(ctx, progress)), None, outputs,
                              **WRITE_QUEUE)
    return SimpleNamespace(done=[upload, sample], report=report, summary=summary)


def ingest_uploads(ctx: Context, paths: list[str] | None, progress: Any = None) -> tuple:
    if not paths:
        raise UserError("choose one or more files first (or click “Load the sample data”)")
    for path in paths:
        if not ctx.ws.contains(path):  # uploads must already lie in the workspace's upload folder
            raise UserError(f"{Path(path).name}: upload did not land in the workspace; please upload it again")
    try:
        return _ingest(ctx, paths, progress)
    finally:
        discard_uploads(ctx, paths)


def ingest_samples(ctx: Context, progress: Any = None) -> tuple:
    if not ctx.samples.is_dir():
        raise UserError(f"the sample data folder is missing ({ctx.samples})")
    return _ingest(ctx, [ctx.samples], progress)


def _ingest(ctx: Context, paths: list, progress: Any) -> tuple:
    from ..ingest import ingest_paths

    try:
        with slots.workspace_write(ctx.ws):
            report = ingest_paths(ctx.ws, paths, progress=_gr_progress(progress))
    except UserError as exc:  # nothing usable: the report on disk still says why, file by file
        gr.Warning(str(exc))
        report = read_json(ctx.ws.ingest_report)
    return report_summary(report), report_rows(report), None


def _gr_progress(progress: Any):
    """Adapt core events to a gr.Progress bar: each file being ingested, by name."""
    if progress is None:
        return None

    def update(event: Event) -> None:
        desc = event.get("file") or event.message or event.stage
        if event.total:
            progress((min(event.step, event.total), event.total), desc=str(desc))
        else:
            progress(None, desc=str(desc))
    return update


def report_rows(report: dict | None) -> list[list[str]]:
    rows = []
    for entry in (report or {}).get("files", []):
        counts = entry.get("counts") or {}
        rows.append([entry.get("file", ""), STATUS_ICON.get(entry.get("status"), entry.get("status", "")),
                     entry.get("format") or "", _int(counts.get("records")), _int(counts.get("added")),
                     entry.get("reason") or ""])
    return rows


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


def report_summary(report: dict | None) -> str:
    if not report:
        return notice("No sources yet. Upload files, or load the sample data to try Rhizome.", "info")
    files = report.get("files", [])
    by = {s: sum(1 for f in files if f.get("status") == s) for s in ("ok", "skipped", "error")}
    html = cards([("files read", by["ok"]), ("skipped", by["skipped"]), ("errors", by["error"]),
                  ("records added", report.get("records_added", 0)), ("records in corpus", report.get("records_total", 0))])
    if by["error"]:
        html += notice("Some files could not be read; the reason is in the table. The rest were ingested.", "warn")
    elif report.get("records_total"):
        html += notice("Next: open <b>Build dataset</b> to clean, deduplicate, balance themes and split.", "ok")
    return html


# ---- build --------------------------------------------------------------------------------


def _build_build(ctx: Context) -> SimpleNamespace:
    defaults = BuildConfig()
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320):
            gr.Markdown("### Build the training set\nClean → deduplicate (embeddings) → score quality → "
                        "extract themes → balance them with IPF weights → pair turns → split. Also builds "
                        "the retrieval memory used by Chat.")
            with gr.Group():
                dedup = gr.Slider(0.80, 1.0, value=defaults.dedup_similarity_threshold, step=0.01,
                                  label="Near-duplicate similarity", info="cosine ≥ this counts as a duplicate")
                quality = gr.Slider(0.0, 1.0, value=defaults.qa_quality_score_threshold, step=0.01,
                                    label="Minimum quality", info="lower keeps more examples")
                method = gr.Dropdown([("hybrid (TF-IDF + KeyBERT)", "hybrid"), ("KeyBERT", "keybert"),
                                      ("TF-IDF (fastest)", "tfidf")], value=defaults.semantic_method,
                                     label="Theme extraction", elem_id="rz-build-method")
                temperature = gr.Slider(0.0, 1.0, value=defaults.theme_temperature, step=0.05,
                                        label="IPF temperature", info="0 = all themes equal, 1 = as found")
            with gr.Accordion("More settings", open=False):
                with gr.Row():
                    context_turns = gr.Number(defaults.context_turns, precision=0, label="Context turns kept")
                    themes_per = gr.Number(defaults.themes_per_example, precision=0, label="Themes per example")
                with gr.Row():
                    w_min = gr.Number(defaults.weight_min, label="Min weight")
                    w_max = gr.Number(defaults.weight_max, label="Max weight")
                with gr.Row():
                    chunk = gr.Number(defaults.chunk_size, precision=0, label="Words per document chunk")
                    overlap = gr.Number(defaults.chunk_overlap, precision=0, label="Chunk overlap (words)")
                split = gr.Textbox(", ".join(f"{x:g}" for x in defaults.split), label="Split train, validation, test")
                system = gr.Textbox("", label="System prompt for every example (optional)", lines=2)
                memory = gr.Checkbox(defaults.build_memory, label="Also build the retrieval memory (FAISS + keyword)")
            conversations = gr.Checkbox(defaults.include_conversations, label="Learn from my saved chats",
                                        info=conversations_info(ctx), elem_id="rz-build-conversations")
            build_btn = gr.Button("Build dataset", variant="primary", elem_id="rz-build")
        with gr.Column(scale=7, min_width=420):
            gr.Markdown("### Result")
            result = gr.HTML(build_summary(_metadata(ctx)), elem_id="rz-build-result")
    inputs = [dedup, quality, method, temperature, context_turns, themes_per, w_min, w_max, chunk, overlap,
              split, system, memory, conversations]
    done = build_btn.click(guard(partial(run_build, ctx)), inputs, [result], **WRITE_QUEUE)
    return SimpleNamespace(done=[done], result=result)


def run_build(ctx: Context, dedup, quality, method, temperature, context_turns, themes_per, w_min, w_max,
              chunk, overlap, split, system, memory, conversations=False) -> Iterator[str]:
    """Build with one live progress bar per stage (clean, dedup, quality, themes, IPF, split, memory)."""
    from ..curate import build_dataset

    config = BuildConfig(
        dedup_similarity_threshold=float(dedup), qa_quality_score_threshold=float(quality),
        semantic_method=method, theme_temperature=float(temperature), context_turns=int(context_turns),
        themes_per_example=int(themes_per), weight_min=float(w_min), weight_max=float(w_max),
        chunk_size=int(chunk), chunk_overlap=int(overlap), split=_parse_split(split),
        system_prompt=system.strip() or None, build_memory=bool(memory),
        include_conversations=bool(conversations))
    if not ctx.ws.corpus.is_file() and not (conversations and conversations_count(ctx)):
        raise UserError("the corpus is empty: ingest some files first (Import)")
    for events, meta, finished in run_streaming(lambda progress: build_dataset(ctx.ws, config, progress=progress),
                                                writes=ctx.ws):
        yield stage_bars(events, finished) + (build_summary(meta) if finished else "")


def conversations_count(ctx: Context) -> int:
    from ..chat.sessions import sessions_summary

    return sessions_summary(ctx.ws)["turns"]


def conversations_info(ctx: Context) -> str:
    """The saved chats as a source, beside the imported ones (each session can opt in on its own)."""
    from ..chat.sessions import sessions_summary

    try:
        n = sessions_summary(ctx.ws)
    except UserError as exc:
        return str(exc)
    return (f"{n['sessions']} chat sessions, {n['turns']} exchanges ({n['private']} private, left out; "
            f"{n['train']} always included). They go through the same cleaning, dedup and curation.")


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.replace(";", ",").split(","))
    except ValueError:
        raise UserError(f"split must be three numbers like 0.8, 0.1, 0.1 (got {text!r})") from None
    if len(parts) != 3:
        raise UserError(f"split needs three numbers: train, validation, test (got {text!r})")
    return parts  # type: ignore[return-value]


def _metadata(ctx: Context) -> dict | None:
    return read_json(ctx.ws.dataset / "dataset_metadata.json")


def build_summary(meta: dict | None) -> str:
    if not meta:
        return notice("No dataset yet. Choose settings and click <b>Build dataset</b>.", "info")
    counts = meta.get("counts") or {}
    drops = {k: int(v) for k, v in (meta.get("drops_total") or {}).items() if v}
    html = cards([("train", fmt_num(counts.get("train", 0))), ("validation", fmt_num(counts.get("validation", 0))),
                  ("test", fmt_num(counts.get("test", 0))),
                  ("themes", fmt_num((meta.get("themes") or {}).get("distinct", 0))),
                  ("dropped", fmt_num(sum(drops.values()))),
                  ("memory chunks", fmt_num((meta.get("memory") or {}).get("count", 0)))])
    if drops:
        html += "<p class='rz-muted'>Dropped by reason: " + ", ".join(
            f"<b>{esc(k.replace('_', ' '))}</b> {v:,}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])) + "</p>"
    for warning in meta.get("warnings") or []:
        html += notice(esc(warning), "warn")
    took = (meta.get("timings") or {}).get("total")
    html += notice("Dataset ready" + (f" in {took:.0f}s" if took else "") +
                   ". See <b>Themes &amp; IPF</b> for the balance, then <b>Train</b>.", "ok")
    return html
