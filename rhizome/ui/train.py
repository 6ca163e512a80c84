"""Train tab: LoRA settings with hardware-sized defaults, the equivalent CLI command, Start/Stop.

The run itself lives in `rhizome.jobs` (a background thread, one training per workspace); the
right-hand side (`train_view.py`) reads `runs/<id>/events.jsonl` back every second, so a
reloaded page, or one opened on a run the CLI started, re-attaches to it.
"""
from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .. import jobs
from ..config import TrainConfig, invalid_fields, train_defaults
from ..models import GEMMA, GEMMA_GGUF_NAME, cache_dir, gemma_terms_path, local_hf_models
from ..workspace import UserError
from . import train_view
from .common import Context, esc, guard, notice

BUNDLED_LABEL = "bundled"
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def defaults_for(ctx: Context, device: str = "cpu") -> TrainConfig:
    """The core's defaults for this hardware (a Space counts as a small shared machine)."""
    return train_defaults(device, small=ctx.on_space)


def build(ctx: Context) -> SimpleNamespace:
    d = defaults_for(ctx)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=360):
            gr.Markdown("### Fine-tune with LoRA")
            hardware = gr.HTML(notice("Detecting hardware…", "info"))
            w = _settings(ctx, d)
            errors = gr.HTML(elem_id="rz-train-errors")  # a refused value, named, right under the settings
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="rz-train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="rz-train-stop")
            cli = gr.Code(cli_command(ctx, d), language="shell", label="Equivalent command", interactive=False,
                          lines=2, max_lines=6, wrap_lines=True, elem_id="rz-train-cli")
        with gr.Column(scale=7, min_width=440):
            view = train_view.build(ctx)
    values = [w[k] for k in FIELDS]
    for comp in values:
        comp.change(guard(lambda *v: preview_command(ctx, *v)), values, [cli, errors])
    started = start.click(guard(lambda *v: start_run(ctx, *v)), values, [view.run],
                          validator=lambda *v: field_checks(ctx, *v))  # refused values marked on their fields
    started.success(*view.refresh)
    stop.click(guard(lambda: stop_run(ctx)), None, None)
    view.preview_btn.click(guard(lambda *v: train_view.token_preview(ctx, _config(ctx, *v))), values, [view.preview])
    return SimpleNamespace(hardware=hardware, view=view, settings=values, started=started)


# ---- settings -------------------------------------------------------------------------------

FIELDS = ["model", "trust_remote_code", "max_steps", "batch_size", "grad_accum", "learning_rate", "max_length",
          "lora_r", "lora_alpha", "lora_dropout", "target_modules", "weighted_sampling", "grounded_fraction", "packing", "qlora",
          "eval_steps", "save_steps", "logging_steps", "save_total_limit", "early_stopping_patience", "seed",
          "knowledge_test_size", "resume"]
LABELS: dict[str, str] = {}  # field -> the label of its widget, for error messages


def _settings(ctx: Context, d: TrainConfig) -> dict[str, gr.components.Component]:
    w: dict[str, Any] = {}
    with gr.Group():
        w["model"] = gr.Dropdown(_model_choices(ctx), value=BUNDLED_LABEL, allow_custom_value=True, label="Base model",
                                 info="bundled = SmolLM2-135M-Instruct (offline); gemma3-270m = Google's Gemma 3 "
                                      "270M base (offline, Gemma Terms of Use). Or an HF id already in the local "
                                      "cache, or a folder / .gguf under the workspace's models/")
        terms = gemma_terms_path()
        if terms:  # shown while Gemma is the chosen model
            notice_html = gr.HTML(
                f"<p class='rz-muted'>Gemma 3 270M is provided under the <a href='https://ai.google.dev/gemma/terms' "
                f"target='_blank'>Gemma Terms of Use</a>; a copy ships with it: <code>{esc(terms)}</code></p>",
                visible=False, elem_id="rz-train-gemma-terms")
            w["model"].change(lambda model: gr.HTML(visible=model == GEMMA), w["model"], notice_html)
        w["trust_remote_code"] = gr.Checkbox(False, label="Trust remote code (only for models you trust)")
    with gr.Group():
        with gr.Row():
            w["max_steps"] = gr.Number(d.max_steps, precision=0, minimum=1, label="Steps", min_width=90)
            w["batch_size"] = gr.Number(d.batch_size, precision=0, minimum=1, label="Batch size", min_width=90)
            w["grad_accum"] = gr.Number(d.grad_accum, precision=0, minimum=1, label="Grad accum.", min_width=90)
        with gr.Row():
            w["learning_rate"] = gr.Number(d.learning_rate, label="Learning rate")
            w["max_length"] = gr.Number(d.max_length, precision=0, minimum=16, label="Max tokens per example")
    with gr.Group():
        with gr.Row():
            w["lora_r"] = gr.Number(d.lora_r, precision=0, minimum=1, label="LoRA r", min_width=90)
            w["lora_alpha"] = gr.Number(d.lora_alpha, precision=0, minimum=1, label="LoRA alpha", min_width=90)
            w["lora_dropout"] = gr.Number(d.lora_dropout, minimum=0, maximum=0.9, label="LoRA dropout", min_width=90)
        w["target_modules"] = gr.CheckboxGroup(MODULES, value=d.target_modules, label="Target modules")
    with gr.Accordion("Sampling, evaluation, checkpoints", open=False, elem_id="rz-train-advanced"):
        with gr.Row():
            w["weighted_sampling"] = gr.Checkbox(d.weighted_sampling, label="IPF-weighted sampling", min_width=90)
            w["packing"] = gr.Checkbox(d.packing, label="Packing", min_width=90)
            w["qlora"] = gr.Checkbox(d.qlora, label="QLoRA 4-bit (CUDA)", min_width=90)
        w["grounded_fraction"] = gr.Slider(0, 1, value=d.grounded_fraction, step=0.05, label="Grounded share",
                                           info="examples shown with sources from memory, as the chat asks, "
                                                "their replies citing them (keeps the tuned model citing)")
        with gr.Row():
            w["eval_steps"] = gr.Number(d.eval_steps, precision=0, minimum=1, label="Eval every", min_width=90)
            w["save_steps"] = gr.Number(d.save_steps, precision=0, minimum=1, label="Save every", min_width=90)
            w["logging_steps"] = gr.Number(d.logging_steps, precision=0, minimum=1, label="Log every", min_width=90)
        with gr.Row():
            w["save_total_limit"] = gr.Number(d.save_total_limit, precision=0, minimum=1, label="Keep best",
                                              min_width=90)
            w["early_stopping_patience"] = gr.Number(d.early_stopping_patience, precision=0, minimum=0,
                                                     label="Patience", info="0 = off", min_width=90)
            w["seed"] = gr.Number(d.seed, precision=0, label="Seed", min_width=90)
        w["knowledge_test_size"] = gr.Number(d.knowledge_test_size, precision=0, minimum=0,
                                             label="Knowledge-test prompts (base vs tuned, after training)")
        w["resume"] = gr.Checkbox(False, label="Resume the latest run from its newest checkpoint")
    for key, comp in w.items():  # stable hooks for the browser tests
        comp.elem_id = f"rz-train-{key.replace('_', '-')}"
        LABELS.setdefault(key, getattr(comp, "label", None) or key)
    return w


def _model_choices(ctx: Context) -> list[str]:
    found = []
    if ctx.ws.models.is_dir():
        for p in sorted(ctx.ws.models.iterdir()):
            if p.suffix == ".gguf" or (p / "config.json").is_file():
                found.append(f"models/{p.name}")
    gemma = [GEMMA] if (cache_dir() / GEMMA_GGUF_NAME).is_file() else []
    return [BUNDLED_LABEL, *gemma, *found, *local_hf_models()]


def widget_defaults(ctx: Context, device: str) -> list[Any]:
    """Updates for the settings widgets: the defaults for this hardware (model choice kept)."""
    ctx.device = device  # the equivalent command leaves out what the CLI defaults to on this machine
    d = defaults_for(ctx, device)
    return [gr.update(value=getattr(d, k)) if k not in ("model", "trust_remote_code", "resume") else gr.update()
            for k in FIELDS]


def _config(ctx: Context, *values: Any) -> TrainConfig:
    """Widget values -> TrainConfig; model paths must lie inside the workspace. An invalid value
    raises a UserError naming its field (`setting_errors` tells which, for the form)."""
    model, clean = _values(ctx, *values)
    errors = setting_errors(clean)
    if errors:
        raise UserError("; ".join(f"{LABELS.get(k, k)}: {msg}" for k, msg in errors.items()))
    return TrainConfig(model=model, **clean)


def _values(ctx: Context, *values: Any) -> tuple[str, dict[str, Any]]:
    given = dict(zip(FIELDS, values))
    model = str(given.pop("model") or BUNDLED_LABEL).strip()
    # Anything that names a file or folder (even one relative to the app's own folder) must lie
    # inside the workspace; plain HF ids are looked up in the local HF cache only (offline).
    if model != BUNDLED_LABEL and (_looks_like_path(model) or Path(model).expanduser().exists()):
        model = str(ctx.inside(model))
    kinds = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    clean = {}
    for key, value in given.items():
        if value is None:
            continue
        kind = kinds.get(key)
        clean[key] = kind(value) if kind in (int, float, bool) else value
    clean["target_modules"] = list(given.get("target_modules") or [])
    return model, clean


def setting_errors(values: dict[str, Any]) -> dict[str, str]:
    """{field: message} for every setting the core refuses."""
    return invalid_fields(TrainConfig, values)


def field_checks(ctx: Context, *values: Any) -> list[dict]:
    """One `gr.validate` per setting, so Start marks each refused value on its own field."""
    try:
        _, clean = _values(ctx, *values)
        errors = setting_errors(clean)
    except UserError as exc:  # the model path: outside the workspace
        errors = {"model": str(exc)}
    return [gr.validate(key not in errors, errors.get(key, "")) for key in FIELDS]


def preview_command(ctx: Context, *values: Any) -> tuple[str, str]:
    """The equivalent command, and a note naming each invalid setting (empty when all are valid):
    never a command for settings other than those on the page."""
    try:
        model, clean = _values(ctx, *values)
    except UserError as exc:
        return f"# not runnable: {exc}", notice(esc(str(exc)), "error")
    errors = setting_errors(clean)
    if errors:
        lines = "".join(f"<li><b>{esc(LABELS.get(k, k))}</b>: {esc(msg)}</li>" for k, msg in errors.items())
        return ("# not runnable until the settings marked above are fixed",
                notice(f"Please fix these settings:<ul>{lines}</ul>", "error"))
    return cli_command(ctx, TrainConfig(model=model, **clean)), ""


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".gguf") or spec.startswith((".", "/", "~", "models/")) or spec.count("/") > 1


def cli_command(ctx: Context, config: TrainConfig) -> str:
    """`python -m rhizome train` with a flag for every setting that differs from the default."""
    parts = ["python", "-m", "rhizome", "train", "--workspace", str(ctx.ws.root)]
    defaults = train_defaults(ctx.device)  # what the CLI starts from on this machine
    for f in dataclasses.fields(TrainConfig):
        value, default = getattr(config, f.name), getattr(defaults, f.name)
        if value == default or f.name == "run_id":
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, list):
            parts += [flag, ",".join(map(str, value))]
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(p) for p in parts)


# ---- start / stop / watch ---------------------------------------------------------------------


def start_run(ctx: Context, *values: Any) -> gr.Dropdown:
    config = _config(ctx, *values)
    if not ctx.ws.split_path("train").is_file():
        raise UserError("no dataset yet: build one in Data → Build dataset first")
    job = jobs.start_training(ctx.ws, config)
    gr.Info(f"Training started: {job.run_id}")
    return train_view.run_choices(ctx, job.run_id)


def stop_run(ctx: Context) -> None:
    run_id = jobs.stop_training(ctx.ws)
    if run_id is None:
        raise UserError("no training is running")
    gr.Info(f"Stopping {run_id} after the current step; its last checkpoint is kept.")
