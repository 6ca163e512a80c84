"""Ingest: turn a person's files, folders and zip exports into `corpus.jsonl` records.

`ingest_paths` copies each input into `sources/`, expands folders and zips (safely), sniffs
each file's format from its content, runs that format's parser, appends records with new ids
to the corpus (one atomic rewrite) and writes `ingest_report.json`: one entry per file with
status ok|skipped|error, a reason a person understands, and counts. One bad file never stops
the batch; only when nothing at all could be ingested does it raise `UserError`.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..config import IngestConfig
from ..events import ProgressFn, emit
from ..workspace import UserError, Workspace, write_json
from . import chatgpt, claude, jsonl, markdown, pdf, tabular, text
from .archive import extract_zip
from .common import FormatError, SkipFile, Source, Tally
from .sniff import is_hf_dataset, sniff_format
from .store import CorpusWriteError, CorpusWriter, open_corpus, store_input

__all__ = ["PARSERS", "ingest_paths"]
log = logging.getLogger(__name__)

PARSERS: dict[str, Callable[[Source, Tally], Iterator[Any]]] = {
    "chatgpt": chatgpt.parse, "claude": claude.parse, "pdf": pdf.parse, "markdown": markdown.parse,
    "text": text.parse, "jsonl": jsonl.parse, "csv": tabular.parse_csv, "parquet": tabular.parse_parquet,
    "hf_dataset": tabular.parse_hf_dataset,
}
UNZIPPED = "_unzipped"  # folder of sources/ that holds extracted archives
_PROGRESS_EVERY = 2000  # records between progress events inside one large file


@dataclass
class Job:
    """One file (or dataset folder) to ingest."""

    path: Path
    name: str
    rel: str = ""
    in_archive: bool = False


def ingest_paths(ws: Workspace, paths: list[str | os.PathLike], config: IngestConfig | None = None,
                 progress: ProgressFn | None = None) -> dict:
    """Ingest files, folders and zips into the workspace; returns (and writes) the report."""
    config = IngestConfig.from_dict(config) if isinstance(config, dict) else config or IngestConfig()
    if not paths:
        raise UserError("nothing to ingest: name one or more files, folders or .zip exports")
    ws.ensure()
    entries: list[dict] = []
    queue = deque(plan_inputs(ws, [Path(p).expanduser() for p in paths], entries))
    done = 0
    with open_corpus(ws.corpus) as writer:
        while queue:
            job = queue.popleft()
            entry, more = run_job(ws, job, writer, config, progress, (done, done + 1 + len(queue)))
            entries.append(entry)
            queue.extendleft(reversed(more))
            done += 1
            emit(progress, "ingest", done, done + len(queue), file=job.name, records=writer.added)
    report = {"files": entries, "records_added": writer.added, "records_total": writer.total}
    write_json(ws.ingest_report, report)
    if not any(e["counts"].get("records") for e in entries):
        raise UserError(nothing_ingested(entries))
    return report


def plan_inputs(ws: Workspace, paths: list[Path], entries: list[dict]) -> list[Job]:
    """Copy each input into sources/ and list the files to parse (folders expanded)."""
    jobs: list[Job] = []
    for path in paths:
        if not path.exists():
            entries.append(make_entry(str(path), "error", f"{path} does not exist; check the path"))
            continue
        if not (path.is_file() or path.is_dir()):  # a pipe or device would block the copy
            entries.append(make_entry(str(path), "error", f"{path} is not a regular file or folder"))
            continue
        try:
            stored = store_input(ws, path)
        except OSError as exc:
            entries.append(make_entry(str(path), "error", f"could not copy {path} into the workspace ({exc})"))
            continue
        name = safe(stored.relative_to(ws.sources).as_posix()) if stored != ws.sources else "sources"
        if stored.is_dir() and not is_hf_dataset(stored):
            found = folder_jobs(stored, name)
            jobs += found
            if not found:
                entries.append(make_entry(name, "skipped", f"{name} is a folder with no files"))
        else:
            jobs.append(Job(stored, name, rel=path.name))  # the original name, even if stored as name-<hash>
    return jobs


def folder_jobs(root: Path, name: str, in_archive: bool = False) -> list[Job]:
    """Every visible file under `root` (a datasets folder counts as one), in a stable order."""
    jobs: list[Job] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here != root and is_hf_dataset(here):
            rel = here.relative_to(root).as_posix()
            jobs.append(Job(here, safe(f"{name}/{rel}"), rel, in_archive))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for file in sorted(f for f in files if not f.startswith(".")):
            rel = (here / file).relative_to(root).as_posix()
            jobs.append(Job(here / file, safe(f"{name}/{rel}"), rel, in_archive))
    return jobs


def run_job(ws: Workspace, job: Job, writer: CorpusWriter, config: IngestConfig,
            progress: ProgressFn | None, position: tuple[int, int]) -> tuple[dict, list[Job]]:
    """Ingest one file; returns its report entry and any files it expanded into (zips)."""
    try:
        fmt = sniff_format(job.path, job.name)
    except SkipFile as exc:
        return make_entry(job.name, "skipped", str(exc)), []
    except (FormatError, OSError) as exc:
        return make_entry(job.name, "error", str(exc)), []
    if fmt == "zip":
        return run_zip(ws, job, config)

    def on_record(count: int) -> None:
        emit(progress, "ingest", position[0], position[1], file=job.name, records=count)
    return ingest_file(job, fmt, writer, config, on_record), []


def ingest_file(job: Job, fmt: str, writer: CorpusWriter, config: IngestConfig,
                on_record: Callable[[int], None] | None = None) -> dict:
    """Run the format's parser over one file, writing its records; returns the report entry."""
    tally = Tally()
    status, reason, records, added = "ok", "", 0, 0
    try:
        for record in PARSERS[fmt](Source(job.path, job.name, config, job.rel), tally):
            records += 1
            added += writer.add(record)
            if on_record and records % _PROGRESS_EVERY == 0:
                on_record(records)
    except SkipFile as exc:
        status, reason = "skipped", str(exc)
    except FormatError as exc:
        status, reason = "error", str(exc)
    except CorpusWriteError:
        raise  # the corpus itself failed (disk full?): stop, and leave the old corpus untouched
    except Exception as exc:  # a bug or an odd file must not stop the batch
        log.exception("unexpected failure while ingesting %s", job.name)
        status, reason = "error", f"{job.name} could not be read ({type(exc).__name__}: {exc})"
    tally.counts.update(records=records, added=added, duplicates=records - added)
    if status == "ok" and not records:
        status, reason = "skipped", f"{job.name} holds nothing to ingest" + _dropped_clause(tally)
    elif status == "ok":
        reason = summarise(tally)
    elif records:
        reason += f"; kept the {records} record(s) read before the problem"
    return make_entry(job.name, status, reason, fmt, tally.as_counts())


def run_zip(ws: Workspace, job: Job, config: IngestConfig) -> tuple[dict, list[Job]]:
    """Extract a zip under sources/_unzipped/ (inside the workspace) and queue its files.

    Not beside the zip: a folder copied into sources/ must stay byte-identical to its original,
    or re-ingesting the same folder would look like new content and be copied again.
    """
    if job.in_archive:
        return make_entry(job.name, "skipped", f"{job.name} is an archive inside an archive; unzip it first",
                          "zip"), []
    dest = ws.sources / UNZIPPED / job.name
    if not ws.contains(dest):
        return make_entry(job.name, "error", f"{job.name} would be extracted outside the workspace", "zip"), []
    try:
        members = extract_zip(job.path, dest, job.name, config)
    except FormatError as exc:
        return make_entry(job.name, "error", str(exc), "zip"), []
    jobs = folder_jobs(dest, job.name, in_archive=True)
    reason = f"extracted {len(members)} file(s)" if members else f"{job.name} contains no files"
    return make_entry(job.name, "ok" if members else "skipped", reason, "zip", {"files": len(members)}), jobs


def make_entry(name: str, status: str, reason: str, fmt: str | None = None, counts: dict | None = None) -> dict:
    return {"file": safe(name), "status": status, "reason": safe(reason), "format": fmt, "counts": counts or {}}


def summarise(tally: Tally) -> str:
    """A one-line summary such as `3 conversations, 41 messages; 2 new records; dropped 4 hidden`."""
    c = tally.counts
    kinds = [f"{c[k]} {k}" for k in ("conversations", "messages", "documents", "pages") if c.get(k)]
    parts = [", ".join(kinds) or f"{c['records']} records", f"{c['added']} new record(s)"]
    if c.get("duplicates"):
        parts.append(f"{c['duplicates']} already in the corpus")
    line = "; ".join(parts) + _dropped_clause(tally)
    if c.get("long_messages"):
        line += f"; kept {c['long_messages']} very long message(s) (over 1M characters)"
    return "; ".join([line, *tally.notes])


def _dropped_clause(tally: Tally) -> str:
    if not tally.dropped:
        return ""
    return "; dropped " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in tally.dropped.most_common())


def nothing_ingested(entries: list[dict]) -> str:
    """The one-line UserError when no file gave a record."""
    shown = "; ".join(e["reason"] for e in entries[:3])
    more = f" (and {len(entries) - 3} more)" if len(entries) > 3 else ""
    return f"nothing could be ingested: {shown}{more}. See ingest_report.json for every file."


def safe(text: str) -> str:
    """Text that can be written as UTF-8 (file names may hold undecodable bytes)."""
    return text.encode("utf-8", "replace").decode("utf-8")
