"""Chat logs as JSON lines or JSON: the shapes fine-tuning tools read, to conversation records.

Accepted per object: `{"messages": [{"role","content"}]}` (OpenAI/TRL), ShareGPT
`{"conversations": [{"from","value"}]}`, flat pairs (`user`/`assistant`, `prompt`/`response`,
`instruction`/`input`/`output`, `question`/`answer`), and `{"text"}` documents. Whole files may
be JSONL, a JSON array of those objects, or the custom export
`{"conversations": [{"id","title","messages": [{"author","content","timestamp"}]}]}`.
One malformed line is skipped and counted; it never loses the rest of the file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ..records import Message, Record
from .common import (
    JSON_BUFFER,
    FormatError,
    Source,
    Tally,
    count_messages,
    iso_time,
    json_error,
    make_id,
    merge_consecutive,
    stream_json,
    text_of,
    title_from,
)

USER_ROLES = {"user", "human", "me", "person", "prompter", "customer"}
ASSISTANT_ROLES = {"assistant", "ai", "bot", "gpt", "model", "chatgpt", "claude", "gemini", "llm", "agent"}
PAIR_KEYS = (("user", "assistant"), ("prompt", "response"), ("prompt", "completion"), ("instruction", "output"),
             ("question", "answer"), ("human", "assistant"), ("input", "output"), ("query", "response"))
_TIME_KEYS = ("created_at", "create_time", "timestamp", "date", "time")


def parse(src: Source, tally: Tally) -> Iterator[Record]:
    """Yield the conversations (and text documents) of a JSONL or JSON chat file."""
    for index, item in iter_items(src, tally):
        yield from records_from_object(item, index, src, tally)
    if not tally.counts["conversations"] and not tally.counts["documents"] and sum(tally.dropped.values()):
        reasons = ", ".join(f"{n} {r}" for r, n in tally.dropped.most_common(3))
        raise FormatError(f"{src.name} has no usable chat records ({reasons}); see the accepted shapes in the docs")


def iter_items(src: Source, tally: Tally) -> Iterator[tuple[int, Any]]:
    """(index, object) pairs from JSONL lines, a JSON array, or one JSON object."""
    first = _first_char(src.path)
    if first == "[":
        yield from enumerate(stream_json(src.path, src.name))
    elif first == "{" and _first_line_is_json(src.path):
        yield from iter_lines(src, tally)
    elif first == "{":
        yield from _iter_object(src)
    else:
        raise FormatError(f"{src.name} is neither JSON nor JSON lines; each line should be one JSON object")


def iter_lines(src: Source, tally: Tally) -> Iterator[tuple[int, Any]]:
    """Objects of a JSONL file; bad lines are counted and named in the report."""
    bad: list[int] = []
    with open(src.path, encoding="utf-8-sig", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number - 1, json.loads(line)
            except json.JSONDecodeError:
                bad.append(number)
                tally.drop("malformed_line")
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" …" if len(bad) > 10 else "")
        tally.note(f"skipped {len(bad)} line(s) that are not valid JSON (line {shown})")


def _iter_object(src: Source) -> Iterator[tuple[int, Any]]:
    """A pretty-printed object: stream `conversations` items when it is the custom export."""
    import ijson

    with open(src.path, "rb") as fh:
        items = ijson.items(fh, "conversations.item", use_float=True, buf_size=JSON_BUFFER)
        try:
            head = next(items, None)
        except ijson.JSONError:
            head = None  # stream_json below reports the error with its position
        if isinstance(head, dict) and isinstance(head.get("messages"), list):
            yield 0, {"conversations": [head]}
            try:
                for index, item in enumerate(items, start=1):
                    yield index, {"conversations": [item]}
            except ijson.JSONError as exc:
                raise json_error(src.name, exc) from None
            return
    yield from enumerate(stream_json(src.path, src.name, prefix=""))


def records_from_object(obj: Any, index: int, src: Source, tally: Tally) -> Iterator[Record]:
    """Records from one JSON object of any accepted shape; unrecognised ones are counted."""
    if not isinstance(obj, dict):
        tally.drop("not_an_object")
        return
    convs = obj.get("conversations")
    if isinstance(convs, list) and convs and all(isinstance(c, dict) and "messages" in c for c in convs):
        for sub, conv in enumerate(convs):
            yield from _one(conv, conv.get("messages"), index if len(convs) == 1 else f"{index}.{sub}", src, tally)
        return
    turns = obj.get("messages") if isinstance(obj.get("messages"), list) else convs
    if isinstance(turns, list):
        yield from _one(obj, turns, index, src, tally)
        return
    pair = pair_messages(obj)
    if pair:
        yield from _one(obj, pair, index, src, tally)
    elif isinstance(obj.get("text"), str) and obj["text"].strip():
        yield document_record(obj, index, src, tally)
    else:
        tally.drop("unrecognised_record")


def _one(obj: dict, turns: Any, index: Any, src: Source, tally: Tally) -> Iterator[Record]:
    messages = messages_from(turns, tally)
    if not any(m.role != "system" for m in messages):
        tally.drop("no_turns")
        return
    tally.count("conversations")
    count_messages(tally, messages)
    title = _title(obj) or title_from(messages)
    created = next((iso_time(obj.get(k)) for k in _TIME_KEYS if obj.get(k) is not None), None)
    if created is None and isinstance(turns, list):
        created = next((iso_time(t.get(k)) for t in turns if isinstance(t, dict) for k in _TIME_KEYS
                        if t.get(k) is not None), None)
    meta = {"conversation_id": str(obj["id"])} if isinstance(obj.get("id"), (str, int)) else {}
    yield Record(id=make_id("jsonl", title, [m.to_dict() for m in messages]), source="jsonl",
                 kind="conversation", title=title, created_at=created, messages=messages, metadata=meta,
                 origin={"file": src.name, "index": index})


def messages_from(turns: Any, tally: Tally) -> list[Message]:
    """Normalised user/assistant/system messages from a list of turn dicts of any common shape."""
    out: list[Message] = []
    for turn in turns if isinstance(turns, list) else []:
        if not isinstance(turn, dict):
            tally.drop("malformed_message")
            continue
        role = normalise_role(turn.get("role", turn.get("from", turn.get("author", turn.get("sender")))))
        content = text_of(turn.get("content", turn.get("value", turn.get("text"))))
        if role is None:
            tally.drop("unknown_role")
        elif content is None or not content.strip():
            tally.drop("empty_message")
        else:
            out.append(Message(role, content.strip()))
    merged, n = merge_consecutive(out)
    tally.count("merged_assistant_parts", n)
    return merged


def normalise_role(value: Any) -> str | None:
    """user / assistant / system from the many spellings exports use (a dict author too)."""
    if isinstance(value, dict):
        value = value.get("role", value.get("name"))
    if not isinstance(value, str):
        return None
    low = value.strip().lower()
    if low in USER_ROLES:
        return "user"
    if low in ASSISTANT_ROLES:
        return "assistant"
    return "system" if low == "system" else None


def pair_messages(obj: dict) -> list[dict] | None:
    """A flat prompt/response object as two turns (Alpaca `input` is appended to the instruction)."""
    for prompt_key, reply_key in PAIR_KEYS:
        prompt, reply = text_of(obj.get(prompt_key)), text_of(obj.get(reply_key))
        if prompt and reply and prompt.strip() and reply.strip():
            extra = text_of(obj.get("input")) if prompt_key == "instruction" else None
            if extra and extra.strip():
                prompt = f"{prompt.strip()}\n\n{extra.strip()}"
            return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    return None


def document_record(obj: dict, index: Any, src: Source, tally: Tally, source: str = "jsonl") -> Record:
    """A `{"text": ...}` object as a document record."""
    text = obj["text"].strip()
    title = _title(obj) or text.splitlines()[0][:60]
    tally.count("documents")
    return Record(id=make_id(source, title, text), source=source, kind="document", title=title, text=text,
                  created_at=next((iso_time(obj.get(k)) for k in _TIME_KEYS if obj.get(k) is not None), None),
                  origin={"file": src.name, "index": index})


def _title(obj: dict) -> str:
    for key in ("title", "name", "subject"):
        if isinstance(obj.get(key), str) and obj[key].strip():
            return obj[key].strip()
    return ""


def _first_char(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1].decode("latin-1")


def _first_line_is_json(path: Path) -> bool:
    """JSONL when the first line is a complete JSON object on its own."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        line = fh.readline()
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False
