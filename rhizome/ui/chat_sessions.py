"""Chat tab, conversations: the sessions list, new / open / rename / delete, persona and privacy.

The core keeps the sessions (`rhizome.chat.sessions`, `conversations.sqlite`); this module only
shows them. The open session's name lives in the browser (`gr.BrowserState`), so a reload, or
the app restarting, brings the same conversation back. A session is created with the first
question asked in it (named by the time), titled from that question.
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import gradio as gr

from ..config import ChatConfig
from ..workspace import UserError
from .common import Context, esc, notice

STORAGE_KEY = "rhizome-chat-session"


def build_sessions(ctx: Context) -> SimpleNamespace:
    """The conversations panel (to sit in the chat tab's left column)."""
    gr.Markdown("### Conversations")
    current = getattr(ctx, "chat_session", None) or browser_state()
    pick = gr.Dropdown(session_choices(ctx), value=None, label="Conversation", info="newest first",
                       elem_id="rz-session-pick")
    with gr.Row():
        new = gr.Button("New", size="sm", elem_id="rz-session-new")
        delete = gr.Button("Delete", size="sm", variant="stop", elem_id="rz-session-delete")
    with gr.Accordion("Conversation settings", open=False, elem_id="rz-session-settings"):
        persona = gr.Textbox("", label="Persona (system prompt)", lines=3, elem_id="rz-session-persona",
                             placeholder=ChatConfig().system_prompt)
        private = gr.Checkbox(False, label="Private: never added to the memory", elem_id="rz-session-private")
        train = gr.Checkbox(False, label="Learn from this conversation at the next build", elem_id="rz-session-train")
        with gr.Row():
            rename_to = gr.Textbox("", show_label=False, placeholder="new name", scale=3, elem_id="rz-session-rename")
            rename = gr.Button("Rename", size="sm", scale=1)
        save = gr.Button("Save settings", size="sm", elem_id="rz-session-save")
    note = gr.HTML(elem_id="rz-session-note")
    return SimpleNamespace(current=current, pick=pick, new=new, delete=delete, persona=persona, private=private,
                           train=train, rename_to=rename_to, rename=rename, save=save, note=note)


def browser_state() -> gr.BrowserState:
    """The open session's name, kept in the browser's localStorage across reloads."""
    return gr.BrowserState(None, storage_key=STORAGE_KEY)


def session_choices(ctx: Context) -> list[tuple[str, str]]:
    """(label, name), most recently used first, labelled with the first question."""
    from ..chat.sessions import SessionStore

    try:
        sessions = SessionStore(ctx.ws).list()
    except UserError:
        return []
    return [(f"{s.title or '(no question yet)'} · {s.name}" + (" 🔒" if s.private else ""), s.name)
            for s in sessions]


def history_messages(ctx: Context, name: str) -> list[dict[str, str]]:
    """The stored conversation as chat-box messages (reasoning folded above each answer)."""
    from ..chat.sessions import SessionStore

    box = []
    for m in SessionStore(ctx.ws).messages(name):
        content = reply_html(m["content"], m["reasoning"]) if m["role"] == "assistant" else m["content"]
        box.append({"role": m["role"], "content": content})
    return box


def reply_html(answer: str, reasoning: str = "") -> str:
    """An answer with its reasoning folded in a <details> above it (never spoken or remembered)."""
    if not reasoning:
        return answer
    return f"<details class='rz-reasoning'><summary>Reasoning</summary>\n\n{esc(reasoning)}\n\n</details>\n\n{answer}"


def streamed_reply(text: str) -> str:
    """A reply as it streams: reasoning folded away from the start, answer text after it."""
    from ..chat.history import split_reasoning

    answer, reasoning = split_reasoning(text)
    return reply_html(answer, reasoning)


def open_session(ctx: Context, name: str | None) -> tuple:
    """(current, pick, chat box, persona, private, train, note) for the chosen session, or a blank one."""
    from ..chat.sessions import SessionStore

    session = SessionStore(ctx.ws).get(name) if name else None
    if session is None:
        return None, gr.Dropdown(choices=session_choices(ctx), value=None), [], "", False, False, ""
    return (session.name, gr.Dropdown(choices=session_choices(ctx), value=session.name),
            history_messages(ctx, session.name), session.persona or "", session.private, session.train, "")


def restore(ctx: Context, name: str | None) -> tuple:
    """On page load: the session this browser had open, if it still exists."""
    try:
        return open_session(ctx, name)
    except UserError as exc:  # a corrupt database: say so, keep the tab usable
        return None, gr.Dropdown(choices=[], value=None), [], "", False, False, notice(esc(exc), "warn")


def ensure_session(ctx: Context, current: str | None, question: str, persona: str, private: bool,
                   train: bool) -> tuple[str | None, Any]:
    """The session the next question goes to: the open one, or a new one named by the time."""
    from ..chat.history import update_session
    from ..chat.sessions import SessionStore

    store = SessionStore(ctx.ws)
    if current and store.get(current) is not None:
        return current, gr.skip()
    if not (question or "").strip():
        return current, gr.skip()  # the answer step says what is wrong
    name = time.strftime("chat-%Y%m%d-%H%M%S")
    while store.get(name) is not None:
        name += "-2"
    update_session(ctx.ws, name, persona=persona or "", private=bool(private), train=bool(train))
    return name, gr.Dropdown(choices=session_choices(ctx), value=name)


def refresh_list(ctx: Context, current: str | None) -> Any:
    return gr.Dropdown(choices=session_choices(ctx), value=current)


def delete_session(ctx: Context, current: str | None) -> tuple:
    """Delete the open session and its memory; an answer still streaming into it is not saved."""
    from ..chat.history import delete_session as delete

    if not current:
        raise UserError("no conversation is open: pick one to delete")
    gone = delete(ctx.ws, current)
    return (*open_session(ctx, None)[:-1],
            notice(f"Deleted <b>{esc(gone.name)}</b> ({gone.turns} exchanges) and its memory.", "ok"))


def rename_session(ctx: Context, current: str | None, new_name: str) -> tuple:
    from ..chat.sessions import SessionStore

    if not current:
        raise UserError("no conversation is open: pick one to rename")
    renamed = SessionStore(ctx.ws).rename(current, new_name)
    return renamed.name, gr.Dropdown(choices=session_choices(ctx), value=renamed.name), "", \
        notice(f"Renamed to <b>{esc(renamed.name)}</b>.", "ok")


def save_settings(ctx: Context, current: str | None, persona: str, private: bool, train: bool) -> tuple:
    from ..chat.history import update_session

    if not current:
        return gr.skip(), notice("These settings apply to the conversation your next question starts.", "info")
    session = update_session(ctx.ws, current, persona=persona or "", private=bool(private), train=bool(train))
    extra = " It is private: nothing from it is in the memory." if session.private else ""
    return gr.Dropdown(choices=session_choices(ctx), value=session.name), notice(f"Saved.{extra}", "ok")


def wire(ctx: Context, sess: SimpleNamespace, box: Any, others: list) -> None:
    """The panel's own events; `box` is the main chat box, `others` are cleared with a new session."""
    from .common import guard

    opened = [sess.current, sess.pick, box, sess.persona, sess.private, sess.train, sess.note]
    sess.pick.input(guard(lambda name: open_session(ctx, name)), [sess.pick], opened)
    sess.new.click(lambda: open_session(ctx, None), None, opened).then(lambda: ([], ""), None, others)
    sess.delete.click(guard(lambda cur: delete_session(ctx, cur)), [sess.current], opened)
    sess.rename.click(guard(lambda cur, new: rename_session(ctx, cur, new)), [sess.current, sess.rename_to],
                      [sess.current, sess.pick, sess.rename_to, sess.note])
    sess.save.click(guard(lambda cur, p, priv, t: save_settings(ctx, cur, p, priv, t)),
                    [sess.current, sess.persona, sess.private, sess.train], [sess.pick, sess.note])
