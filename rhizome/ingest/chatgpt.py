"""ChatGPT exports: `conversations.json` (or split `conversations-000.json`) to conversation records.

Each conversation is a tree (`mapping`): edits and regenerations are sibling branches. Only the
branch the person last saw is kept, found by walking from `current_node` up the `parent` links
and reversing. Hidden, system and tool-call messages are dropped and counted; tool results,
reasoning and custom instructions are kept in metadata, not as turns. The file is streamed one
conversation at a time, so a 1 GB export never sits in memory.
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

# Newer exports wrap citations in private-use characters: \ue200cite\ue202turn0search1\ue201.
# Drop the whole span, then any stray character of that block, then old 【3†source】 markers.
_CITE_SPAN = re.compile("[ \t]*\ue200[^\ue200\ue201]*\ue201")
_PRIVATE_USE = re.compile("[\ue200-\ue2ff]")
_OLD_CITE = re.compile(r"[ \t]*【\d+(?::\d+)?†[^】]{0,80}】")
_IMAGE_PARTS = ("image_asset_pointer",)


def parse(src: Source, tally: Tally) -> Iterator[Record]:
    """Yield one record per conversation of a ChatGPT export file."""
    return parse_conversations(src, tally, "mapping", dict, convert_conversation, "ChatGPT")


def convert_conversation(conv: dict, index: int, src: Source, tally: Tally) -> Record | None:
    """One conversation dict of the export as a Record (None when no visible turn is left)."""
    meta: dict[str, Any] = {}
    messages = collect_turns(conv["mapping"], conv.get("current_node"), meta, tally)
    if not messages:
        tally.drop("empty_conversation")
        return None
    tally.count("conversations")
    count_messages(tally, messages)
    slug = meta.pop("last_model_slug", None)
    meta = {"conversation_id": _str(conv.get("conversation_id")) or _str(conv.get("id")) or None,
            "model_slug": _str(conv.get("default_model_slug")) or slug,
            "update_time": iso_time(conv.get("update_time")), **meta}
    title = _str(conv.get("title"))
    return Record(
        id=make_id("chatgpt", meta["conversation_id"], title, [m.to_dict() for m in messages]),
        source="chatgpt", kind="conversation", title=title or title_from(messages),
        created_at=iso_time(conv.get("create_time")), messages=messages, metadata=meta,
        origin={"file": src.name, "index": index},
    )


def collect_turns(mapping: dict, current: Any, meta: dict, tally: Tally) -> list[Message]:
    """The visible turns of the seen branch, with split assistant replies merged."""
    messages: list[Message] = []
    joins: list[str] = []
    continued = False
    for node_id in walk_branch(mapping, current):
        node = mapping.get(node_id)
        msg = node.get("message") if isinstance(node, dict) else None
        turn = convert_message(msg, meta, tally) if isinstance(msg, dict) else None
        if turn is None:
            continue
        messages.append(turn)
        joins.append("" if continued else "\n\n")  # a reply cut at max_tokens continues mid-sentence
        continued = _was_cut_off(msg)
    messages, merged = merge_consecutive(messages, joins=joins)
    tally.count("merged_assistant_parts", merged)
    # Strip only after merging: a continuation may start with the space that joins it.
    return [Message(m.role, m.content.strip()) for m in messages]


def walk_branch(mapping: dict, current: Any) -> list[str]:
    """Node ids from the root to `current` (or to the newest leaf when current_node is unusable)."""
    if not isinstance(current, str) or current not in mapping:
        current = _newest_leaf(mapping)
    path: list[str] = []
    seen: set[str] = set()
    node = current
    while isinstance(node, str) and node in mapping and node not in seen:
        seen.add(node)
        path.append(node)
        parent = mapping[node].get("parent") if isinstance(mapping[node], dict) else None
        node = parent
    return path[::-1]


def _newest_leaf(mapping: dict) -> str | None:
    """The childless node with the latest message time; ties go to the later node."""
    best, best_time = None, float("-inf")
    for node_id, node in mapping.items():
        if not isinstance(node, dict) or node.get("children"):
            continue
        msg = node.get("message") if isinstance(node.get("message"), dict) else {}
        stamp = msg.get("create_time")
        stamp = float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else 0.0
        if stamp >= best_time:
            best, best_time = node_id, stamp
    return best


def convert_message(msg: dict, meta: dict, tally: Tally) -> Message | None:
    """A visible user/assistant turn, or None (dropped and counted, or moved into `meta`)."""
    author = msg.get("author") if isinstance(msg.get("author"), dict) else {}
    role = author.get("role")
    content = msg.get("content") if isinstance(msg.get("content"), dict) else {}
    ctype = content.get("content_type")
    msg_meta = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
    if ctype == "user_editable_context":
        meta["custom_instructions"] = {k: content.get(k) for k in ("user_profile", "user_instructions")
                                       if isinstance(content.get(k), str)}
        return None
    reason = _hidden_reason(role, msg, msg_meta)
    if reason:
        tally.drop(reason)
        return None
    if role == "tool":
        _keep_tool_result(author, ctype, content, meta, tally)
        return None
    if ctype in ("thoughts", "reasoning_recap"):
        _keep_reasoning(ctype, content, meta, tally)
        return None
    text = render_content(ctype, content, tally)
    if text is None:
        return None
    text = strip_citations(text)
    if not text.strip():
        tally.drop("empty_message")
        return None
    if role == "assistant" and isinstance(msg_meta.get("model_slug"), str):
        meta["last_model_slug"] = msg_meta["model_slug"]
    return Message(role, text)


def _hidden_reason(role: Any, msg: dict, msg_meta: dict) -> str | None:
    if msg_meta.get("is_visually_hidden_from_conversation"):
        return "hidden"
    if role == "system":
        return "system"
    if role not in ("user", "assistant", "tool"):
        return "unknown_role"
    recipient = msg.get("recipient", "all")
    if recipient not in ("all", None):
        return "tool_call"
    return None


def render_content(ctype: Any, content: dict, tally: Tally) -> str | None:
    """The text of a user/assistant content block, by content type; None if it has none."""
    if ctype in ("text", "multimodal_text"):
        return _render_parts(content.get("parts"), tally)
    if ctype == "code":
        lang = content.get("language") if content.get("language") not in (None, "unknown") else ""
        return f"```{lang}\n{_str(content.get('text')).rstrip()}\n```" if _str(content.get("text")).strip() else ""
    if ctype == "execution_output":
        return _str(content.get("text"))
    if ctype == "tether_quote":
        return _render_quote(content)
    tally.drop(f"unsupported_{ctype}" if isinstance(ctype, str) else "unsupported_content")
    return None


def _render_parts(parts: Any, tally: Tally) -> str:
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("content_type") == "audio_transcription":
            texts.append(_str(part.get("text")))
        elif isinstance(part, dict) and part.get("content_type") in _IMAGE_PARTS:
            tally.drop("image")
        else:
            tally.drop("attachment")
    return "\n".join(t for t in texts if t)


def _render_quote(content: dict) -> str:
    quote = "\n".join("> " + line for line in _str(content.get("text")).strip().splitlines())
    source = " ".join(s for s in (_str(content.get("title")), _paren(content.get("url"))) if s)
    return f"{quote}\n— {source}" if source and quote else quote


def _keep_tool_result(author: dict, ctype: Any, content: dict, meta: dict, tally: Tally) -> None:
    text = render_content(ctype, content, Tally()) if ctype != "code" else _str(content.get("text"))
    if text:
        meta.setdefault("tool_results", []).append(
            {"name": _str(author.get("name")), "content_type": _str(ctype), "text": strip_citations(text)})
    tally.count("tool_results")


def _keep_reasoning(ctype: str, content: dict, meta: dict, tally: Tally) -> None:
    if ctype == "reasoning_recap":
        tally.drop("reasoning_recap")
        return
    for thought in content.get("thoughts") if isinstance(content.get("thoughts"), list) else []:
        if isinstance(thought, dict):
            meta.setdefault("thoughts", []).append(
                {"summary": _str(thought.get("summary")), "content": _str(thought.get("content"))})
    tally.count("thoughts")


def _was_cut_off(msg: dict) -> bool:
    """Whether this assistant message stopped at the length limit ("continue generating")."""
    details = (msg.get("metadata") or {}).get("finish_details") if isinstance(msg.get("metadata"), dict) else None
    return isinstance(details, dict) and details.get("type") == "max_tokens"


def strip_citations(text: str) -> str:
    """Remove ChatGPT's citation markers (private-use U+E200–U+E2FF spans and old 【n†source】)."""
    if "【" not in text and not _PRIVATE_USE.search(text):
        return text  # the common case: no scan-and-copy of long texts
    return _OLD_CITE.sub("", _PRIVATE_USE.sub("", _CITE_SPAN.sub("", text)))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _paren(url: Any) -> str:
    return f"({url})" if isinstance(url, str) and url else ""
