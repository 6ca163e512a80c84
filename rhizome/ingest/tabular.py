"""Tables: CSV, Parquet and `datasets.save_to_disk` folders, one record per row.

The columns are detected from their names: a messages column (chat turns), a prompt/response
pair (prompt, question, instruction... / response, answer, output...), or a text column. The
IngestConfig settings `text_column`, `prompt_column` and `response_column` override detection;
with no known name the longest string column is used as text and the report says so. Rows are
streamed, so large tables never sit in memory.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..records import Record
from .common import FormatError, SkipFile, Source, Tally, count_messages, make_id, title_from
from .jsonl import messages_from
from .text import decode_bytes

MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialog", "dialogue", "turns")
PROMPT_COLUMNS = ("prompt", "question", "instruction", "query", "user", "human", "input")
RESPONSE_COLUMNS = ("response", "answer", "output", "completion", "assistant", "reply", "target", "chosen")
TEXT_COLUMNS = ("text", "content", "body", "document", "note", "passage", "article", "message")


@dataclass
class Plan:
    """Which columns make a record: mode is messages, pair or text."""

    mode: str
    columns: tuple[str, ...]
    note: str = ""


def parse_csv(src: Source, tally: Tally) -> Iterator[Record]:
    yield from _parse_rows(src, tally, "csv", read_csv(src.path, src.name))


def parse_parquet(src: Source, tally: Tally) -> Iterator[Record]:
    yield from _parse_rows(src, tally, "parquet", read_parquet(src.path, src.name))


def parse_hf_dataset(src: Source, tally: Tally) -> Iterator[Record]:
    yield from _parse_rows(src, tally, "hf_dataset", read_hf_dataset(src.path, src.name))


def _parse_rows(src: Source, tally: Tally, source: str, rows: Iterator[tuple[Any, dict]]) -> Iterator[Record]:
    plan: Plan | None = None
    for index, row in rows:
        if plan is None:
            plan = plan_columns(list(row), row, src)
            if plan.note:
                tally.note(plan.note)
        record = row_record(row, plan, index, source, src, tally)
        if record is not None:
            yield record
    if plan is None:
        raise SkipFile(f"{src.name} has no rows")


def plan_columns(columns: list[str], sample: dict, src: Source) -> Plan:
    """Decide how rows become records, honouring the config's column overrides."""
    cfg = src.config
    lower = {c.lower(): c for c in columns}
    for wanted in (cfg.text_column, cfg.prompt_column, cfg.response_column):
        if wanted and wanted not in columns:
            raise FormatError(f"{src.name} has no column '{wanted}' (columns: {', '.join(columns)})")
    if cfg.prompt_column or cfg.response_column:
        prompt = cfg.prompt_column or _first(lower, PROMPT_COLUMNS)
        reply = cfg.response_column or _first(lower, RESPONSE_COLUMNS)
        if not prompt or not reply:
            raise FormatError(f"{src.name}: set both prompt_column and response_column (columns: {', '.join(columns)})")
        return Plan("pair", (prompt, reply))
    if cfg.text_column:
        return Plan("text", (cfg.text_column,))
    return detect_columns(columns, lower, sample, src.name)


def detect_columns(columns: list[str], lower: dict[str, str], sample: dict, name: str) -> Plan:
    messages = _first(lower, MESSAGE_COLUMNS)
    if messages and isinstance(sample.get(messages), (list, str)):
        return Plan("messages", (messages,))
    prompt, reply = _first(lower, PROMPT_COLUMNS), _first(lower, RESPONSE_COLUMNS)
    if prompt and reply and prompt != reply:
        extra = lower.get("input") if prompt == lower.get("instruction") else None
        return Plan("pair", (prompt, reply) + ((extra,) if extra else ()))
    text = _first(lower, TEXT_COLUMNS)
    if text:
        return Plan("text", (text,))
    strings = [c for c in columns if isinstance(sample.get(c), str)]
    if not strings:
        raise FormatError(f"{name} has no text column (columns: {', '.join(columns)}); set text_column")
    longest = max(strings, key=lambda c: len(sample[c]))
    return Plan("text", (longest,), f"no known column names; used '{longest}' as text (set text_column to choose)")


def row_record(row: dict, plan: Plan, index: Any, source: str, src: Source, tally: Tally) -> Record | None:
    """One row as a record, or None (counted) when its cells are empty or unreadable."""
    origin = {"file": src.name, "index": index}
    title = row.get("title") if isinstance(row.get("title"), str) else ""
    if plan.mode == "text":
        text = _cell(row.get(plan.columns[0]))
        if not text:
            tally.drop("empty_row")
            return None
        tally.count("documents")
        return Record(id=make_id(source, title, text), source=source, kind="document",
                      title=title or text.splitlines()[0][:60], text=text, origin=origin)
    turns = _turns(row, plan, tally)
    messages = messages_from(turns, tally) if turns is not None else []
    if not any(m.role != "system" for m in messages):
        tally.drop("empty_row")
        return None
    tally.count("conversations")
    count_messages(tally, messages)
    return Record(id=make_id(source, title, [m.to_dict() for m in messages]), source=source,
                  kind="conversation", title=title or title_from(messages), messages=messages, origin=origin)


def _turns(row: dict, plan: Plan, tally: Tally) -> list | None:
    if plan.mode == "messages":
        value = row.get(plan.columns[0])
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                tally.drop("malformed_messages")
                return None
        return value if isinstance(value, list) else None
    prompt, reply = _cell(row.get(plan.columns[0])), _cell(row.get(plan.columns[1]))
    extra = _cell(row.get(plan.columns[2])) if len(plan.columns) > 2 else ""
    prompt = f"{prompt}\n\n{extra}" if prompt and extra else prompt
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}] if prompt and reply else None


def read_csv(path: Path, name: str) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV/TSV file in any encoding, with the delimiter sniffed."""
    head = _head(path)
    if len(head) == 65536:  # cut at a line end so no character is split in two
        head = head[: head.rfind(b"\n") + 1] or head[:-4]
    sample, encoding, _ = decode_bytes(head, name)
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 20)[0] + "\n", delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # one long message must not stop the file
    with open(path, encoding=encoding if encoding != "utf-8" else "utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for index, row in enumerate(reader):
                yield index, {k: v for k, v in row.items() if isinstance(k, str)}
        except csv.Error as exc:
            raise FormatError(f"{name} is not valid CSV near line {reader.line_num} ({exc})") from None


def read_parquet(path: Path, name: str) -> Iterator[tuple[int, dict]]:
    """Rows of a Parquet file, read in batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=512)
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield index, row
                index += 1
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{name} is not a readable Parquet file ({exc})") from None


def read_hf_dataset(path: Path, name: str) -> Iterator[tuple[str, dict]]:
    """Rows of a `datasets.save_to_disk` folder (one dataset or a dict of splits)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a broken folder
        raise FormatError(f"{name} is not a readable datasets folder ({exc})") from None
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for split, ds in splits:
        for index, row in enumerate(ds):
            yield (f"{split}:{index}" if split else index), row


def _cell(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _first(lower: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((lower[n] for n in names if n in lower), None)


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(65536)
