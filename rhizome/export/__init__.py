"""Export stage: a run's LoRA adapter becomes files people run elsewhere.

`export_run` writes, under `runs/<id>/export/` (each file atomically):
  merged/            the base with the adapter folded in (HF safetensors + tokenizer)
  adapter/           the PEFT adapter as trained
  model-f16.gguf     llama.cpp GGUF written with the `gguf` package
  model-<quant>.gguf q8_0 or q4_k_m, quantised by llama.cpp itself
  adapter-lora.gguf  optional GGUF LoRA for llama.cpp's `lora_path` on the base GGUF
  Modelfile          for `ollama create`
  export.json        what was written (read by chat's model list)
"""
from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any

from ..config import ExportConfig
from ..events import ProgressFn, emit
from ..workspace import Workspace, write_json
from .gguf import quantize_gguf, read_hf_config, write_f16_gguf
from .lora_gguf import write_lora_gguf
from .merge import copy_adapter, locate_run, merge_adapter, save_merged
from .modelfile import write_modelfile

__all__ = ["export_run", "MANIFEST"]

MANIFEST = "export.json"


def export_run(ws: Workspace, run_id: str, config: ExportConfig | None = None,
               progress: ProgressFn | None = None) -> dict[str, Any]:
    """Merge, convert, quantise and describe run `run_id`; returns the written paths."""
    config = config or ExportConfig()
    run = locate_run(ws, run_id)
    out = run.run_dir / "export"
    total = 4 + (config.quant != "f16") + config.gguf_lora
    started = time.time()

    drop_stale(out, run.adapter_dir / "adapter_model.safetensors")
    emit(progress, "export", 0, total, message="merging the adapter into the base")
    model, tokenizer = merge_adapter(run)
    merged = save_merged(model, tokenizer, out / "merged")
    del model  # the merged weights are on disk now; free them before the GGUF pass
    gc.collect()
    adapter = copy_adapter(run.adapter_dir, out / "adapter")
    emit(progress, "export", 1, total, message="merged model saved")

    f16 = write_f16_gguf(merged, out / "model-f16.gguf", base_gguf=run.base_gguf,
                         name=f"{Path(run.base_spec).stem} + rhizome {run_id}", progress=progress)
    step = 2
    emit(progress, "export", step, total, message="F16 GGUF written")
    gguf_path = Path(f16["path"])
    if config.quant != "f16":
        gguf_path = quantize_gguf(gguf_path, out / f"model-{config.quant}.gguf", config.quant, config.threads)
        step += 1
        emit(progress, "export", step, total, message=f"quantised to {config.quant}")
    lora = None
    if config.gguf_lora:
        lora = write_lora_gguf(run.adapter_dir, read_hf_config(merged), out / "adapter-lora.gguf")
        step += 1
        emit(progress, "export", step, total, message="GGUF LoRA written")
    modelfile = write_modelfile(out / "Modelfile", gguf_path, config.system_prompt,
                                comment=f"Rhizome export of run {run_id} ({config.quant})")
    result = {
        "run_id": run_id, "quant": config.quant, "arch": f16["arch"],
        "merged": str(merged), "adapter": str(adapter), "gguf_f16": f16["path"], "gguf": str(gguf_path),
        "gguf_lora": str(lora) if lora else None, "base_gguf": str(run.base_gguf) if run.base_gguf else None,
        "modelfile": str(modelfile), "metadata_from": f16["metadata_from"],
        "sizes_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in out.glob("*.gguf")},
        "seconds": round(time.time() - started, 1),
    }
    write_json(out / MANIFEST, result)
    share_files(out)
    emit(progress, "export", total, total, message=f"exported to {out}")
    return result


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
