"""Export tab: merge a run's adapter, write a GGUF (f16 / q8_0 / q4_k_m) and an Ollama Modelfile.

One core call (`rhizome.export.export_run`); the files it wrote are offered for download, and
"Chat with it" hands the run to the Chat tab's model picker (hot-swapped there, no restart).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from ..config import ExportConfig
from ..workspace import UserError
from .common import Context, esc, guard, notice, owned_output, run_streaming, stage_bars
from .users import WRITE_QUEUE

QUANTS = [("Q8_0 — near-lossless, half the size of F16", "q8_0"),
          ("Q6_K — very close to F16", "q6_k"),
          ("Q5_K_M — good quality, smaller", "q5_k_m"),
          ("Q4_K_M — smallest, a little quality lost", "q4_k_m"),
          ("F16 — exact, largest", "f16"),
          ("BF16 — exact range, for GPUs with bfloat16", "bf16")]


def build(ctx: Context) -> SimpleNamespace:
    d = ExportConfig()
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            gr.Markdown("### Export a run\nMerges the LoRA adapter into the base weights (safetensors), "
                        "writes a GGUF for llama.cpp, Ollama and LM Studio, and an Ollama `Modelfile`.")
            with gr.Row():
                run = gr.Dropdown(trained_runs(ctx), value=next(iter(trained_runs(ctx)), None), label="Run", scale=4,
                                  elem_id="rz-export-run")
                refresh = gr.Button("↻", scale=0, min_width=44)
            quant = gr.Radio(QUANTS, value=d.quant, label="GGUF quantisation")
            gguf_lora = gr.Checkbox(d.gguf_lora, label="Also write a GGUF LoRA adapter (applied to the base GGUF)")
            go_btn = gr.Button("Export", variant="primary", elem_id="rz-export")
        with gr.Column(scale=6, min_width=420):
            gr.Markdown("### Files")
            result = gr.HTML(notice("Choose a trained run and click <b>Export</b>.", "info"))
            use = gr.Button("Chat with this model →", variant="primary", visible=False, elem_id="rz-export-use")
            files = gr.File(label="Download", file_count="multiple", interactive=False, elem_id="rz-export-files")
            modelfile = gr.Code(label="Modelfile", language=None, interactive=False, visible=False)
    done = go_btn.click(guard(partial(run_export, ctx)), [run, quant, gguf_lora], [result, use, files, modelfile],
                        **WRITE_QUEUE)
    refresh.click(guard(lambda r: run_picker(ctx, r)), [run], [run])
    return SimpleNamespace(run=run, quant=quant, done=done, use=use)


def run_picker(ctx: Context, current: str | None = None) -> gr.Dropdown:
    """The trained runs, keeping the current choice, else the newest run."""
    runs = trained_runs(ctx)
    return gr.Dropdown(choices=runs, value=current if current in runs else (runs[0] if runs else None))


def trained_runs(ctx: Context) -> list[str]:
    """Runs that have an adapter to export, newest first."""
    return [r for r in ctx.ws.list_runs() if (ctx.ws.run_dir(r) / "adapter").is_dir()]


def run_export(ctx: Context, run_id: str | None, quant: str, gguf_lora: bool) -> Iterator[tuple]:
    from ..export import export_run

    if not run_id:
        raise UserError("choose a trained run first (train one in the Train tab)")
    run_id = ctx.run_id(run_id)
    config = ExportConfig(quant=quant, gguf_lora=bool(gguf_lora))
    skip = gr.skip()
    for events, paths, finished in run_streaming(lambda progress: export_run(ctx.ws, run_id, config, progress),
                                                writes=ctx.ws):
        if not finished:
            yield stage_bars(events), skip, skip, skip
    yield _result(ctx, run_id, paths)


def _result(ctx: Context, run_id: str, paths: dict[str, Any]) -> tuple:
    downloads = [owned_output(ctx, p) for p in _downloads(paths) if ctx.ws.contains(p)]
    modelfile = _modelfile_text(paths)
    rows = "".join(f"<tr><td><b>{esc(label)}</b></td><td><code>{esc(paths[key])}</code></td></tr>"
                   for key, label in SHOWN if paths.get(key))
    sizes = paths.get("sizes_mb") or {}
    if sizes:
        rows += "<tr><td><b>sizes</b></td><td>" + ", ".join(f"{esc(k)} {v} MB" for k, v in sizes.items()) + "</td></tr>"
    gguf = paths.get("gguf")
    html = notice(f"Exported <b>{esc(run_id)}</b>.", "ok") + check_html(paths) + f"<table class='rz-table'>{rows}</table>"
    if gguf:
        html += (f"<p class='rz-muted'>Ollama: <code>cd {esc(Path(gguf).parent)} &amp;&amp; ollama create "
                 f"{esc(run_id.lower())} -f Modelfile</code> · llama.cpp: <code>llama-cli -m {esc(gguf)}</code></p>")
    return html, gr.Button(visible=bool(gguf)), downloads or None, gr.Code(modelfile, visible=bool(modelfile))


def check_html(paths: dict[str, Any]) -> str:
    """The export check in one line: F16 agreement with the merged model, stops, warnings."""
    check = paths.get("check") or {}
    if check.get("status") != "ok":
        return notice("The GGUF was not checked against the merged model (verify is off).", "info")
    f16, quant = check.get("f16", {}), check.get("quantised")
    text = (f"Checked on {check.get('prompts')} prompts ({esc(check.get('prompts_from', ''))}): the F16 GGUF picks "
            f"the merged model's token {f16.get('agreement', 0):.0%} of the time ({f16.get('within_noise', 0):.0%} "
            f"within F16 noise), same chat template and stop tokens; answers ended: {esc(f16.get('stopped', '?'))}.")
    if quant:
        text += f" {esc(quant['file'])} agrees on {quant.get('agreement', 0):.0%} of tokens."
    warnings = "".join(notice(esc(w), "warn") for w in check.get("warnings", []))
    return notice(text, "ok") + warnings


SHOWN = [("gguf", "GGUF"), ("gguf_f16", "GGUF F16"), ("gguf_lora", "GGUF LoRA"), ("modelfile", "Modelfile"),
         ("merged", "merged model"), ("adapter", "PEFT adapter")]


def _downloads(paths: dict[str, Any]) -> list[Path]:
    """The files worth downloading: the chosen GGUF, the GGUF LoRA and the Modelfile.

    Folders (merged model, adapter) stay on disk; the F16 GGUF is offered only when it is the
    chosen one, since every download is copied into the upload cache first.
    """
    keys = ["gguf", "gguf_lora", "modelfile"]
    return [Path(paths[k]) for k in keys if paths.get(k) and Path(str(paths[k])).is_absolute()
            and Path(paths[k]).is_file()]


def _modelfile_text(paths: dict[str, Any]) -> str:
    path = paths.get("modelfile")
    return Path(path).read_text(encoding="utf-8") if path and Path(path).is_file() else ""
