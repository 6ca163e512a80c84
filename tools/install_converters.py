"""Set-up step (`make converters`): llama.cpp's own GGUF converters, at the runtime's exact version.

The llama-cpp-python source distribution pinned in requirements.txt vendors the llama.cpp it is
compiled from, converters included (`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`, the
`conversion/` package, the matching `gguf-py`, and the chat templates llama.cpp tests with). This
script fetches that sdist from the package registry with pip, extracts those files into DEST and
records the version (and the list of files taken) in DEST/VERSION.json. It runs at set-up only;
Rhizome never downloads at run time. Rerunning it with the same pin and list does nothing.

usage: python tools/install_converters.py requirements.txt DEST
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# models/ggml-vocab-qwen2.gguf: llama.cpp's own vocabulary-only test file; the export tests give a
# tiny Qwen2 model Qwen's real tokenizer from it (nothing else carries one offline).
WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/gguf/",
          "gguf-py/pyproject.toml", "gguf-py/LICENSE", "models/templates/", "models/ggml-vocab-qwen2.gguf",
          "LICENSE")


def pinned_version(requirements: Path) -> str:
    match = re.search(r"^llama-cpp-python==(\S+)", requirements.read_text(encoding="utf-8"), flags=re.M)
    if not match:
        sys.exit(f"{requirements} does not pin llama-cpp-python==VERSION")
    return match.group(1)


def download_sdist(version: str, folder: Path) -> Path:
    """The sdist from pip's usual index (its cache makes a second download free)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={version}", "-d", str(folder)], check=True)
    found = sorted(folder.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not found:
        sys.exit(f"pip did not download llama_cpp_python-{version}.tar.gz")
    return found[0]


def vendored_commit(tar: tarfile.TarFile, root: str) -> str | None:
    """llama.cpp's commit: the sdist carries the submodule's git HEAD."""
    try:
        member = tar.extractfile(f"{root}/.git/modules/vendor/llama.cpp/HEAD")
    except KeyError:
        return None
    head = member.read().decode().strip() if member else ""
    return head if re.fullmatch(r"[0-9a-f]{40}", head) else None


def extract(sdist: Path, dest: Path, version: str) -> dict:
    root = f"llama_cpp_python-{version}"
    prefix = f"{root}/vendor/llama.cpp/"
    tmp = Path(tempfile.mkdtemp(prefix=".converters.", dir=dest.parent))
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            rel = member.name[len(prefix):] if member.name.startswith(prefix) else None
            if rel and member.isfile() and rel.startswith(WANTED) and "__pycache__" not in rel:
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
        info = {"llama_cpp_python": version, "llama_cpp_commit": vendored_commit(tar, root),
                "gguf_py": re.search(r'^version = "(.+)"', (tmp / "gguf-py/pyproject.toml").read_text(), re.M).group(1),
                "source": sdist.name, "wanted": list(WANTED)}
    if not (tmp / "convert_hf_to_gguf.py").is_file():
        shutil.rmtree(tmp)
        sys.exit(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
    (tmp / "VERSION.json").write_text(json.dumps(info, indent=2) + "\n")
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)  # the folder appears whole or not at all
    shutil.rmtree(old, ignore_errors=True)
    return info


def main() -> None:
    requirements, dest = Path(sys.argv[1]), Path(sys.argv[2]).absolute()
    version = pinned_version(requirements)
    stamp = dest / "VERSION.json"
    installed = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if installed.get("llama_cpp_python") == version and installed.get("wanted") == list(WANTED):
        print(f"llama.cpp converters of llama-cpp-python {version} already in {dest}")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        info = extract(download_sdist(version, Path(folder)), dest, version)
    print(f"llama.cpp converters {info['llama_cpp_commit'] or '?'} (llama-cpp-python {version}) -> {dest}")


if __name__ == "__main__":
    main()
