"""Chat sessions: conversations kept in the workspace's `conversations.sqlite`.

One row per session (name, title from its first question, persona, private and training flags)
and one row per message (role, text, reasoning, model, sources and timings as JSON, time). A
question is written when it is asked and its answer when it completes, each in its own short
transaction, so a crash or a killed process loses at most the unfinished answer. An answer
points at the question it answers (`reply_to`), so two tabs writing to one session at once
interleave cleanly: every question keeps its own answer, nothing is lost or written twice.

The database runs in WAL mode (readers never block the writer). A corrupt or locked file
surfaces as a one-line `UserError`, never a traceback.
"""
from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..workspace import UserError, Workspace

NAME_MAX = 64
# Plain names: letters, digits, space, dot, dash, underscore; no path characters, no leading dot.
_NAME = re.compile(r"^[^\W][\w .\-]*$", re.UNICODE)
TITLE_CHARS = 60
LOCK_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, title TEXT NOT NULL DEFAULT '',
  persona TEXT, private INTEGER NOT NULL DEFAULT 0, train INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  role TEXT NOT NULL, content TEXT NOT NULL, reasoning TEXT NOT NULL DEFAULT '',
  reply_to INTEGER REFERENCES messages(id) ON DELETE CASCADE,
  model TEXT, sources TEXT NOT NULL DEFAULT '[]', timings TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_session ON messages(session_id, id);
"""


@dataclass
class Session:
    """A session's header: what the sessions list shows."""

    id: int
    name: str
    title: str = ""
    persona: str | None = None
    private: bool = False
    train: bool = False
    created: float = 0.0
    updated: float = 0.0
    turns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "persona": self.persona, "private": self.private,
                "train": self.train, "created": self.created, "updated": self.updated, "turns": self.turns}


@dataclass
class Turn:
    """One completed exchange: a question and the answer to it."""

    question: str
    answer: str
    reasoning: str = ""
    model: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    asked: float = 0.0
    answered: float = 0.0
    question_id: int = 0


def check_name(name: str | None) -> str:
    """The session name, stripped; a UserError for empty, over-long or path-like names."""
    name = (name or "").strip()
    if not name:
        raise UserError("the session name is empty: give it a name such as 'holiday plans'")
    if len(name) > NAME_MAX:
        raise UserError(f"the session name is too long ({len(name)} characters, at most {NAME_MAX})")
    if not _NAME.match(name) or ".." in name:
        raise UserError(f"the session name {name!r} may only hold letters, digits, spaces, '.', '-' and '_' "
                        "(no '/', '\\' or leading dot)")
    return name


def title_from(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


class SessionStore:
    """The workspace's conversations; every method opens a short-lived connection (thread-safe)."""

    def __init__(self, ws: Workspace) -> None:
        self.path = ws.root / "conversations.sqlite"
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise UserError(f"cannot open the conversations database {self.path}: {exc}") from exc
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise UserError(f"the conversations database {self.path} is locked by another program; "
                                "try again in a moment") from exc
            raise UserError(f"the conversations database {self.path} failed: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
            raise UserError(f"the conversations database {self.path} is unreadable ({exc}); move it aside "
                            "to start afresh (your other workspace files are untouched)") from exc
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent writers queue instead of failing."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # ---- sessions ----------------------------------------------------------------------

    def list(self) -> list[Session]:
        """Every session, most recently used first."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT s.id, s.name, s.title, s.persona, s.private, s.train, s.created, s.updated,"
                " (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'assistant')"
                " FROM sessions s ORDER BY s.updated DESC, s.id DESC").fetchall()
        return [_session(r) for r in rows]

    def get(self, name: str) -> Session | None:
        name = check_name(name)
        with self._connect() as con:
            row = con.execute(
                "SELECT s.id, s.name, s.title, s.persona, s.private, s.train, s.created, s.updated,"
                " (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'assistant')"
                " FROM sessions s WHERE s.name = ?", (name,)).fetchone()
        return _session(row) if row else None

    def require(self, name: str) -> Session:
        session = self.get(name)
        if session is None:
            known = ", ".join(s.name for s in self.list()[:10]) or "none yet"
            raise UserError(f"no chat session named {name!r} (sessions: {known})")
        return session

    def open(self, name: str, persona: str | None = None, private: bool | None = None,
             train: bool | None = None) -> Session:
        """The session NAME, created when new; given settings are saved with it."""
        name = check_name(name)
        now = time.time()
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO sessions(name, created, updated) VALUES (?, ?, ?)", (name, now, now))
            for column, value in (("persona", persona), ("private", private), ("train", train)):
                if value is not None:
                    value = int(value) if isinstance(value, bool) else (value.strip() or None)
                    con.execute(f"UPDATE sessions SET {column} = ? WHERE name = ?", (value, name))
        return self.require(name)

    def rename(self, old: str, new: str) -> Session:
        session, new = self.require(old), check_name(new)
        if new != session.name and self.get(new) is not None:
            raise UserError(f"a session named {new!r} already exists")
        with self._write() as con:
            con.execute("UPDATE sessions SET name = ? WHERE id = ?", (new, session.id))
        return self.require(new)

    def delete(self, name: str) -> Session:
        """Delete the session and its messages; returns what was deleted."""
        session = self.require(name)
        with self._write() as con:
            con.execute("DELETE FROM sessions WHERE id = ?", (session.id,))
        return session

    # ---- messages ----------------------------------------------------------------------

    def add_question(self, name: str, question: str) -> int:
        """Store a question as it is asked; returns its message id (the answer points at it)."""
        session, now = self.require(name), time.time()
        with self._write() as con:
            cur = con.execute("INSERT INTO messages(session_id, role, content, created) VALUES (?, 'user', ?, ?)",
                              (session.id, question, now))
            con.execute("UPDATE sessions SET updated = ?, title = CASE WHEN title = '' THEN ? ELSE title END"
                        " WHERE id = ?", (now, title_from(question), session.id))
            return int(cur.lastrowid)

    def add_answer(self, question_id: int, answer: str, reasoning: str = "", model: str | None = None,
                   sources: list | None = None, timings: dict | None = None) -> Session | None:
        """Store the answer to question `question_id`; returns its session as it is now, or None
        when the session was deleted while the answer was being written (the answer is not kept)."""
        now = time.time()
        with self._write() as con:
            row = con.execute("SELECT session_id FROM messages WHERE id = ? AND role = 'user'",
                              (question_id,)).fetchone()
            if row is None:
                return None
            done = con.execute("SELECT 1 FROM messages WHERE reply_to = ?", (question_id,)).fetchone()
            if done:
                return None  # already answered: never store a turn twice
            con.execute("INSERT INTO messages(session_id, role, content, reasoning, reply_to, model, sources,"
                        " timings, created) VALUES (?, 'assistant', ?, ?, ?, ?, ?, ?, ?)",
                        (row[0], answer, reasoning, question_id, model,
                         json.dumps(sources or [], ensure_ascii=False, default=str),
                         json.dumps(timings or {}, ensure_ascii=False, default=str), now))
            con.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, row[0]))
        return self.by_id(row[0])

    def by_id(self, session_id: int) -> Session | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT s.id, s.name, s.title, s.persona, s.private, s.train, s.created, s.updated,"
                " (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'assistant')"
                " FROM sessions s WHERE s.id = ?", (session_id,)).fetchone()
        return _session(row) if row else None

    def turns(self, name: str, before: int | None = None) -> list[Turn]:
        """Completed exchanges, oldest first (questions still unanswered are left out).

        `before`: only questions asked before that message id (the history of a new question).
        """
        session = self.require(name)
        with self._connect() as con:
            rows = con.execute(
                "SELECT q.id, q.content, q.created, a.content, a.reasoning, a.model, a.sources, a.timings, a.created"
                " FROM messages q JOIN messages a ON a.reply_to = q.id"
                " WHERE q.session_id = ? AND q.role = 'user' AND (? IS NULL OR q.id < ?) ORDER BY q.id",
                (session.id, before, before)).fetchall()
        return [Turn(question=r[1], answer=r[3], reasoning=r[4] or "", model=r[5], sources=json.loads(r[6] or "[]"),
                     timings=json.loads(r[7] or "{}"), asked=r[2], answered=r[8], question_id=r[0]) for r in rows]

    def messages(self, name: str) -> list[dict[str, Any]]:
        """Every stored message in order, unanswered questions included (what `sessions show` prints)."""
        session = self.require(name)
        with self._connect() as con:
            rows = con.execute("SELECT id, role, content, reasoning, reply_to, model, created FROM messages"
                               " WHERE session_id = ? ORDER BY id", (session.id,)).fetchall()
        return [{"id": r[0], "role": r[1], "content": r[2], "reasoning": r[3], "reply_to": r[4], "model": r[5],
                 "created": r[6]} for r in rows]


def _session(row: tuple) -> Session:
    return Session(id=row[0], name=row[1], title=row[2] or "", persona=row[3], private=bool(row[4]),
                   train=bool(row[5]), created=row[6], updated=row[7], turns=int(row[8]))


def training_records(ws: Workspace, include_all: bool = False) -> list:
    """Saved sessions as corpus records (source "rhizome", kind "conversation") for `build`.

    Sessions marked `train` always; with `include_all`, every session that is not private too.
    Each record holds the session's completed exchanges in order; unanswered questions are left out.
    """
    from ..records import Message, Record

    if not (ws.root / "conversations.sqlite").is_file():
        return []
    store = SessionStore(ws)
    records = []
    for session in store.list():
        if not (session.train or (include_all and not session.private)):
            continue
        turns = store.turns(session.name)
        if not turns:
            continue
        messages = []
        if session.persona:
            messages.append(Message("system", session.persona))
        for turn in turns:
            messages += [Message("user", turn.question), Message("assistant", turn.answer)]
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(session.created))
        records.append(Record(id=f"rhizome-session-{session.id}-{int(session.created)}", source="rhizome",
                              kind="conversation", title=session.title or session.name, created_at=created,
                              messages=messages, metadata={"session": session.name, "turns": len(turns)},
                              origin={"file": "conversations.sqlite", "session": session.name}))
    return records


def sessions_summary(ws: Workspace) -> dict[str, int]:
    """Counts the Data tab shows: sessions, completed turns, opted in for training, private."""
    if not (ws.root / "conversations.sqlite").is_file():
        return {"sessions": 0, "turns": 0, "train": 0, "private": 0}
    sessions = SessionStore(ws).list()
    return {"sessions": len(sessions), "turns": sum(s.turns for s in sessions),
            "train": sum(s.train for s in sessions), "private": sum(s.private for s in sessions)}
