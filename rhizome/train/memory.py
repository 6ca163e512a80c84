"""How much memory a training run will need, known before the model is loaded.

`estimate_memory` reads only the model's config (config.json, no weights) and sums what a LoRA
run holds at its peak, every example taken as max_length tokens long: the frozen weights at the
load dtype; the LoRA weights with their gradients and Adam's two moments (fp32); the activations
kept for the backward pass (batch × max_length × layers × bytes per hidden and MLP unit, or only
each layer's input under gradient checkpointing on a GPU); the logits over the vocabulary and
their loss; and the process itself (torch, transformers, the tokenizer) plus a margin.
`check_memory` compares that with what the device has free (CUDA: `torch.cuda.mem_get_info`; CPU
and Apple MPS: the system's available memory; or $RHIZOME_MEMORY_LIMIT_MB) and refuses a run that
cannot fit, with both numbers and what to change. `plan_memory` does both for a run's config. The
factors were calibrated against measured peaks (bench/RESULTS.md, "Memory estimate before training").
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from ..config import TrainConfig
from ..workspace import UserError

MEMORY_LIMIT_ENV = "RHIZOME_MEMORY_LIMIT_MB"
MB = 2**20
# Bytes kept for the backward pass per token and layer, per unit of the hidden and MLP sizes, under
# 16-bit autocast (keyed 2: float32 norms and rotary embeddings, 16-bit projections, the LoRA dropout
# copies of the projection inputs, the MLP's gate, up and activation) and in float32 (keyed 4).
# Attention scores are not kept (SDPA kernels). The LM head runs only where a next token is trained
# (loss.py), at worst every position: its logits, their float32 copy, log-softmax and gradient.
# Calibrated on SmolLM2-135M, CPU, 8 x 384 tokens all trained: measured peaks 6.7 GB (bf16 autocast)
# and 8.2 GB (float32), estimated 7.5 and 9.4 GB; Gemma 3 270M, 2 x 384: 5.1 GB, estimated 5.6 GB
# (bench/RESULTS.md, "Memory estimate before training").
HIDDEN_BYTES = {2: 48, 4: 56}
MLP_BYTES = {2: 8, 4: 16}
LOGIT_BYTES = {2: 14, 4: 16}
PROCESS_MB = {"cpu": 900, "mps": 900, "cuda": 400}  # interpreter + libraries / allocator and cuBLAS workspaces
MARGIN = 1.1  # allocator fragmentation, the optimizer's temporaries
CHECKPOINTING_ABOVE = 1_000_000_000  # parameters: below, recomputation costs ~30% time for little memory


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak a run is expected to reach, in MB, by part."""

    device: str
    parameters: int
    weights_mb: float
    lora_mb: float
    activations_mb: float
    logits_mb: float
    process_mb: float
    total_mb: float
    available_mb: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        free = f" of {self.available_mb / 1024:.1f} GB available" if self.available_mb else ""
        return (f"memory estimate {self.total_mb / 1024:.1f} GB{free} (weights {self.weights_mb:.0f} MB, "
                f"activations {self.activations_mb + self.logits_mb:.0f} MB, LoRA + Adam {self.lora_mb:.0f} MB)")


def model_shape(model_dir: str, trust_remote_code: bool = False) -> dict[str, int] | None:
    """Sizes of a causal LM from its config alone (AutoConfig maps each family's names), or None
    when the config cannot be read offline."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError):
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden, layers = getattr(text, "hidden_size", None), getattr(text, "num_hidden_layers", None)
    vocab = getattr(text, "vocab_size", None)
    if not (hidden and layers and vocab):
        return None
    heads = getattr(text, "num_attention_heads", None) or max(1, hidden // 64)
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    return {"hidden": hidden, "layers": layers, "vocab": vocab, "heads": heads, "head_dim": head_dim,
            "kv_heads": getattr(text, "num_key_value_heads", None) or heads,
            "intermediate": getattr(text, "intermediate_size", None) or 4 * hidden,
            "experts": getattr(text, "num_local_experts", None) or getattr(text, "num_experts", None) or 1,
            "tied": int(bool(getattr(config, "tie_word_embeddings", True)))}


def count_parameters(s: dict[str, int]) -> int:
    """Parameters of a decoder-only transformer of this shape (gated MLP, as nearly all are now)."""
    attention = s["hidden"] * s["head_dim"] * (2 * s["heads"] + 2 * s["kv_heads"])
    mlp = 3 * s["hidden"] * s["intermediate"] * s["experts"]
    embeddings = s["vocab"] * s["hidden"] * (1 if s["tied"] else 2)
    return s["layers"] * (attention + mlp + 2 * s["hidden"]) + s["hidden"] + embeddings  # norms: 2 per layer + final


def lora_parameters(s: dict[str, int], targets: list[str], r: int) -> int:
    """r × (in + out) for each targeted projection of each layer."""
    h, q, kv, i = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"], s["intermediate"]
    sizes = {"q_proj": h + q, "k_proj": h + kv, "v_proj": h + kv, "o_proj": q + h, "gate_proj": h + i,
             "up_proj": h + i, "down_proj": i + h, "qkv_proj": h + q + 2 * kv, "query_key_value": h + q + 2 * kv}
    return s["layers"] * r * sum(sizes.get(t, 2 * h) for t in targets)


def estimate_memory(s: dict[str, int], config: TrainConfig, device: str, weight_bytes: float, act_bytes: int,
                    checkpointing: bool, processes: int = 1) -> MemoryEstimate:
    """The peak of one run on `device` (CPU: all `processes` of this machine together); every
    example is taken as max_length tokens long (the longest batch sets the peak)."""
    params = count_parameters(s)
    tokens = config.batch_size * config.max_length
    per_layer = HIDDEN_BYTES[act_bytes] * s["hidden"] + MLP_BYTES[act_bytes] * s["intermediate"]  # per token
    if checkpointing and device != "cpu":  # each layer's input is kept; one layer at a time is recomputed
        activations = tokens * (s["hidden"] * s["layers"] * act_bytes + per_layer)
    else:  # on CPUs the freed recomputation buffers stay in the process: measured no lower peak
        activations = tokens * per_layer * s["layers"]
    logits = tokens * s["vocab"] * LOGIT_BYTES[act_bytes]
    per_process = {
        "weights_mb": params * weight_bytes / MB,
        "lora_mb": lora_parameters(s, config.target_modules, config.lora_r) * 16 / MB,  # fp32 w, grad, 2 moments
        "activations_mb": activations / MB,
        "logits_mb": logits / MB,
        "process_mb": float(PROCESS_MB.get(device, 900)),
    }
    n = processes if device != "cuda" else 1  # GPUs: one process per device
    parts = {k: v * n for k, v in per_process.items()}
    return MemoryEstimate(device, params, total_mb=sum(parts.values()) * MARGIN, **parts)


def available_mb(device: str) -> float | None:
    """Memory this run may use: $RHIZOME_MEMORY_LIMIT_MB, else the GPU's free memory (CUDA), else
    the system's available memory plus what this process already holds (CPU; Apple MPS shares
    it: the estimate counts the process itself); None when unknown."""
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        try:
            return float(limit)
        except ValueError as exc:
            raise UserError(f"{MEMORY_LIMIT_ENV}={limit!r} is not a number of MB") from exc
    if device == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0] / MB
    try:
        import psutil

        return (psutil.virtual_memory().available + psutil.Process().memory_info().rss) / MB
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            free = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
        with open("/proc/self/statm", encoding="ascii") as fh:
            own = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return (free + own) / MB
    except (OSError, StopIteration, ValueError):
        return None


def check_memory(estimate: MemoryEstimate, available: float | None) -> MemoryEstimate:
    """The estimate with the available figure, or a UserError when the run cannot fit."""
    estimate = MemoryEstimate(**{**asdict(estimate), "available_mb": available})
    if available is not None and estimate.total_mb > available:
        where = "GPU memory free" if estimate.device == "cuda" else "memory available"
        gpu = ", turn gradient_checkpointing on or use qlora" if estimate.device == "cuda" else ""
        raise UserError(
            f"this run needs about {estimate.total_mb / 1024:.1f} GB but only {available / 1024:.1f} GB of {where} "
            f"(weights {estimate.weights_mb:.0f} MB, activations {estimate.activations_mb + estimate.logits_mb:.0f} MB "
            f"for batch_size x max_length tokens): lower batch_size (raise grad_accum to keep the effective batch) "
            f"or max_length{gpu}; {MEMORY_LIMIT_ENV} sets the figure to compare with")
    return estimate


def plan_memory(config: TrainConfig, device: str, precision: str, processes: int = 1) -> MemoryEstimate | None:
    """The run's estimate, checked against the available memory (a UserError when it cannot fit);
    None when the model's config cannot be read offline (loading it will then say why)."""
    from ..models import resolve_train_model

    shape = model_shape(resolve_train_model(config.model), config.trust_remote_code)
    if shape is None:
        return None
    weight_bytes = 0.6 if config.qlora else 2 if device == "cuda" and precision == "bf16" else 4  # 4-bit + scales
    act_bytes = 2 if precision in ("bf16", "fp16") else 4  # autocast keeps most activations in 16 bits
    checkpointing = config.gradient_checkpointing == "on" or (
        config.gradient_checkpointing == "auto" and count_parameters(shape) > CHECKPOINTING_ABOVE)
    estimate = estimate_memory(shape, config, device, weight_bytes, act_bytes, checkpointing, processes)
    return check_memory(estimate, available_mb(device))
