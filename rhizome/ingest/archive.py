"""Safe zip extraction for exports (ChatGPT and Claude downloads are zips).

Every member is checked before anything is written: absolute paths and `..` components
(path traversal), encrypted members, a total uncompressed size above `max_zip_bytes` and
members expanding more than `max_zip_ratio` times (zip bombs) refuse the whole archive. While
extracting, bytes are counted against the declared sizes (headers can lie) and every target is
verified to resolve inside the extraction folder, which itself lies inside the workspace.
"""
from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from ..config import IngestConfig
from .common import FormatError

RATIO_FLOOR = 1024 * 1024  # small members may compress very well without being dangerous
_CHUNK = 1024 * 1024


def extract_zip(zip_path: Path, dest: Path, name: str, config: IngestConfig) -> list[str]:
    """Extract the archive's files into `dest`; returns their relative paths (FormatError if unsafe)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FormatError(f"{name} is not a readable zip archive ({exc}); download it again") from None
    with archive:
        members = check_members(archive.infolist(), name, config)
        if dest.exists():
            shutil.rmtree(dest)  # an earlier extraction of the same archive: start clean
        dest.mkdir(parents=True)
        try:
            for info in members:
                extract_member(archive, info, dest, name)
        except (FormatError, zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"{name} is damaged ({exc}); download it again") from None
    return [member_path(info.filename) for info in members]


def check_members(infos: list[zipfile.ZipInfo], name: str, config: IngestConfig) -> list[zipfile.ZipInfo]:
    """The members worth extracting; FormatError for anything unsafe, before a byte is written."""
    total = 0
    keep: list[zipfile.ZipInfo] = []
    for info in infos:
        path = info.filename.replace("\\", "/")
        if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or ".." in path.split("/"):
            raise FormatError(f"{name} is unsafe: member '{info.filename}' points outside the archive "
                              "(path traversal); nothing was extracted")
        if info.flag_bits & 0x1:
            raise FormatError(f"{name} is password-protected; extract it yourself and ingest the folder")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > config.max_zip_ratio:
            raise FormatError(f"{name} looks like a zip bomb: '{info.filename}' expands {ratio:,.0f}x "
                              f"(limit max_zip_ratio={config.max_zip_ratio:g}); nothing was extracted")
        total += info.file_size
        if total > config.max_zip_bytes:
            raise FormatError(f"{name} expands to more than {config.max_zip_bytes:,} bytes (max_zip_bytes); "
                              "nothing was extracted")
        if not _wanted(info):
            continue
        keep.append(info)
    return keep


def _wanted(info: zipfile.ZipInfo) -> bool:
    """Skip folders, symlinks, macOS resource forks and hidden files."""
    if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
        return False
    parts = PurePosixPath(member_path(info.filename)).parts
    return bool(parts) and parts[0] != "__MACOSX" and not any(p.startswith(".") for p in parts)


def member_path(filename: str) -> str:
    """A member's path with forward slashes and no empty or `.` parts."""
    return "/".join(p for p in filename.replace("\\", "/").split("/") if p not in ("", "."))


def extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, name: str) -> None:
    """Copy one member out, never past its declared size and never outside `dest`."""
    root = dest.resolve()
    target = (root / member_path(info.filename)).resolve()
    if root not in target.parents:
        raise FormatError(f"{name} is unsafe: '{info.filename}' would be written outside the extraction folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise FormatError(f"{name} is unsafe: '{info.filename}' holds more data than its header declares")
            out.write(chunk)
