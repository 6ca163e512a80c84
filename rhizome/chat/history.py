"""Conversation context: earlier turns in the prompt, follow-up retrieval, reasoning kept apart.

`fit_history` keeps the newest earlier turns whole while they fit a token budget and drops the
oldest first; the system prompt and the current question are never cut (the caller budgets
them first). `retrieval_query` searches with the previous question(s) as well as the new one,
so "and the second one?" finds the sources its question was about. `split_reasoning` takes a
model's `<think>…</think>` out of its answer: it is shown folded, never spoken or remembered.
`remember` / `forget` add a completed exchange to the live memory and remove a session's.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from ..workspace import Workspace
from .sessions import Turn

FOLLOW_UP_TURNS = 1  # previous questions joined to the new one for retrieval
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL | re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str]:
    """(answer, reasoning): `<think>` blocks removed from the answer; an unclosed one runs to the end."""
    text = text or ""
    if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
        before, text = text.split("</think>", 1)  # the template opened the block: all before is reasoning
        reasoning = [before.strip()]
    else:
        reasoning = []
    reasoning += [m.strip() for m in _THINK.findall(text)]
    answer = _THINK.sub("", text).replace("</think>", "")
    return answer.strip(), "\n\n".join(r for r in reasoning if r)


def turn_messages(turn: Turn) -> list[dict[str, str]]:
    return [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer}]


def fit_history(turns: list[Turn], budget: int, count_tokens: Callable[[str], int]) -> list[Turn]:
    """The newest turns whose text fits `budget` tokens together, oldest first; a turn is whole or out."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        size = count_tokens(turn.question) + count_tokens(turn.answer) + 12  # role markers of two messages
        if used + size > budget:
            break  # older turns are dropped: never skip one and keep an older
        kept.append(turn)
        used += size
    return kept[::-1]


def retrieval_query(question: str, turns: list[Turn]) -> str:
    """The new question with the previous one(s): a pronoun alone retrieves nothing useful."""
    earlier = [t.question for t in turns[-FOLLOW_UP_TURNS:]] if turns else []
    return "\n".join([*earlier, question])


def citation(session: str, when: float) -> str:
    return f"chat '{session}', {time.strftime('%Y-%m-%d', time.localtime(when))}"


def remember(ws: Workspace, session: Any, turn: Turn) -> list[int]:
    """Add one completed exchange to the live memory as a `conversation` chunk."""
    import numpy as np

    from ..memory.live import live_chunks
    from ..models import load_embedder, resolve_embedder

    live = live_chunks(ws.memory)
    embedder = live.embedder or _built_embedder(ws) or resolve_embedder(None)
    text = f"{turn.question}\n{turn.answer}"
    vector = np.asarray(load_embedder(embedder).encode([text], normalize_embeddings=True), dtype=np.float32)
    entry = {"text": text, "title": session.title or session.name, "source": "conversation", "kind": "conversation",
             "origin": {"session": session.name, "session_id": session.id, "message": turn.question_id},
             "citation": citation(session.name, turn.asked or time.time())}
    return live.add([entry], vector, owner=owner(session), embedder=embedder)


def forget(ws: Workspace, session: Any) -> int:
    """Remove every exchange of a session from the live memory; returns how many chunks went."""
    from ..memory.live import FILE, live_chunks

    if not (ws.memory / FILE).is_file():
        return 0
    return live_chunks(ws.memory).remove(owner(session))


def owner(session: Any) -> str:
    """Who may remove a chunk: the session, by id and creation time (ids restart in a new database)."""
    return f"session:{session.id}:{int(session.created)}"


def _built_embedder(ws: Workspace) -> str | None:
    from ..workspace import read_json

    meta = read_json(ws.memory / "meta.json", default=None) or {}
    return meta.get("embedder")


def delete_session(ws: Workspace, name: str) -> Any:
    """Delete a session and its exchanges from the memory; returns the deleted session.

    Memory first, then the session, then memory again: a crash in between leaves the session to
    delete again, never memory chunks without a session, and an answer that was streaming when
    the session went is not stored (see `SessionStore.add_answer`) nor remembered.
    """
    from .sessions import SessionStore

    store = SessionStore(ws)
    session = store.require(name)
    forget(ws, session)
    store.delete(session.name)
    forget(ws, session)
    return session


def update_session(ws: Workspace, name: str, persona: str | None = None, private: bool | None = None,
                   train: bool | None = None) -> Any:
    """Open (or create) a session with these settings; going private takes it out of the memory."""
    from .sessions import SessionStore

    session = SessionStore(ws).open(name, persona=persona, private=private, train=train)
    if session.private:
        forget(ws, session)
    return session
