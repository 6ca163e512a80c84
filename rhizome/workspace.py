"""The workspace: one folder that every stage reads from and writes to.

Layout (DESIGN.md): sources/, corpus.jsonl, ingest_report.json, embeddings/, dataset/, memory/,
curation.sqlite, runs/<run_id>/, models/. All writes here are atomic: a temp file in the same
folder, then `os.replace`, so a crash never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, bad flag). CLI exit status 2."""


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace; `Workspace("ws").ensure()` creates the folders."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root).expanduser().resolve())

    def ensure(self) -> "Workspace":
        for folder in (self.sources, self.embeddings, self.dataset, self.memory, self.runs, self.models):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def ingest_report(self) -> Path:
        return self.root / "ingest_report.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def memory(self) -> Path:
        return self.root / "memory"

    @property
    def curation_db(self) -> Path:
        return self.root / "curation.sqlite"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def models(self) -> Path:
        """User-provided models (Vosk, Kokoro, GGUF files) dropped into the workspace."""
        return self.root / "models"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def split_path(self, split: str, detailed: bool = False) -> Path:
        return self.dataset / (f"{split}_detailed.jsonl" if detailed else f"{split}.jsonl")

    def list_runs(self) -> list[str]:
        """Run ids, newest first."""
        if not self.runs.is_dir():
            return []
        runs = [p for p in self.runs.iterdir() if p.is_dir()]
        return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether `path` resolves inside the workspace (guards UI inputs against traversal)."""
        resolved = Path(path).expanduser().resolve()
        return resolved == self.root or self.root in resolved.parents


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path` in one step."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; workspace files are ordinary user files
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    p = Path(path)
    if not p.exists():
        return default
    return json.loads(p.read_text(encoding="utf-8"))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically, one JSON object per line; returns how many were written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Stream the objects of a JSONL file (blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one line; used for event logs, where each line is complete or absent."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        fh.flush()
