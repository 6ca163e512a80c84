"""Named API endpoints for scripts (`gradio_client`): /upload, /sources, /build, /chat.

Each is a hidden button's event with an `api_name`, so it runs through gradio's queue like a
click, in the caller's own workspace (`ctx.ws` resolves per request: with sign-in, the
signed-in person's; in a demo, the session's). Results are plain JSON.
"""
from __future__ import annotations

import time
from pathlib import Path
from functools import partial
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from .. import jobs, slots
from ..config import ANSWER_MODES, ChatConfig
from ..workspace import UserError, Workspace, read_json
from .common import Context, discard_uploads, guard
from .users import CHAT_QUEUE, WRITE_QUEUE

def build(ctx: Context) -> SimpleNamespace:
    """Hidden components that carry the endpoints (call this inside the Blocks)."""
    with gr.Column(visible=False):
        files = gr.File(file_count="multiple", label="files")
        message, session = gr.Textbox(label="message"), gr.Textbox(label="session")
        answer_mode = gr.Dropdown(list(ANSWER_MODES), value="auto", label="answer_mode")
        result = gr.JSON(label="result")
        buttons = [gr.Button(name) for name in ("upload", "sources", "build", "chat")]
    upload, sources, build_btn, chat = buttons
    upload.click(guard(lambda paths: upload_files(ctx, paths)), [files], [result], api_name="upload", **WRITE_QUEUE)
    sources.click(guard(lambda: list_sources(ctx.ws)), None, [result], api_name="sources")
    build_btn.click(guard(lambda: build_dataset(ctx)), None, [result], api_name="build", **WRITE_QUEUE)
    chat.click(guard(partial(chat_once, ctx)), [message, session, answer_mode], [result], api_name="chat",
               **CHAT_QUEUE)
    return SimpleNamespace(files=files, result=result)


def upload_files(ctx: Context, paths: list[str] | None) -> dict[str, Any]:
    """Ingest uploaded files; the ingest report (one entry per file) comes back."""
    from ..ingest import ingest_paths

    if not paths:
        raise UserError("send one or more files")
    ws = ctx.ws
    for path in paths:
        if not ws.contains(path):
            raise UserError(f"{Path(path).name}: upload did not land in your workspace; please upload it again")
    try:
        with slots.workspace_write(ws):
            return plain(ingest_paths(ws, paths))
    except UserError:
        report = read_json(ws.ingest_report) or {}
        if report.get("files"):
            return plain(report)  # nothing usable, but the report says why, file by file
        raise
    finally:
        discard_uploads(ctx, paths)


def list_sources(ws: Workspace) -> list[dict[str, Any]]:
    """The source files of this workspace: name (the path under sources/) and size in bytes.
    (Not "path": gradio_client would take a {"path": ...} object for a file to download.)"""
    if not ws.sources.is_dir():
        return []
    return [{"name": p.relative_to(ws.sources).as_posix(), "bytes": p.stat().st_size}
            for p in sorted(ws.sources.rglob("*")) if p.is_file()]


def build_dataset(ctx: Context) -> dict[str, Any]:
    """Build the dataset and memory; the dataset's metadata (counts, drops by reason) comes back."""
    from ..curate import build_dataset as build

    ws = ctx.ws
    if not ws.corpus.is_file():
        raise UserError("nothing to build yet: upload files first (/upload)")
    with slots.workspace_write(ws):
        return plain(build(ws))


def chat_once(ctx: Context, message: str, session: str | None,
              answer_mode: str | None = "auto") -> Iterator[dict[str, Any]]:
    """Stream one answer: partial `{"answer": text so far, "done": False}` updates, then the
    whole reply with its sources (`done: True`). The exchange continues (or starts) the person's
    chat session of that name, the same conversations the Chat tab and the CLI keep.
    `answer_mode` is the chat's (auto: a small model quotes its sources; generate: it writes)."""
    from ..chat import answer
    from ..chat.sessions import check_name

    ws = ctx.ws  # resolved here, in the request: the job below gets the workspace itself
    name = check_name(session or "default")
    # grounded in the person's documents once they have built a memory; a plain answer before
    config = ChatConfig(retrieval=ws.memory.is_dir() and any(ws.memory.iterdir()),
                        answer_mode=answer_mode or "auto")
    job = jobs.run_in_background(lambda job: answer(ws, message, config, on_token=job.record, session=name),
                                 kind="chat")
    text, shown = "", 0.0
    for token in job.updates():
        text += token
        if time.time() - shown > 0.05:
            shown = time.time()
            yield {"session": name, "answer": text, "done": False}
    job.raise_if_failed()
    yield plain({**job.result.to_dict(), "session": name, "done": True})


def plain(value: Any) -> Any:
    """JSON for gradio_client: a {"path": ...} object would be taken for a file to download (and
    refused), so a source's "path" goes out as "file"."""
    if isinstance(value, dict):
        return {("file" if k == "path" else k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
