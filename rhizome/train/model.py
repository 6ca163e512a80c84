"""The model of a run: precision, loading the base model and tokenizer, its LoRA config, and
what an out-of-memory failure means for the settings. Processes and threads: `processes.py`."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

import torch

from ..config import TrainConfig
from ..models import Hardware, load_causal_lm, resolve_train_model
from ..workspace import UserError


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Native bf16 matmuls (AVX512-BF16 or AMX) through oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(config: TrainConfig, hw: Hardware) -> str:
    """bf16 | fp16 | fp32 for autocast; bf16 on CPUs only where they have native bf16 units."""
    wanted = config.precision
    if wanted == "auto":
        if hw.device == "cuda":
            return "bf16" if hw.dtype == "bfloat16" else "fp16"
        if hw.device == "cpu" and cpu_supports_bf16():
            return "bf16"
        return "fp32"
    if wanted == "fp16" and hw.device != "cuda":
        raise UserError("precision fp16 needs a CUDA GPU: use bf16 or fp32 on this machine")
    if wanted == "bf16" and hw.device == "cpu" and not cpu_supports_bf16():
        raise UserError("this CPU has no native bf16 support: use precision fp32")
    return wanted


def load_model(config: TrainConfig, hw: Hardware, precision: str) -> tuple[Any, Any]:
    """Base model and tokenizer, offline: bf16 weights on GPUs training in bf16, 4-bit with QLoRA,
    else float32 (on CPUs, fp32 weights under bf16 autocast measured faster than bf16 weights)."""
    if not config.qlora:
        dtype = "bfloat16" if hw.device == "cuda" and precision == "bf16" else "float32"
        return load_causal_lm(config.model, dtype=dtype, trust_remote_code=config.trust_remote_code)
    if hw.device != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("qlora needs a CUDA GPU and the bitsandbytes package: turn qlora off on this machine")
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    name = resolve_train_model(config.model)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16 if hw.dtype == "bfloat16" else torch.float16)
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=config.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(name, quantization_config=quant,
                                                 trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# Fused attention projections of well-known families (in place of separate q/k/v_proj) and the
# attention output projection that goes with each: Phi-3, GPT-NeoX/Falcon/BLOOM, MPT, Baichuan, GPT-2.
FUSED_ATTENTION = (("qkv_proj", "o_proj"), ("query_key_value", "dense"), ("Wqkv", "out_proj"),
                   ("W_pack", "o_proj"), ("c_attn", None))


def default_target_modules() -> list[str]:
    return list(TrainConfig().target_modules)


def resolve_target_modules(config: TrainConfig, names: set[str]) -> tuple[list[str], str | None]:
    """The modules LoRA wraps, and a note when the defaults were mapped to this model's fused
    projections (a model without q/k/v_proj but with, e.g., Phi-3's qkv_proj). An explicit list
    is taken as given."""
    wanted = list(config.target_modules)
    if wanted != default_target_modules() or all(m in names for m in wanted):
        return wanted, None
    for fused, out in FUSED_ATTENTION:
        if fused in names:
            mapped = [fused] + ([out] if out and out in names else [])
            return mapped, (f"target modules: {config.model} has no {', '.join(m for m in wanted if m not in names)}; "
                            f"the defaults map to its fused attention projections {', '.join(mapped)}")
    return wanted, None


def lora_config(config: TrainConfig, model: Any) -> tuple[Any, str | None]:
    """A PEFT LoraConfig, refusing target modules the model does not have, and the note of
    `resolve_target_modules` (None when the modules are used as given)."""
    from peft import LoraConfig

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets, note = resolve_target_modules(config, names)
    missing = [m for m in targets if m not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise UserError(f"target_modules {missing} not found in {config.model}; its linear layers are: "
                        f"{', '.join(linear)}")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM"), note


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate")
    )


def out_of_memory_error(config: TrainConfig, exc: BaseException) -> UserError:
    return UserError(
        f"out of memory with batch_size={config.batch_size}, max_length={config.max_length}: lower batch_size "
        f"(raise grad_accum to keep the effective batch), lower max_length or lora_r ({exc.__class__.__name__})"
    )
