"""llama.cpp's own converters, run as llama.cpp ships them, at the version of our llama.cpp runtime.

`make converters` (part of `make setup`) extracts `convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`,
their `conversion/` package and their `gguf-py` from the pinned llama-cpp-python sdist into
`<venv>/llama.cpp-converters` (or `$RHIZOME_CONVERTERS`), with a VERSION.json. They run in a
subprocess whose import path starts with their own `gguf-py`, so their gguf module and the `gguf`
package Rhizome itself imports can differ without clashing. Every architecture and tokenizer
llama.cpp converts is therefore one Rhizome exports; anything else fails with the converter's
own reason, in one line.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..workspace import UserError, atomic_path

CONVERTERS_ENV = "RHIZOME_CONVERTERS"


def converters_dir() -> Path:
    """The folder set-up filled, or a UserError saying how to get it."""
    folder = Path(os.environ.get(CONVERTERS_ENV) or Path(sys.prefix) / "llama.cpp-converters")
    if not (folder / "convert_hf_to_gguf.py").is_file() or not (folder / "VERSION.json").is_file():
        raise UserError(f"llama.cpp's converters are not installed in {folder}: run `make setup` "
                        f"(or `python tools/install_converters.py requirements.txt {folder}`)")
    return folder


@dataclass(frozen=True)
class ConverterVersion:
    """Which llama.cpp the converters come from, and whether the runtime is the same one."""

    converters: str  # llama-cpp-python version whose sdist they were taken from
    llama_cpp_commit: str | None
    runtime: str  # llama_cpp.__version__ of the installed runtime

    @property
    def mismatch(self) -> str | None:
        if self.converters == self.runtime:
            return None
        return (f"llama.cpp converters come from llama-cpp-python {self.converters} but the runtime is "
                f"{self.runtime}: rerun `make setup` so both are the same llama.cpp")

    def as_dict(self) -> dict:
        return {"converters": self.converters, "llama_cpp_commit": self.llama_cpp_commit,
                "runtime": self.runtime, "mismatch": self.mismatch}


def converter_version() -> ConverterVersion:
    import llama_cpp

    info = json.loads((converters_dir() / "VERSION.json").read_text(encoding="utf-8"))
    return ConverterVersion(str(info.get("llama_cpp_python")), info.get("llama_cpp_commit"), llama_cpp.__version__)


def _run(script: str, args: list[str], what: str) -> None:
    """Run one converter script; a failure becomes a UserError carrying its reason."""
    folder = converters_dir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder / "gguf-py"), str(folder)]),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("NO_LOCAL_GGUF", None)  # the converters must use their own gguf-py
    proc = subprocess.run([sys.executable, str(folder / script), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{what}: {converter_error(proc.stderr + proc.stdout)}")


def converter_error(log: str) -> str:
    """The one line of a converter's output that says why it failed."""
    unsupported = re.search(r"Model (\S+) is not supported", log)
    if unsupported:
        return (f"architecture {unsupported.group(1)} is not supported by llama.cpp's converter (this llama.cpp "
                "cannot run it); the merged Hugging Face folder is kept")
    if "BPE pre-tokenizer was not recognized" in log:  # its tokenizer's splitting rules, fingerprinted
        return ("the model's tokenizer is not one this llama.cpp knows (NotImplementedError: BPE pre-tokenizer "
                "was not recognized); a model keeping its family's own tokenizer converts; the merged Hugging Face "
                "folder is kept")
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^(\w+(Error|Exception)|ERROR:|Error:)", line) or "Error:" in line[:60]:
            return line[:400]
    return lines[-1][:400] if lines else "the converter failed without a message"


# Descriptive keys of a base GGUF worth carrying over (licence, author, languages...); everything
# that decides how the model runs (hyper-parameters, tokenizer, template) comes from the converter.
CARRIED_KEYS = ("general.basename", "general.organization", "general.author", "general.license",
                "general.license.name", "general.license.link", "general.languages", "general.tags",
                "general.url", "general.repo_url", "general.size_label")


def base_metadata(base_gguf: Path | None, name: str | None) -> dict:
    """The metadata override for the converter: the base GGUF's descriptive keys, and our name."""
    carried = {}
    if base_gguf is not None:
        import gguf

        fields = gguf.GGUFReader(str(base_gguf)).fields
        carried = {key: fields[key].contents() for key in CARRIED_KEYS if key in fields}
    if name:
        carried["general.name"] = name
    return carried


# llama.cpp sets per-token attributes for any model whose general.name contains "phi3" or "phi-3",
# looking up these four tokens as it does (llama-vocab.cpp, "set attributes by model/tokenizer/
# architecture name"): a GGUF so named whose vocabulary lacks one fails to load ("error loading
# model vocabulary: unordered_map::at"). Phi-3's own vocabulary has them; for any other (a Phi-3
# architecture with another tokenizer, or a folder merely named so) the name must not say phi3.
PHI3_NAME = re.compile(r"phi-?3", re.IGNORECASE)
PHI3_TOKENS = ("<unk>", "<s>", "</s>", "<|endoftext|>")


def loadable_name(name: str | None, model_dir: Path) -> str | None:
    """`name` as general.name, with "phi3"/"phi-3" spelt "phi 3" where the vocabulary lacks the
    tokens llama.cpp looks up for such names."""
    if not name or not PHI3_NAME.search(name):
        return name
    tokens = _tokenizer_json_tokens(model_dir)
    if tokens is None or all(t in tokens for t in PHI3_TOKENS):
        return name
    return PHI3_NAME.sub(lambda m: m.group(0)[:3] + " 3", name)


def _tokenizer_json_tokens(model_dir: Path) -> set[str] | None:
    """Every token of tokenizer.json (vocabulary and added tokens); None without one."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = (data.get("model") or {}).get("vocab") or {}
    tokens = set(vocab) if isinstance(vocab, dict) else {entry[0] for entry in vocab}  # BPE: dict; Unigram: pairs
    return tokens | {t.get("content") for t in data.get("added_tokens") or []}


def convert_hf(model_dir: Path, out: Path, outtype: str = "f16", name: str | None = None,
               base_gguf: Path | None = None) -> Path:
    """HF folder -> GGUF `out` (f16, bf16, f32 or q8_0), written atomically. A `base_gguf` (the
    GGUF the model was trained from) lends its descriptive metadata (licence, author...)."""
    model_dir, out = Path(model_dir), Path(out)
    check_architecture(check_hf_folder(model_dir), model_dir)
    meta = out.with_name(f".{out.name}.metadata.json.tmp")
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(base_metadata(base_gguf, loadable_name(name, model_dir))), encoding="utf-8")
    try:
        with atomic_path(out) as tmp:
            args = [str(model_dir), "--outfile", str(tmp), "--outtype", outtype, "--metadata", str(meta)]
            _run("convert_hf_to_gguf.py", args, f"converting {model_dir}")
    finally:
        meta.unlink(missing_ok=True)  # only needed for the conversion
    return out


def convert_lora(adapter_dir: Path, base_dir: Path, out: Path) -> Path:
    """PEFT adapter -> GGUF LoRA for llama.cpp's `lora_path`; `base_dir` gives the base's config."""
    out = Path(out)
    with atomic_path(out) as tmp:
        _run("convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_dir), "--outfile", str(tmp),
                                         "--outtype", "f32"], f"converting the adapter {adapter_dir}")
    return out


def supported_architectures() -> set[str]:
    """HF architecture classes the installed convert_hf_to_gguf.py converts (its TEXT_MODEL_MAP),
    read without importing it (that would import torch and its gguf-py into this process)."""
    import ast

    tree = ast.parse((converters_dir() / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and getattr(target, "id", "") == "TEXT_MODEL_MAP":
            return {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
    return set()


def check_architecture(config: dict, model_dir: Path) -> None:
    """One clear message for an architecture llama.cpp cannot convert (before a slow conversion)."""
    names = config.get("architectures") or []
    known = supported_architectures()
    if known and names and not any(name in known for name in names):
        raise UserError(f"{model_dir}: architecture {', '.join(names)} is not supported by llama.cpp's converter "
                        f"(this llama.cpp cannot run it; it converts {len(known)} others, e.g. Llama, Qwen, Gemma, "
                        "Phi, Mistral); the merged Hugging Face folder is kept")


def check_hf_folder(model_dir: Path) -> dict:
    """config.json, weights and a tokenizer present and readable, or a UserError naming what is wrong."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise UserError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{config_path} is not valid JSON ({exc}): the folder is damaged") from exc
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise UserError(f"{model_dir} has no weights (*.safetensors)")
    if not any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise UserError(f"{model_dir} has no tokenizer (tokenizer.json or tokenizer.model): save the tokenizer "
                        "with the model")
    _check_safetensors(model_dir)
    return config


def _check_safetensors(model_dir: Path) -> None:
    """Each weights file's header must describe no more bytes than the file has (truncated copies)."""
    import struct

    for path in model_dir.glob("*.safetensors"):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else size
            try:
                header = json.loads(handle.read(n)) if 8 + n <= size else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                header = None
        if header is None:
            raise UserError(f"{path} is damaged or truncated (unreadable header): copy the model again")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise UserError(f"{path} is truncated ({size} bytes, {8 + n + end} expected): copy the model again")
