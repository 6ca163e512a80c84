"""PEFT LoRA adapter -> GGUF LoRA adapter that llama.cpp applies to the base GGUF (`lora_path`).

The file is tiny (the adapter's A and B matrices only) and lets llama.cpp serve the tuned model on
top of the original quantised base. Same naming as llama.cpp's convert_lora_to_gguf.py: each
target weight `blk.N.attn_q.weight` gets `...weight.lora_a` (r x in) and `...weight.lora_b`
(out x r), and the adapter's alpha is stored once (llama.cpp scales by alpha / r).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..workspace import UserError, atomic_path
from .gguf import gguf_architecture, permute_rotary


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise UserError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def effective_alpha(config: dict[str, Any]) -> float:
    """One alpha for the whole adapter, as llama.cpp applies it (scale = alpha / r)."""
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise UserError("only plain LoRA adapters can be written as GGUF LoRA (not DoRA or other PEFT types)")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise UserError("a GGUF LoRA has one rank and alpha; this adapter uses per-module patterns — "
                        "use the merged GGUF")
    alpha, rank = float(config["lora_alpha"]), int(config["r"])
    # rsLoRA scales by alpha / sqrt(r); express it as an alpha over r.
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def _pairs(tensors: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """module weight name -> (A, B), from PEFT keys like `base_model.model.X.q_proj.lora_A.weight`."""
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0].removeprefix("base_model.model.")
                pairs.setdefault(module + ".weight", {})[part] = value
                break
        else:
            raise UserError(f"adapter tensor {key} is not a LoRA matrix (modules_to_save/embeddings are not "
                            "supported in a GGUF LoRA) — use the merged GGUF")
    broken = [m for m, ab in pairs.items() if len(ab) != 2]
    if broken:
        raise UserError(f"adapter is missing A or B for {broken[:3]}")
    return {m: (ab["lora_A"], ab["lora_B"]) for m, ab in pairs.items()}


def write_lora_gguf(adapter_dir: Path, base_config: dict[str, Any], out: Path) -> Path:
    """Write the GGUF LoRA for a PEFT adapter trained on the model described by `base_config`."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    config = read_adapter_config(adapter_dir)
    alpha = effective_alpha(config)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError(f"{adapter_dir} has no adapter_model.safetensors")
    arch = gguf_architecture(base_config, adapter_dir)
    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, base_config["num_hidden_layers"])
    n_head = base_config["num_attention_heads"]
    n_kv = base_config.get("num_key_value_heads") or n_head
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for module, (a, b) in _pairs(load_file(str(weights))).items():
        name = names.get_name(module, try_suffixes=(".weight",))
        if name is None:
            raise UserError(f"adapter targets {module}, which has no GGUF counterpart for {arch}")
        if arch == "llama" and module.endswith("q_proj.weight"):
            b = permute_rotary(b, n_head)  # W = B @ A, so permuting W's rows permutes B's rows
        elif arch == "llama" and module.endswith("k_proj.weight"):
            b = permute_rotary(b, n_kv)
        writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    with atomic_path(out) as tmp:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out)
