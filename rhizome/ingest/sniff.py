"""Recognise a file's format from its content first and its name second.

Magic bytes identify PDF, zip and Parquet; JSON is told apart by the keys of its first object
(`mapping` -> ChatGPT, `chat_messages` -> Claude, chat-record keys -> JSONL), read as a stream so
a 1 GB export costs only its first conversation; text falls back on the suffix (Markdown, CSV)
and otherwise is plain text. Binary data that is not a supported format is skipped, and an
error when its name promises text (a binary file named `.md`).
"""
from __future__ import annotations

import json
from pathlib import Path

from .common import JSON_BUFFER, FormatError, SkipFile, json_error

JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
TEXT_SUFFIXES = JSON_SUFFIXES | MARKDOWN_SUFFIXES | {".txt", ".text", ".csv", ".tsv", ".log", ".rst", ".org"}
OFFICE_SUFFIXES = {".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".pages", ".numbers", ".key"}
RECORD_KEYS = {"messages", "conversations", "text", "user", "assistant", "prompt", "response", "completion",
               "instruction", "output", "question", "answer", "human", "query"}
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"RIFF", "an audio or WebP file"), (b"ID3", "an MP3 file"), (b"OggS", "an Ogg audio file"),
          (b"fLaC", "a FLAC file"), (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
          (b"7z\xbc\xaf", "a 7-Zip archive (unpack it first)"), (b"Rar!", "a RAR archive (unpack it first)"),
          (b"SQLite format 3\x00", "an SQLite database"), (b"\x7fELF", "a program"), (b"MZ", "a program"))
_SNIFF_EVENTS = 2_000_000  # enough for any first conversation; bounds the cost on odd files


def sniff_format(path: Path, name: str) -> str:
    """chatgpt|claude|jsonl|pdf|markdown|text|csv|parquet|hf_dataset|zip|folder, or Skip/FormatError."""
    if path.is_dir():
        return "hf_dataset" if is_hf_dataset(path) else "folder"
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise SkipFile(f"{name} is empty")
    with open(path, "rb") as fh:
        head = fh.read(65536)
    binary = sniff_binary(head, suffix, name)
    if binary:
        return binary
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if not text:
        raise SkipFile(f"{name} holds only whitespace")
    if suffix in (".html", ".htm") or text[:15].lower().startswith(("<!doctype html", "<html")):
        raise SkipFile(f"{name} is an HTML page, not ingested "
                       "(a ChatGPT export's chat.html repeats conversations.json)")
    if text[0] in "[{" and suffix not in MARKDOWN_SUFFIXES | {".csv", ".tsv"}:
        shape = json_shape(path, name, strict=suffix in JSON_SUFFIXES)
        if shape not in (None, "unknown"):
            return shape
        if shape == "unknown" and suffix != ".txt":
            raise SkipFile(f"{name} is JSON but holds no conversations or chat records")
    if suffix in JSON_SUFFIXES:
        raise FormatError(f"{name} is not JSON (it does not start with [ or {{); check the file")
    return _by_suffix(suffix, text)


def _by_suffix(suffix: str, text: str) -> str:
    if suffix in MARKDOWN_SUFFIXES or (text.startswith("---\n") and "\n---" in text[4:4000]):
        return "markdown"
    return "csv" if suffix in (".csv", ".tsv") else "text"


def sniff_binary(head: bytes, suffix: str, name: str) -> str | None:
    """pdf/zip/parquet from magic bytes; Skip or FormatError for other binary data; None for text."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        if suffix in OFFICE_SUFFIXES:
            raise SkipFile(f"{name} is an office document, not supported; save it as PDF or text to ingest it")
        return "zip"
    if head.startswith(b"PAR1"):
        return "parquet"
    kind = next((desc for magic, desc in _MAGIC if head.startswith(magic)), None)
    if kind is None and not looks_like_text(head):
        kind = "binary data"
    if kind is None:
        return None
    if suffix in TEXT_SUFFIXES:
        raise FormatError(f"{name} is {kind}, not text, despite its name; save it as UTF-8 text to ingest it")
    raise SkipFile(f"{name} is {kind}, not a supported format")


def looks_like_text(head: bytes) -> bool:
    """No NUL bytes (unless UTF-16/32 with a BOM) and almost no control characters."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    sample = head.decode("utf-8", errors="ignore")
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f\v\x1b")
    return not sample or controls / len(sample) <= 0.01


def is_hf_dataset(path: Path) -> bool:
    """A folder written by `datasets.save_to_disk` (one dataset or a dict of splits)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file())


def json_shape(path: Path, name: str, strict: bool) -> str | None:
    """chatgpt, claude or jsonl from the keys of the first object; "unknown" for other JSON.

    JSON that does not parse gives None, or a FormatError with `strict` (a file named .json).
    """
    keys = _first_line_keys(path)
    if keys is None:
        try:
            keys = _first_object_keys(path, name)
        except FormatError:
            if strict:
                raise
            return None
    if keys & {"mapping", "current_node"}:
        return "chatgpt"
    if "chat_messages" in keys:
        return "claude"
    return "jsonl" if keys & RECORD_KEYS else "unknown"


def _first_line_keys(path: Path) -> set[str] | None:
    """Keys of the first line when it is a complete JSON object (JSONL, or minified JSON)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        line = fh.readline(1_000_000)  # a minified export is one huge line: leave it to the stream
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict)), {})
    return set(value) if isinstance(value, dict) else set()


def _first_object_keys(path: Path, name: str) -> set[str]:
    """Top-level keys of the first array item (or of the top-level object), read as a stream."""
    import ijson

    keys: set[str] = set()
    with open(path, "rb") as fh:
        try:
            for count, (prefix, event, value) in enumerate(ijson.parse(fh, multiple_values=True, buf_size=JSON_BUFFER)):
                if event == "map_key" and prefix in ("", "item"):
                    keys.add(value)
                    if value in ("mapping", "chat_messages", "conversations", "messages"):
                        break
                elif (prefix, event) in (("item", "end_map"), ("", "end_map")) or count > _SNIFF_EVENTS:
                    break
        except ijson.JSONError as exc:
            raise json_error(name, exc) from None
    return keys
