"""Pairs: cleaned records become training examples.

* A conversation gives one example per assistant turn, with up to `context_turns` preceding
  messages as context (the window always opens on a user turn; an optional system prompt goes
  first). Consecutive messages of one role are merged so roles alternate.
* A document is cut into chunks (words or embedder tokens, with overlap); each chunk becomes the
  answer to a question made for it (see `questions.py`).
* A reflection note (a document with `metadata.reflection`) becomes the answer to a question
  about the note itself ("What did I decide about ...?").
Example ids depend on the record id and position only, so curation decisions made on one build
still find their example after the text is edited or the corpus grows.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import BuildConfig
from ..records import Example, Message, Record, stable_id

_WORD_SPAN = re.compile(r"\S+")


@dataclass
class Chunk:
    """A piece of a document waiting for its question."""

    record: Record
    index: int
    count: int
    text: str

    @property
    def title(self) -> str:
        return record_title(self.record)


def record_title(record: Record) -> str:
    if record.title:
        return record.title
    file = record.origin.get("file") or record.origin.get("path")
    return Path(str(file)).stem if file else ""


def merge_turns(messages: list[Message]) -> list[Message]:
    """Join consecutive messages of the same role so user and assistant alternate."""
    merged: list[Message] = []
    for m in messages:
        if merged and merged[-1].role == m.role:
            merged[-1] = Message(m.role, merged[-1].content + "\n\n" + m.content)
        else:
            merged.append(Message(m.role, m.content))
    return merged


def conversation_examples(record: Record, cfg: BuildConfig) -> tuple[list[Example], Counter]:
    """One example per assistant turn with its preceding context."""
    turns = merge_turns(record.messages or [])
    system = [m for m in turns if m.role == "system"][:1]
    dialog = [m for m in turns if m.role in ("user", "assistant")]
    if cfg.system_prompt:
        system = [Message("system", cfg.system_prompt)]
    examples, drops = [], Counter()
    if not any(m.role == "assistant" for m in dialog):
        drops["no_assistant_reply"] += 1
    for i, message in enumerate(dialog):
        if message.role != "assistant":
            continue
        window = dialog[max(0, i - cfg.context_turns) : i]
        while window and window[0].role != "user":
            window = window[1:]
        if not window:
            drops["no_user_turn"] += 1
        elif len(message.content) < cfg.min_chars:
            drops["too_short"] += 1
        else:
            origin = {**record.origin, "record_id": record.id, "title": record.title, "turn": i}
            examples.append(Example(stable_id(record.id, "turn", i), [*system, *window, message],
                                    source=record.source, origin=origin))
    return examples, drops


def chunk_words(text: str, size: int, overlap: int) -> list[str]:
    """Windows of `size` words sharing `overlap` words, cut from the original text."""
    spans = [m.span() for m in _WORD_SPAN.finditer(text)]
    return _cut(text, spans, size, overlap)


def chunk_tokens(text: str, size: int, overlap: int, tokenizer) -> list[str]:
    """Windows of `size` tokenizer tokens sharing `overlap` tokens, cut at token offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = [tuple(s) for s in enc["offset_mapping"] if s[1] > s[0]]
    return _cut(text, spans, size, overlap)


def _cut(text: str, spans: list[tuple[int, int]], size: int, overlap: int) -> list[str]:
    if len(spans) <= size:
        return [text.strip()] if text.strip() else []
    step = size - overlap
    chunks, start = [], 0
    while True:
        end = min(start + size, len(spans))
        chunks.append(text[spans[start][0] : spans[end - 1][1]].strip())
        if end == len(spans):
            return chunks
        start += step


def chunk_text(text: str, cfg: BuildConfig, tokenizer=None) -> list[str]:
    if cfg.chunk_unit == "tokens" and tokenizer is not None:
        return chunk_tokens(text, cfg.chunk_size, cfg.chunk_overlap, tokenizer)
    return chunk_words(text, cfg.chunk_size, cfg.chunk_overlap)


def is_reflection(record: Record) -> bool:
    return record.kind == "document" and bool(record.metadata.get("reflection"))


def reflection_question(record: Record) -> str:
    """A question whose answer is the note: shaped by the note's tags."""
    title = record_title(record) or "this"
    tags = {str(t).lower().lstrip("#") for t in record.metadata.get("tags") or []}
    if tags & {"decision", "decisions"}:
        return f"What did I decide about {title}, and why?"
    if tags & {"learning", "lesson", "lessons", "til"}:
        return f"What did I learn from {title}?"
    return f"What are my reflections on {title}?"


def reflection_examples(record: Record, cfg: BuildConfig, tokenizer=None) -> list[Example]:
    parts = chunk_text(record.text or "", cfg, tokenizer)
    question = reflection_question(record)
    out = []
    for k, part in enumerate(parts):
        q = question if len(parts) == 1 else f"{question} (part {k + 1} of {len(parts)})"
        origin = {**record.origin, "record_id": record.id, "title": record.title, "chunk": k, "reflection": True}
        msgs = [Message("user", q), Message("assistant", part)]
        if cfg.system_prompt:
            msgs.insert(0, Message("system", cfg.system_prompt))
        out.append(Example(stable_id(record.id, "reflection", k), msgs, source=record.source, origin=origin))
    return out


def document_chunks(records: list[Record], cfg: BuildConfig, tokenizer=None) -> list[Chunk]:
    """Every chunk of every non-reflection document, in corpus order."""
    chunks = []
    for record in records:
        if record.kind == "document" and not is_reflection(record):
            parts = chunk_text(record.text or "", cfg, tokenizer)
            chunks.extend(Chunk(record, k, len(parts), part) for k, part in enumerate(parts))
    return chunks


def chunk_example(chunk: Chunk, question: str, cfg: BuildConfig) -> Example:
    record = chunk.record
    origin = {**record.origin, "record_id": record.id, "title": record.title, "chunk": chunk.index}
    msgs = [Message("user", question), Message("assistant", chunk.text)]
    if cfg.system_prompt:
        msgs.insert(0, Message("system", cfg.system_prompt))
    return Example(stable_id(record.id, "chunk", chunk.index), msgs, source=record.source, origin=origin)


def make_examples(
    records: list[Record], cfg: BuildConfig, ask: Callable[[list[Chunk]], list[str]], tokenizer=None
) -> tuple[list[Example], Counter, list[Chunk]]:
    """All examples of the corpus, the pairing drops, and the document chunks (for memory)."""
    examples: list[Example] = []
    drops: Counter = Counter()
    for record in records:
        if record.kind == "conversation":
            got, lost = conversation_examples(record, cfg)
            examples.extend(got)
            drops.update(lost)
        elif is_reflection(record):
            examples.extend(reflection_examples(record, cfg, tokenizer))
    chunks = document_chunks(records, cfg, tokenizer)
    for chunk, question in zip(chunks, ask(chunks) if chunks else []):
        examples.append(chunk_example(chunk, question, cfg))
    return examples, drops, chunks
