"""Shared pieces of the ingest parsers: the file handed to a parser, its tally, its errors.

Every parser is a generator `parse(src: Source, tally: Tally) -> Iterator[Record]`. It yields
valid records and either finishes or raises `FormatError` with one line a person understands;
the dispatcher turns that into the file's report entry. Records yielded before an error are
kept (a truncated export still gives the conversations before the cut).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..config import IngestConfig
from ..records import Message, stable_id

# ijson's C parser re-scans a string token once per buffer it spans: with 64 KB buffers a 50 MB
# message costs ~10 s, with 8 MB buffers ~0.2 s. The buffer is the only fixed memory cost.
JSON_BUFFER = 8 * 1024 * 1024
# Above this many characters a single message is still kept, but the report says so.
LONG_MESSAGE_CHARS = 1_000_000


class FormatError(Exception):
    """The file cannot be read as its format; the message is the report's reason."""


class SkipFile(Exception):
    """The file is deliberately not ingested (unsupported or nothing in it); message says why."""


@dataclass
class Source:
    """One file to parse: where it lies and how records should name it."""

    path: Path
    """The file to read (the copy inside the workspace's sources/)."""
    name: str
    """How records and the report name it, e.g. `export.zip/conversations.json`."""
    config: IngestConfig = field(default_factory=IngestConfig)
    rel: str = ""
    """Path relative to the folder it was found in (notes of an Obsidian vault)."""


@dataclass
class Tally:
    """What a parser saw in one file: counts, drops by reason, notes for the report."""

    counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def as_counts(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(sorted(self.counts.items()))
        out["dropped"] = dict(sorted(self.dropped.items()))
        return out


def iso_time(value: Any) -> str | None:
    """An ISO-8601 string from an epoch number or a date-ish string; None when unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
        except ValueError:
            return text if re.match(r"^\d{4}-\d{2}-\d{2}", text) else None
    return None


def merge_consecutive(messages: list[Message], roles: tuple[str, ...] = ("assistant",),
                      joins: list[str] | None = None) -> tuple[list[Message], int]:
    """Join runs of same-role messages (a reply split by "continue generating" or tool calls).

    `joins[i]` is the separator used when message i is appended to the previous one (default a
    blank line). Returns the merged list and how many messages were folded in.
    """
    out: list[Message] = []
    merged = 0
    for i, msg in enumerate(messages):
        if out and out[-1].role == msg.role and msg.role in roles:
            sep = joins[i] if joins else "\n\n"
            out[-1] = Message(msg.role, out[-1].content + sep + msg.content)
            merged += 1
        else:
            out.append(msg)
    return out, merged


def count_messages(tally: Tally, messages: list[Message]) -> None:
    """Add a conversation's messages to the tally, noting any enormous ones."""
    tally.count("messages", len(messages))
    for msg in messages:
        if len(msg.content) > LONG_MESSAGE_CHARS:
            tally.count("long_messages")


def title_from(messages: list[Message], limit: int = 60) -> str:
    """A readable title from the first user turn when the source has none."""
    for msg in messages:
        if msg.role == "user" and msg.content.strip():
            line = msg.content.strip().splitlines()[0]
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


def text_of(value: Any) -> str | None:
    """A string from a content value: a string, or OpenAI-style parts `[{"type":"text","text"}]`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in value if isinstance(p, (str, dict))]
        texts = [p for p in parts if isinstance(p, str)]
        return "\n".join(texts) if texts else None
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return value["text"]
    return None


def json_error(name: str, exc: Exception) -> FormatError:
    """A FormatError that says in plain words why a JSON file could not be read.

    yajl's message is "parse error: <what>" then a line of the text around the error, which is
    more useful to a person than a byte offset (ijson reads in large buffers, so none is exact).
    """
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    what = lines[0].removeprefix("parse error: ") if lines and lines[0] else type(exc).__name__
    if "premature EOF" in what:
        return FormatError(f"{name} ends too early (truncated download or copy?); export or copy it again")
    near = f" near: {lines[1][:60]}" if len(lines) > 1 and lines[1] else ""
    return FormatError(f"{name} is not valid JSON ({what}{near}); check that it is the unmodified export")


def stream_json(path: Path, name: str, prefix: str = "item") -> Iterator[Any]:
    """Stream the values of a top-level JSON array (or one top-level object) without loading it all.

    Peak memory is one value, which is what lets a 1 GB export be read in a few hundred MB.
    """
    import ijson  # imported here so the package imports fast

    with open(path, "rb") as fh:
        try:
            first = next(ijson.parse(fh), None)
        except ijson.JSONError as exc:
            raise json_error(name, exc) from None
    if first is None:
        raise SkipFile(f"{name} holds no JSON data")
    if first[1] != "start_array":
        prefix = ""  # a single object: treat it as a one-item list
    with open(path, "rb") as fh:
        try:
            yield from ijson.items(fh, prefix, use_float=True, buf_size=JSON_BUFFER)
        except ijson.JSONError as exc:
            raise json_error(name, exc) from None


def parse_conversations(src: "Source", tally: "Tally", list_key: str, list_type: type, convert, label: str) -> Iterator[Any]:
    """Stream an export's conversations, converting each one that carries `list_key`.

    Shared by the ChatGPT (`mapping`) and Claude (`chat_messages`) parsers: malformed items are
    counted and skipped, and a file with none readable is a FormatError."""
    for index, conv in enumerate(stream_json(src.path, src.name)):
        if not isinstance(conv, dict) or not isinstance(conv.get(list_key), list_type):
            tally.drop("malformed_conversation")
            continue
        record = convert(conv, index, src, tally)
        if record is not None:
            yield record
    if not tally.counts["conversations"] and tally.dropped["malformed_conversation"]:
        raise FormatError(f"{src.name} has no readable {label} conversations (each needs '{list_key}')")


def make_id(*parts: Any) -> str:
    """`stable_id` that also accepts lone surrogates (from `\\udxxx` escapes in broken JSON)."""
    try:
        return stable_id(*parts)
    except UnicodeEncodeError:
        blob = json.dumps(parts, ensure_ascii=False, default=str)
        return stable_id(*json.loads(re.sub("[\ud800-\udfff]", "\ufffd", blob)))
