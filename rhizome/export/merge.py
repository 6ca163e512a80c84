"""Fold a run's LoRA adapter into its base weights and save a standard Hugging Face folder.

The run folder tells us the base (`config.yaml`'s `model`, else the adapter's
`base_model_name_or_path`); `rhizome.models.load_causal_lm` resolves it offline (the bundled GGUF
is dequantised once). The merged folder (safetensors + tokenizer + chat template) loads with
plain `from_pretrained`, and is what llama.cpp's converter turns into a GGUF.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..models import BUNDLED, GEMMA, resolve_gguf
from ..workspace import UserError, Workspace, read_json


@dataclass(frozen=True)
class RunAdapter:
    """Where a run's adapter is and what it was trained on."""

    run_id: str
    run_dir: Path
    adapter_dir: Path
    base_spec: str
    trust_remote_code: bool = False

    @property
    def base_gguf(self) -> Path | None:
        """The GGUF the base came from (bundled or a .gguf path): its metadata is carried over."""
        if self.base_spec in (BUNDLED, GEMMA, "base") or self.base_spec.endswith(".gguf"):
            return resolve_gguf(self.base_spec)
        return None


def locate_run(ws: Workspace, run_id: str) -> RunAdapter:
    """The run's adapter and base model, or a UserError saying what is missing."""
    run_dir = ws.run_dir(run_id)
    if not run_id or not run_dir.is_dir():
        known = ", ".join(ws.list_runs()[:5]) or "none yet"
        raise UserError(f"run {run_id!r} not found in {ws.runs} (runs: {known}); train one first")
    adapter_dir = run_dir / "adapter"
    adapter_config = read_json(adapter_dir / "adapter_config.json")
    if adapter_config is None or not (adapter_dir / "adapter_model.safetensors").is_file():
        raise UserError(f"run {run_id} has no finished adapter in {adapter_dir}: let training finish "
                        "(or resume it) before exporting")
    train = _read_train_config(run_dir / "config.yaml")
    spec = train.get("model") or adapter_config.get("base_model_name_or_path")
    if not spec:
        raise UserError(f"run {run_id}: neither config.yaml nor the adapter names the base model")
    return RunAdapter(run_id, run_dir, adapter_dir, str(spec), bool(train.get("trust_remote_code", False)))


def _read_train_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from exc
    return data if isinstance(data, dict) else {}


def merge_adapter(run: RunAdapter) -> tuple[Any, Any]:
    """Base model with the LoRA folded in (plain weights, no PEFT wrappers) and its tokenizer."""
    from peft import PeftModel

    from ..models import load_causal_lm

    model, tokenizer = load_causal_lm(run.base_spec, trust_remote_code=run.trust_remote_code)
    try:
        peft_model = PeftModel.from_pretrained(model, str(run.adapter_dir))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"adapter {run.adapter_dir} does not fit base {run.base_spec}: {exc}") from exc
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, tokenizer


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp folder beside `target`; on success it replaces `target` as a whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_merged(model: Any, tokenizer: Any, out_dir: Path, base_spec: str | None = None) -> Path:
    """safetensors + config + tokenizer (with its chat template), written atomically."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if base_spec:
            keep_tokenizer_class(base_spec, tmp)
    return Path(out_dir)


def keep_tokenizer_class(base_spec: str, merged: Path) -> None:
    """The base's declared tokenizer class, which transformers 5 rewrites on save: llama.cpp's
    converter reads it (Phi-3/Phi-4 models declare GPT2Tokenizer for a byte-level vocabulary)."""
    import json

    from ..models import resolve_train_model

    base = Path(resolve_train_model(base_spec)) / "tokenizer_config.json"
    ours = merged / "tokenizer_config.json"
    if not base.is_file() or not ours.is_file():
        return
    declared = json.loads(base.read_text(encoding="utf-8")).get("tokenizer_class")
    config = json.loads(ours.read_text(encoding="utf-8"))
    if declared and config.get("tokenizer_class") != declared:
        ours.write_text(json.dumps({**config, "tokenizer_class": declared}, indent=2), encoding="utf-8")


def copy_adapter(adapter_dir: Path, out_dir: Path) -> Path:
    """The PEFT adapter as trained (adapter_config.json + adapter_model.safetensors, tokenizer if any)."""
    with atomic_dir(out_dir) as tmp:
        for item in Path(adapter_dir).iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
    return Path(out_dir)
