"""The Gradio app: one tab per stage over the `rhizome` core (Data, Themes & IPF, Train, Chat, Export, Eval).

`build_app(workspace)` returns the Blocks without launching it; `app.py` launches it with
`THEME`/`CSS`. Each tab module has `build(ctx)`; this module only lays the tabs out and wires
the few events that cross tabs (a finished build refreshes the charts, a finished export
offers the model to Chat, a page load re-attaches to a running training).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ..workspace import Workspace
from . import api, chat, data, evaluate, export, themes, train, train_view
from .common import CSS, Context, guard, header_html, notice, pipeline_html, theme

TABS = [("data", "Data", data), ("themes", "Themes & IPF", themes), ("train", "Train", train),
        ("chat", "Chat", chat), ("export", "Export", export), ("eval", "Eval", evaluate)]
__all__ = ["build_app", "Context", "CSS", "theme", "upload_dir"]


def upload_dir(workspace: str | os.PathLike) -> Path:
    """Where Gradio stores uploads and recordings: inside the workspace, never in /tmp."""
    return Workspace(workspace).root / ".uploads"


def build_app(workspace: str | os.PathLike, on_space: bool | None = None, spaces: Any = None) -> gr.Blocks:
    """`spaces` (a `users.Spaces`): several people share the app, each in their own workspace."""
    ws = Workspace(workspace).ensure()
    uploads = spaces.uploads if spaces is not None else upload_dir(ws.root)
    # Components read the upload folder when they are created, so set it first.
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    uploads.mkdir(parents=True, exist_ok=True)
    ctx = Context(ws, on_space=bool(os.environ.get("SPACE_ID")) if on_space is None else on_space, spaces=spaces)
    with gr.Blocks(title="Rhizome — your material, your model", analytics_enabled=False) as demo:
        header = gr.HTML(header_html(ctx))
        strip = gr.HTML(pipeline_html(ctx.ws), elem_id="rz-pipeline")  # shared: an empty stand-in
        # outside the tabs: a tab's components mount only when it is first shown, too late for load
        ctx.chat_session = chat.chat_sessions.browser_state()  # type: ignore[attr-defined]
        ui = SimpleNamespace(header=header, strip=strip)
        with gr.Tabs(selected="data") as ui.tabs:
            for key, title, module in TABS:
                with gr.Tab(title, id=key, elem_id=f"rz-tab-{key}") as tab:
                    setattr(ui, key, module.build(ctx))
                setattr(ui, f"{key}_tab", tab)
        ui.api = api.build(ctx)
        _wire(ctx, demo, ui)
    if spaces is not None:
        spaces.building = False  # from now on a workspace is only ever the request's own
        # what gradio cached for the page itself (component values) is everyone's; any other
        # file in its cache is an upload or a handler's output, served to its owner only
        spaces.mark_public([path for files in demo.temp_file_sets for path in files])
    demo.rhizome_context = ctx  # type: ignore[attr-defined]
    return demo


def _wire(ctx: Context, demo: gr.Blocks, ui: SimpleNamespace) -> None:
    strip, header, tabs = ui.strip, ui.header, ui.tabs
    data_ui, themes_ui, train_ui, chat_ui, export_ui = ui.data, ui.themes, ui.train, ui.chat, ui.export
    refresh_strip = guard(lambda: pipeline_html(ctx.ws))
    for dep in data_ui.ingested:
        dep.success(refresh_strip, None, [strip])
    for dep in data_ui.built:
        dep.success(refresh_strip, None, [strip]).then(themes_ui.refresh_fn, None, themes_ui.outputs)
    ui.themes_tab.select(themes_ui.refresh_fn, None, themes_ui.outputs)
    ui.export_tab.select(guard(lambda r: export.run_picker(ctx, r)), [export_ui.run], [export_ui.run])
    ui.eval_tab.select(guard(lambda r: gr.Dropdown(choices=evaluate.runs(ctx), value=r if r in evaluate.runs(ctx) else
                                                   next(iter(evaluate.runs(ctx)), None))), [ui.eval.run], [ui.eval.run])
    train_ui.started.success(refresh_strip, None, [strip])
    export_ui.done.success(refresh_strip, None, [strip]).then(
        guard(lambda m: gr.Dropdown(choices=chat_ui.choices_fn(), value=m)), [chat_ui.model], [chat_ui.model])
    export_ui.use.click(guard(lambda r, q: (gr.Dropdown(choices=chat_ui.choices_fn(), value=f"{r}:{q}"),
                                            gr.Tabs(selected="chat"))), [export_ui.run, export_ui.quant],
                        [chat_ui.model, tabs])
    demo.load(guard(lambda: _on_load(ctx)), None, [header, train_ui.hardware, *train_ui.settings, chat_ui.engines])
    chat_models = guard(lambda m: gr.Dropdown(choices=chat_ui.choices_fn(), value=m))
    demo.load(chat_models, [chat_ui.model], [chat_ui.model])
    ui.chat_tab.select(chat_models, [chat_ui.model], [chat_ui.model])
    demo.load(guard(chat_ui.voices_fn), None, [chat_ui.voice])
    demo.load(*chat_ui.restore)  # the conversation this browser had open
    # re-attach: select the running (or newest) run; the view's timer then follows it
    demo.load(guard(lambda: train_view.run_choices(ctx)), None, [train_ui.view.run]).then(*train_ui.view.refresh)
    demo.load(themes_ui.refresh_fn, None, themes_ui.outputs)
    # Values given at build time are frozen into the page; a reload must show the workspace as it is now.
    demo.load(refresh_strip, None, [strip])
    # and keep it current while runs finish in the background (or the CLI works on the workspace)
    gr.Timer(10).tick(refresh_strip, None, [strip], show_progress="hidden", concurrency_limit=None)
    demo.load(guard(data_ui.state_fn), None, data_ui.state_outputs)


def _on_load(ctx: Context) -> list:
    """Per page load: hardware (torch is imported here, not at build), hardware-sized defaults."""
    from ..models import detect_hardware

    hw = detect_hardware()
    hint = "GPU defaults: longer runs, bigger batches." if hw.device == "cuda" else (
        "Space defaults: a short run that finishes on a shared CPU." if ctx.on_space else
        "CPU defaults: a short run (a few minutes on the bundled 135M model).")
    return [header_html(ctx, hw.describe()), notice(f"<b>{hw.describe()}</b> — {hint}", "info"),
            *train.widget_defaults(ctx, hw.device), chat.engines_html(ctx)]
