"""Where ingest writes: copies of the inputs in `sources/`, and `corpus.jsonl` rewritten atomically.

Inputs are copied once: a file or folder whose name is already taken by different content is
stored under `name-<hash>`, and identical content is reused, so re-ingesting copies nothing.
The corpus is rewritten as old lines + new records into a temp file that replaces it in one
step; records whose id is already present are not written again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from ..records import Record
from ..workspace import UserError, Workspace, atomic_path

_ID_PREFIX = re.compile(r'^\{"id": "([^"\\]*)"')
_SURROGATE = re.compile("[\ud800-\udfff]")


def store_input(ws: Workspace, path: Path) -> Path:
    """The copy of `path` inside ws.sources (the path itself when it already lies there)."""
    path = path.resolve()
    if path == ws.sources or ws.sources in path.parents:
        return path
    digest = digest_of(path)
    dest = ws.sources / path.name
    if dest.exists() and digest_of(dest) != digest:
        dest = ws.sources / f"{path.stem}-{digest[:8]}{path.suffix}"
    if not dest.exists():
        _copy_atomically(path, dest)
    return dest


def _copy_atomically(path: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".incoming-")) / path.name
    try:
        if path.is_dir():
            shutil.copytree(path, tmp, ignore=shutil.ignore_patterns(".*"))
        else:
            shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def digest_of(path: Path) -> str:
    """SHA-256 of a file, or of a folder's visible files (names and contents)."""
    sha = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
    for file in files:
        if file != path:
            sha.update(file.relative_to(path).as_posix().encode("utf-8", "replace") + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 20):
                sha.update(chunk)
    return sha.hexdigest()


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


class CorpusWriteError(UserError):
    """The corpus could not be written (disk full, permissions); the old corpus is kept."""


class CorpusWriter:
    """Appends records whose id is new; counts what it added and what is there in all."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.ids: set[str] = set()
        self.added = 0

    @property
    def total(self) -> int:
        return len(self.ids)

    def copy_existing(self, path: Path) -> None:
        """Carry the current corpus over line by line, remembering its ids."""
        if not path.exists():
            return
        with open(path, encoding="utf-8", errors="replace") as old:
            for line in old:
                if not line.strip():
                    continue
                record_id = _line_id(line)
                if record_id is not None:
                    self.ids.add(record_id)
                self.fh.write(line if line.endswith("\n") else line + "\n")

    def add(self, record: Record) -> bool:
        """Write the record unless its id is present; True when it was new."""
        if record.id in self.ids:
            return False
        line = json.dumps(record.to_dict(), ensure_ascii=False)
        if _SURROGATE.search(line):  # lone surrogates from \\udxxx escapes cannot be stored as UTF-8
            line = _SURROGATE.sub("\ufffd", line)
        try:
            self.fh.write(line + "\n")
        except OSError as exc:
            raise CorpusWriteError(f"could not write the corpus ({exc}); the previous corpus.jsonl is kept") from exc
        self.ids.add(record.id)
        self.added += 1
        return True


def _line_id(line: str) -> str | None:
    match = _ID_PREFIX.match(line)
    if match:
        return match.group(1)
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), str) else None


@contextmanager
def open_corpus(path: Path) -> Iterator[CorpusWriter]:
    """A writer over old + new records; the corpus is replaced only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        writer = CorpusWriter(fh)
        writer.copy_existing(path)
        yield writer
