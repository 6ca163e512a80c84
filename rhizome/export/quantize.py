"""F16 GGUF -> q8_0 / q4_k_m / q5_k_m / q6_k with llama.cpp's own quantiser (`llama_model_quantize`).

The quantiser is the one compiled into llama-cpp-python, so the files are exactly what
llama.cpp, Ollama and LM Studio expect from that llama.cpp.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

from ..workspace import UserError, atomic_path

# our name -> the llama_ftype constant of llama.cpp (looked up by name, not hard-coded numbers)
QUANT_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}


def quantize_gguf(src: Path, dst: Path, quant: str, threads: int = 0) -> Path:
    """Quantise `src` into `dst` (atomically: an interrupted run leaves no partial `dst`)."""
    if quant not in QUANT_FTYPES:
        raise UserError(f"quantisation must be one of {', '.join(QUANT_FTYPES)}, not {quant!r}")
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params.nthread = threads
    with atomic_path(dst) as tmp:
        # The quantiser narrates every tensor (and each k-quant fallback to q5_0/q8_0 on rows not a
        # multiple of 256) straight to stderr; its return code is what tells success.
        with suppress_stdout_stderr(disable=False):
            code = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0:
            raise RuntimeError(f"llama.cpp could not quantise {src} to {quant} (code {code})")
    return Path(dst)
