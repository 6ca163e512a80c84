"""Claude exports: `conversations.json` (zipped or not) to conversation records.

A conversation's `chat_messages` carry either typed `content[]` blocks (text is kept as the turn;
thinking, tool_use and tool_result go to metadata) or, in old exports, plain `text` with inline
`<antThinking>` / `<antArtifact>` tags. When messages have `parent_message_uuid` the newest leaf
is walked back to the root (the branch the person last saw); otherwise they are ordered by
`index` or time. Attachments' `extracted_content` is kept in metadata.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from ..records import Message, Record
from .common import (
    Source,
    Tally,
    count_messages,
    iso_time,
    make_id,
    merge_consecutive,
    parse_conversations,
    title_from,
)

_ROLES = {"human": "user", "user": "user", "assistant": "assistant"}
_THINKING = re.compile(r"<antThinking>(.*?)</antThinking>\s*", re.DOTALL)
_ARTIFACT = re.compile(r"<antArtifact\b([^>]*)>(.*?)</antArtifact>", re.DOTALL)
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def parse(src: Source, tally: Tally) -> Iterator[Record]:
    """Yield one record per conversation of a Claude export file."""
    return parse_conversations(src, tally, "chat_messages", list, convert_conversation, "Claude")


def convert_conversation(conv: dict, index: int, src: Source, tally: Tally) -> Record | None:
    """One conversation dict of the export as a Record (None when no turn is left)."""
    meta: dict[str, Any] = {}
    messages: list[Message] = []
    for raw in order_messages([m for m in conv["chat_messages"] if isinstance(m, dict)]):
        turn = convert_message(raw, len(messages), meta, tally)
        if turn is not None:
            messages.append(turn)
    messages, merged = merge_consecutive(messages)
    tally.count("merged_assistant_parts", merged)
    if not messages:
        tally.drop("empty_conversation")
        return None
    tally.count("conversations")
    count_messages(tally, messages)
    head = {"conversation_id": _str(conv.get("uuid")) or None, "summary": _str(conv.get("summary")),
            "update_time": iso_time(conv.get("updated_at"))}
    meta = {**{k: v for k, v in head.items() if v}, **meta}
    title = _str(conv.get("name"))
    return Record(
        id=make_id("claude", meta.get("conversation_id"), title, [m.to_dict() for m in messages]),
        source="claude", kind="conversation", title=title or title_from(messages),
        created_at=iso_time(conv.get("created_at")), messages=messages, metadata=meta,
        origin={"file": src.name, "index": index},
    )


def order_messages(msgs: list[dict]) -> list[dict]:
    """The branch the person last saw (newest leaf to root), else all messages in order."""
    by_id = {m["uuid"]: m for m in msgs if isinstance(m.get("uuid"), str)}
    if not any(isinstance(m.get("parent_message_uuid"), str) for m in msgs):
        return sorted(msgs, key=_position(msgs))
    parents = {_str(m.get("parent_message_uuid")) for m in msgs}
    leaves = [m for m in msgs if _str(m.get("uuid")) not in parents] or msgs
    leaf = max(leaves, key=_position(msgs))
    path, seen = [], set()
    node: dict | None = leaf
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        path.append(node)
        node = by_id.get(_str(node.get("parent_message_uuid")))
    return path[::-1]


def _position(msgs: list[dict]):
    """Sort key: explicit index, then creation time, then place in the file."""
    place = {id(m): i for i, m in enumerate(msgs)}

    def key(m: dict) -> tuple:
        index = m.get("index")
        index = index if isinstance(index, (int, float)) and not isinstance(index, bool) else float("inf")
        return (index, iso_time(m.get("created_at")) or "", place[id(m)])
    return key


def convert_message(raw: dict, turn: int, meta: dict, tally: Tally) -> Message | None:
    """The visible text of one message; thinking, tools and attachments go to `meta`."""
    role = _ROLES.get(_str(raw.get("sender")))
    if role is None:
        tally.drop("unknown_role")
        return None
    _keep_attachments(raw, turn, meta, tally)
    blocks = raw.get("content")
    text = _text_from_blocks(blocks, turn, meta, tally) if isinstance(blocks, list) and blocks else None
    if not text:
        text = _str(raw.get("text"))
    text = strip_inline_tags(text, turn, meta).strip()
    if not text:
        tally.drop("empty_message")
        return None
    return Message(role, text)


def _text_from_blocks(blocks: list, turn: int, meta: dict, tally: Tally) -> str:
    texts: list[str] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_str(block.get("text")))
        elif kind == "thinking":
            meta.setdefault("thinking", []).append({"turn": turn, "text": _str(block.get("thinking"))})
        elif kind == "tool_use":
            meta.setdefault("tool_use", []).append(
                {"turn": turn, "name": _str(block.get("name")), "input": block.get("input")})
        elif kind == "tool_result":
            meta.setdefault("tool_results", []).append(
                {"turn": turn, "name": _str(block.get("name")), "content": _block_text(block.get("content"))})
        else:
            tally.drop(f"unsupported_block_{kind}" if isinstance(kind, str) else "unsupported_block")
    return "\n\n".join(t for t in texts if t.strip())


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_str(c.get("text")) for c in content if isinstance(c, dict) and c.get("text"))
    return ""


def strip_inline_tags(text: str, turn: int, meta: dict) -> str:
    """Old exports: move <antThinking> into metadata, unwrap <antArtifact> into its content."""
    if "<ant" not in text:
        return text
    for thought in _THINKING.findall(text):
        meta.setdefault("thinking", []).append({"turn": turn, "text": thought.strip()})
    text = _THINKING.sub("", text)
    return _ARTIFACT.sub(lambda m: _render_artifact(m, turn, meta), text)


def _render_artifact(match: re.Match, turn: int, meta: dict) -> str:
    attrs = dict(_ATTR.findall(match.group(1)))
    body = match.group(2).strip("\n")
    meta.setdefault("artifacts", []).append(
        {"turn": turn, **{k: attrs[k] for k in ("identifier", "type", "title", "language") if k in attrs}})
    if attrs.get("type") == "application/vnd.ant.code":
        return f"```{attrs.get('language', '')}\n{body}\n```"
    return body


def _keep_attachments(raw: dict, turn: int, meta: dict, tally: Tally) -> None:
    for att in raw.get("attachments") if isinstance(raw.get("attachments"), list) else []:
        if isinstance(att, dict) and _str(att.get("extracted_content")):
            meta.setdefault("attachments", []).append(
                {"turn": turn, "file_name": _str(att.get("file_name")), "file_type": _str(att.get("file_type")),
                 "extracted_content": att["extracted_content"]})
            tally.count("attachments")
    files = raw.get("files")
    if isinstance(files, list) and files:
        tally.drop("file_without_content", len(files))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
