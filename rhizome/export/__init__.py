"""Export stage: a run's LoRA adapter becomes files people run elsewhere, checked before they are offered.

`export_run` writes, under `runs/<id>/export/`:
  merged/            the base with the adapter folded in (HF safetensors + tokenizer)
  adapter/           the PEFT adapter as trained
  model-f16.gguf     converted by llama.cpp's own convert_hf_to_gguf.py (`converters.py`)
  model-<quant>.gguf bf16 (converter) or q8_0 / q4_k_m / q5_k_m / q6_k (llama.cpp's quantiser)
  adapter-lora.gguf  optional GGUF LoRA (convert_lora_to_gguf.py) for llama.cpp's `lora_path`
  Modelfile          for `ollama create`, from the model's own chat template
  export.json        what was written, converter version, and the export check (`verify.py`)

The GGUFs are written into `.pending/` and moved into place only once the check passed, so a
crash or a failed check never leaves a GGUF that chat would list; a failed export's files and
report go to `failed/` instead, and a rerun starts from a clean `.pending/`.
"""
from __future__ import annotations

import gc
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..config import ExportConfig
from ..events import ProgressFn, emit
from ..workspace import UserError, Workspace, write_json
from .converters import convert_hf, convert_lora, converter_version
from .merge import copy_adapter, locate_run, merge_adapter, save_merged
from .modelfile import write_modelfile
from .quantize import quantize_gguf

__all__ = ["export_run", "MANIFEST"]

MANIFEST = "export.json"
PENDING, FAILED = ".pending", "failed"


def export_run(ws: Workspace, run_id: str, config: ExportConfig | None = None,
               progress: ProgressFn | None = None) -> dict[str, Any]:
    """Merge, convert, quantise, check and describe run `run_id`; returns what export.json says."""
    config = config or ExportConfig()
    run = locate_run(ws, run_id)
    out = run.run_dir / "export"
    total = 5 + (config.quant != "f16") + config.gguf_lora
    started = time.time()
    version = converter_version()
    if version.mismatch:
        emit(progress, "export", 0, total, message=f"warning: {version.mismatch}")

    pending = fresh_pending(out)
    drop_stale(out, run.adapter_dir / "adapter_model.safetensors")
    emit(progress, "export", 0, total, message="merging the adapter into the base")
    model, tokenizer = merge_adapter(run)
    merged = save_merged(model, tokenizer, out / "merged", run.base_spec)
    del model  # the merged weights are on disk now; free them before the conversion
    gc.collect()
    adapter = copy_adapter(run.adapter_dir, out / "adapter")
    step = 1
    emit(progress, "export", step, total, message="merged model saved; converting with llama.cpp")

    name = f"{Path(run.base_spec).name} + rhizome {run_id}"
    f16 = convert_hf(merged, pending / "model-f16.gguf", "f16", name, run.base_gguf)
    step += 1
    emit(progress, "export", step, total, message="F16 GGUF written by convert_hf_to_gguf.py")
    chosen = f16
    if config.quant == "bf16":
        chosen = convert_hf(merged, pending / "model-bf16.gguf", "bf16", name, run.base_gguf)
    elif config.quant != "f16":
        chosen = quantize_gguf(f16, pending / f"model-{config.quant}.gguf", config.quant, config.threads)
    if config.quant != "f16":
        step += 1
        emit(progress, "export", step, total, message=f"{config.quant} GGUF written")
    lora = None
    if config.gguf_lora:
        lora = convert_lora(run.adapter_dir, merged, pending / "adapter-lora.gguf")
        step += 1
        emit(progress, "export", step, total, message="GGUF LoRA written by convert_lora_to_gguf.py")
    modelfile = write_modelfile(pending / "Modelfile", chosen, config.system_prompt, merged_dir=merged,
                                comment=f"Rhizome export of run {run_id} ({config.quant})")
    step += 1
    emit(progress, "export", step, total, message="checking the GGUF against the merged model")
    check = run_check(ws, config, merged, f16, chosen)

    files = [p.name for p in pending.iterdir()]
    result = {
        "run_id": run_id, "quant": config.quant, "arch": gguf_arch(f16), "status": check.get("status", "unchecked"),
        "merged": str(merged), "adapter": str(adapter),
        "gguf_f16": str(out / f16.name), "gguf": str(out / chosen.name),
        "gguf_lora": str(out / lora.name) if lora else None,
        "base_gguf": str(run.base_gguf) if run.base_gguf else None, "modelfile": str(out / modelfile.name),
        "converter": version.as_dict(), "check": check,
        "sizes_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in pending.glob("*.gguf")},
        "seconds": round(time.time() - started, 1),
    }
    if check.get("status") == "failed":
        report = fail(out, pending, result)
        raise UserError(f"export of {run_id} failed its check — {'; '.join(check['problems'])} "
                        f"(files and report kept in {report.parent})")
    publish(pending, out, files)
    write_json(out / MANIFEST, result)
    share_files(out)
    emit(progress, "export", total, total, message=f"exported to {out}" + "".join(f"; {w}" for w in check.get("warnings", [])))
    return result


def run_check(ws: Workspace, config: ExportConfig, merged: Path, f16: Path, chosen: Path) -> dict[str, Any]:
    if not config.verify:
        return {"status": "unchecked"}
    from .verify import validation_prompts, verify_export

    prompts, origin = validation_prompts(ws.dataset, config.verify_prompts)
    check = verify_export(merged, f16, prompts, config.verify_tokens, quantised=chosen)
    check["prompts_from"] = origin
    return check


def gguf_arch(path: Path) -> str | None:
    from ..chat.llm import inspect_gguf

    return inspect_gguf(path).get("general.architecture")


def fresh_pending(out: Path) -> Path:
    """An empty `.pending/`, and no temp files left by an interrupted export."""
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".*.tmp*"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    pending = out / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir()
    return pending


def publish(pending: Path, out: Path, files: list[str]) -> None:
    """Move the checked files into place, each in one rename (a GGUF appears whole or not at all)."""
    for name in files:
        os.replace(pending / name, out / name)
    shutil.rmtree(pending, ignore_errors=True)
    shutil.rmtree(out / FAILED, ignore_errors=True)


def fail(out: Path, pending: Path, result: dict[str, Any]) -> Path:
    """Keep a failed export's files and report in `failed/`, out of chat's reach."""
    failed = out / FAILED
    shutil.rmtree(failed, ignore_errors=True)
    os.replace(pending, failed)
    report = failed / MANIFEST
    write_json(report, {**result, "gguf": str(failed / Path(result["gguf"]).name),
                        "gguf_f16": str(failed / Path(result["gguf_f16"]).name)})
    return report


def share_files(folder: Path) -> None:
    """Atomic writes create files readable by their owner only; exports are meant to be shared
    (Ollama's server, LM Studio, another user), so give them the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def drop_stale(folder: Path, adapter: Path) -> None:
    """Remove GGUFs exported from an older adapter (a resumed run): keeping other quantisations of
    the same adapter is fine, offering the old weights under the run's name is not."""
    if folder.is_dir():
        for path in [*folder.glob("model-*.gguf"), folder / "adapter-lora.gguf"]:
            if path.is_file() and path.stat().st_mtime < adapter.stat().st_mtime:
                path.unlink()
