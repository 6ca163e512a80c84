"""Merged Hugging Face folder -> llama.cpp GGUF (F16), then llama.cpp's own quantiser.

The F16 file is streamed tensor by tensor with the `gguf` package, so a model never sits in
memory twice. Metadata and tokenizer are copied from the base GGUF when the run was trained on
one (the bundled SmolLM2): llama.cpp then tokenises and templates exactly as it did for the base.
Otherwise they are built from `config.json` and the HF tokenizer (`vocab.py`). Llama-architecture
Q/K weights are permuted back into the interleaved rotary layout llama.cpp computes with — the
inverse of what transformers undoes when it reads a GGUF. Quantisation (q8_0, q4_k_m) is done by
llama.cpp itself through llama-cpp-python, so the files are what llama.cpp/Ollama/LM Studio expect.
"""
from __future__ import annotations

import ctypes
import json
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..events import ProgressFn, emit
from ..workspace import UserError, atomic_path

# HF architecture class -> llama.cpp architecture; Mistral checkpoints are llama in llama.cpp.
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
# llama_ftype values of llama.cpp (LLAMA_FTYPE_MOSTLY_Q8_0, LLAMA_FTYPE_MOSTLY_Q4_K_M).
QUANT_FTYPES = {"q8_0": 7, "q4_k_m": 15}
# Keys that describe the file being written rather than the model: never copied from the base.
_SKIPPED_KEYS = ("GGUF.", "split.", "general.architecture", "general.file_type", "general.quantization_version")


@dataclass
class PlannedTensor:
    """One tensor of the output file: its GGUF name, numpy shape and dtype, and how to load it."""

    name: str
    shape: tuple[int, ...]
    dtype: type
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def read_hf_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def gguf_architecture(config: dict[str, Any], where: Path | str) -> str:
    """llama.cpp architecture of an HF config, or a UserError that says what to do instead."""
    for name in config.get("architectures") or []:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    found = ", ".join(config.get("architectures") or [str(config.get("model_type"))])
    raise UserError(
        f"{where}: architecture {found} cannot be exported to GGUF by Rhizome (supported: Llama, Mistral, "
        "Qwen2 families); the merged Hugging Face folder is saved — convert it with llama.cpp's "
        "convert_hf_to_gguf.py, or train on a supported model"
    )


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """Rotary settings from transformers 5 (`rope_parameters`) or older (`rope_theta` + `rope_scaling`)."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params["type"]
    return params


def permute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF's half-split rotary layout -> llama.cpp's interleaved one (rows of q/k projections)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _loader(handle: Any, key: str, dtype: type, heads: int | None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        array = handle.get_tensor(key).float().numpy()  # bf16/f16/f32 all go through float32
        if heads:
            array = permute_rotary(array, heads)
        return np.ascontiguousarray(array.astype(dtype))

    return load


def _llama3_rope_factors(config: dict[str, Any], rope: dict[str, Any]) -> np.ndarray:
    """The `rope_freqs` tensor llama.cpp uses for Llama 3.1+ "llama3" rope scaling."""
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (rope.get("rope_theta", 10000.0) ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def plan_tensors(model_dir: Path, config: dict[str, Any], arch: str, stack: ExitStack) -> list[PlannedTensor]:
    """Map every HF tensor to its GGUF name, shape and type (2-D weights F16, vectors F32)."""
    import gguf
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise UserError(f"{model_dir} has no .safetensors weights to convert")
    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, config["num_hidden_layers"])
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    plan = []
    for file in files:
        handle = stack.enter_context(safe_open(str(file), framework="pt"))
        for key in handle.keys():
            if key.endswith("rotary_emb.inv_freq") or (key == "lm_head.weight" and config.get("tie_word_embeddings")):
                continue
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise UserError(f"{model_dir}: tensor {key} has no GGUF counterpart for {arch}; convert with llama.cpp")
            shape = tuple(handle.get_slice(key).get_shape())
            heads = None
            if arch == "llama" and key.endswith(("q_proj.weight", "q_proj.bias")):
                heads = n_head
            elif arch == "llama" and key.endswith(("k_proj.weight", "k_proj.bias")):
                heads = n_kv
            dtype = np.float16 if len(shape) >= 2 else np.float32
            plan.append(PlannedTensor(name, shape, dtype, _loader(handle, key, dtype, heads)))
    rope = rope_parameters(config)
    if str(rope.get("rope_type", "")).lower() == "llama3":
        factors = _llama3_rope_factors(config, rope)
        plan.append(PlannedTensor("rope_freqs.weight", factors.shape, np.float32, lambda: factors))
    return plan


def copy_base_metadata(writer: Any, base_gguf: Path, arch: str, plan: list[PlannedTensor], name: str | None) -> None:
    """Carry every model/tokenizer key of the base GGUF over, after checking the tensors match it."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    base_arch = reader.fields["general.architecture"].contents()
    if base_arch != arch:
        raise UserError(f"base GGUF {base_gguf} is {base_arch}, but the merged model is {arch}")
    base = {t.name: tuple(int(x) for x in reversed(t.shape.tolist())) for t in reader.tensors}
    ours = {t.name: t.shape for t in plan}
    if base != ours:
        missing, extra = sorted(set(base) - set(ours))[:3], sorted(set(ours) - set(base))[:3]
        raise UserError(f"the merged model does not match base GGUF {base_gguf} (missing {missing}, extra {extra}, "
                        "or shapes differ): was the run trained on another model?")
    for key, field in reader.fields.items():
        if key.startswith(_SKIPPED_KEYS) or (name and key == "general.name"):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY and len(field.types) > 2:
            continue  # nested arrays: no llama/qwen2 model key uses them
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type)


def add_hf_metadata(writer: Any, model_dir: Path, config: dict[str, Any], arch: str) -> None:
    """Hyper-parameters from config.json (what convert_hf_to_gguf.py writes for llama/qwen2)."""
    import gguf

    from .vocab import add_hf_tokenizer

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_context_length(config.get("max_position_embeddings", 4096))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    kind = str(rope.get("rope_type", "default")).lower()
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    elif kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    if arch == "llama":
        writer.add_vocab_size(config["vocab_size"])
        writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    add_hf_tokenizer(writer, Path(model_dir), config, arch)


def write_f16_gguf(model_dir: Path, out: Path, base_gguf: Path | None = None, name: str | None = None,
                   progress: ProgressFn | None = None) -> dict[str, Any]:
    """Write `out` (atomically) from the HF folder; returns what was written."""
    import gguf

    model_dir, out = Path(model_dir), Path(out)
    config = read_hf_config(model_dir)
    arch = gguf_architecture(config, model_dir)
    writer = gguf.GGUFWriter(path=None, arch=arch)
    with ExitStack() as stack:
        plan = plan_tensors(model_dir, config, arch, stack)
        if base_gguf is not None:
            copy_base_metadata(writer, Path(base_gguf), arch, plan, name)
        else:
            add_hf_metadata(writer, model_dir, config, arch)
        if name:
            writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        for tensor in plan:
            writer.add_tensor_info(tensor.name, tensor.shape, np.dtype(tensor.dtype), tensor.nbytes)
        with atomic_path(out) as tmp:
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for i, tensor in enumerate(plan, 1):
                writer.write_tensor_data(tensor.load())
                if i % 16 == 0 or i == len(plan):
                    emit(progress, "gguf", i, len(plan), message=f"writing {out.name}")
            writer.close()
    return {"path": str(out), "arch": arch, "tensors": len(plan),
            "metadata_from": str(base_gguf) if base_gguf else "config.json + HF tokenizer"}


def quantize_gguf(src: Path, dst: Path, quant: str, threads: int = 0) -> Path:
    """Quantise an F16 GGUF with llama.cpp's own quantiser (`llama_model_quantize`)."""
    if quant not in QUANT_FTYPES:
        raise UserError(f"quantisation must be one of {', '.join(QUANT_FTYPES)}, not {quant!r}")
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    params.nthread = threads
    with atomic_path(dst) as tmp:
        # The quantiser narrates every tensor (and each k-quant fallback to q5_0/q8_0 on rows not a
        # multiple of 256) straight to stderr; its return code is what tells success.
        with suppress_stdout_stderr(disable=False):
            code = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0:
            raise RuntimeError(f"llama.cpp could not quantise {src} to {quant} (code {code})")
    return Path(dst)
