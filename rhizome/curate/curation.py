"""Curation: the person's approve / reject / edit decisions, kept in `WS/curation.sqlite`.

Decisions are keyed by example id (stable across builds: record id + position) and honoured by
the next build: `rejected` examples are dropped (reason `rejected`), `edited` ones train on the
edited messages, and `approved` / `edited` ones are protected from the automatic dedup and
quality filters. `list_examples` pages through a built split (or the dropped examples) with
each example's current decision, for the Data tab.
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import replace
from functools import lru_cache
from typing import Any

from ..records import ROLES, Example, Message
from ..workspace import UserError, Workspace, read_jsonl

STATUSES = ("approved", "rejected", "edited")
LISTABLE = ("train", "validation", "test", "all", "dropped")
_SCHEMA = ("CREATE TABLE IF NOT EXISTS decisions (example_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
           " messages TEXT, updated_at REAL NOT NULL)")


def _connect(ws: Workspace) -> sqlite3.Connection:
    ws.root.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(ws.curation_db, timeout=10)
    con.execute(_SCHEMA)
    return con


def _checked_messages(messages: Any) -> list[dict[str, str]]:
    """Edited messages as plain dicts, or a UserError saying what is wrong with them."""
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as exc:
            raise UserError(f"edited messages are not valid JSON: {exc}") from exc
    if not isinstance(messages, list) or not messages:
        raise UserError("an edit needs the example's messages as a non-empty list")
    out = []
    for m in messages:
        role, content = (m.role, m.content) if isinstance(m, Message) else (m.get("role"), m.get("content"))
        if role not in ROLES or not isinstance(content, str) or not content.strip():
            raise UserError(f"each edited message needs a role in {ROLES} and some text; got {m!r:.80}")
        out.append({"role": role, "content": content.strip()})
    if out[-1]["role"] != "assistant":
        raise UserError("the last edited message must be the assistant's reply")
    return out


def set_decision(ws: Workspace, example_id: str, status: str, messages: Any = None) -> dict[str, Any]:
    """Record (or replace) the decision on one example; returns it."""
    if status not in STATUSES:
        raise UserError(f"decision must be one of {', '.join(STATUSES)}, not {status!r}")
    if not example_id:
        raise UserError("no example selected")
    stored = _checked_messages(messages) if status == "edited" else None
    if status != "edited" and messages is not None:
        raise UserError("messages can only be given with the 'edited' decision")
    with closing(_connect(ws)) as con, con:
        con.execute("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?)",
                    (example_id, status, json.dumps(stored) if stored else None, time.time()))
    return {"example_id": example_id, "status": status, "messages": stored}


def clear_decision(ws: Workspace, example_id: str) -> None:
    """Forget the decision on one example (it is judged automatically again)."""
    if ws.curation_db.exists():
        with closing(_connect(ws)) as con, con:
            con.execute("DELETE FROM decisions WHERE example_id = ?", (example_id,))


def load_decisions(ws: Workspace) -> dict[str, dict[str, Any]]:
    """All decisions by example id: {"status", "messages" (edited only), "updated_at"}."""
    if not ws.curation_db.exists():
        return {}
    with closing(_connect(ws)) as con:
        rows = con.execute("SELECT example_id, status, messages, updated_at FROM decisions").fetchall()
    return {r[0]: {"status": r[1], "messages": json.loads(r[2]) if r[2] else None, "updated_at": r[3]} for r in rows}


def apply_decisions(examples: list[Example], decisions: dict[str, dict]) -> tuple[list[Example], set[str], Counter, dict]:
    """Examples after curation, the protected ids, drop counts and a summary."""
    kept, protected, drops = [], set(), Counter()
    seen: Counter = Counter()
    for ex in examples:
        decision = decisions.get(ex.id)
        if decision is None:
            kept.append(ex)
            continue
        seen[decision["status"]] += 1
        if decision["status"] == "rejected":
            drops["rejected"] += 1
            continue
        if decision["status"] == "edited" and decision.get("messages"):
            ex = replace(ex, messages=[Message(m["role"], m["content"]) for m in decision["messages"]])
        protected.add(ex.id)
        kept.append(ex)
    summary = {**{s: seen.get(s, 0) for s in STATUSES}, "unmatched": len(decisions) - sum(seen.values())}
    return kept, protected, drops, summary


def _rows(ws: Workspace, split: str) -> list[dict[str, Any]]:
    if split == "dropped":
        names = [("dropped", ws.dataset / "dropped_detailed.jsonl")]
    else:
        chosen = ("train", "validation", "test") if split == "all" else (split,)
        names = [(s, ws.split_path(s, detailed=True)) for s in chosen]
    rows = []
    for name, path in names:
        if path.is_file():
            rows.extend(_read_split(str(path), path.stat().st_mtime_ns, name))
    return rows


@lru_cache(maxsize=8)
def _read_split(path: str, mtime_ns: int, name: str) -> tuple[dict[str, Any], ...]:
    # Keyed on the file's mtime: paging through a split re-reads it only after a new build.
    return tuple({**row, "split": name} for row in read_jsonl(path))


def _matches(row: dict[str, Any], needle: str) -> bool:
    hay = " ".join([row.get("id", ""), " ".join(row.get("themes") or []),
                    *(m.get("content", "") for m in row.get("messages") or [])])
    return needle in hay.lower()


def list_examples(ws: Workspace, split: str = "train", query: str = "", page: int = 1,
                  page_size: int = 20) -> dict[str, Any]:
    """One page of examples of a split ("train", "validation", "test", "all" or "dropped")."""
    if split not in LISTABLE:
        raise UserError(f"split must be one of {', '.join(LISTABLE)}, not {split!r}")
    page_size = max(1, min(int(page_size), 500))
    needle = (query or "").strip().lower()
    rows = [r for r in _rows(ws, split) if not needle or _matches(r, needle)]
    pages = max(1, math.ceil(len(rows) / page_size))
    page = min(max(1, int(page)), pages)
    decisions = load_decisions(ws)
    out = []
    for row in rows[(page - 1) * page_size : page * page_size]:
        msgs = row.get("messages") or []
        decision = decisions.get(row.get("id"), {})
        out.append({
            "id": row.get("id"), "split": row["split"], "messages": msgs,
            "prompt": "\n".join(m["content"] for m in msgs[:-1] if m["role"] != "system"),
            "response": msgs[-1]["content"] if msgs else "", "themes": row.get("themes") or [],
            "weight": row.get("weight"), "quality": row.get("quality"), "source": row.get("source"),
            "status": decision.get("status", "pending"), "dropped": row.get("dropped"),
            "origin": row.get("origin") or {},
        })
    return {"rows": out, "total": len(rows), "page": page, "pages": pages, "page_size": page_size}
