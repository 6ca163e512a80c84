"""Clean: repair Unicode, strip export artifacts and boilerplate, normalise whitespace.

Works on corpus records before they become examples. A message that cleans down to nothing is
removed (`empty_message`); a record is dropped as `empty`, `too_short` (fewer than `min_chars`
characters) or `non_linguistic` (mostly symbols, numbers or encoded blobs rather than words).
Code blocks keep their indentation: whitespace is only normalised outside ``` fences.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import replace

from ..records import Message, Record

# Export and chat-UI artifacts that are never part of what the person wrote or meant.
ARTIFACTS = [
    re.compile(r"【[^】\n]{0,80}】"),  # ChatGPT browsing citations: 【12†source】
    re.compile(r"[\ue200-\ue2ff][^\n]{0,120}?[\ue201]|[\ue000-\uf8ff]"),  # private-use cite markers
    re.compile(r"<\|[a-z_]{2,30}\|>"),  # leaked special tokens: <|endoftext|>
    re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]"),  # zero-width characters, soft hyphens
    re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"),  # control characters
]
BOILERPLATE = re.compile(
    r"^[ \t]*(?:copy code|regenerate(?: response)?|edit message|was this response better or worse\??"
    r"|(?:chatgpt|claude) can make mistakes\.?.*|is this conversation helpful so far\?.*"
    r"|\d+ / \d+)[ \t]*$\n?",
    re.IGNORECASE | re.MULTILINE,
)
FENCE = re.compile(r"(```.*?(?:```|\Z))", re.DOTALL)
NO_SPACE_SCRIPTS = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
MIN_WORDLIKE = 0.35
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def repair_unicode(text: str) -> str:
    """Fix mojibake (ftfy) and compose characters (NFC); ASCII needs neither."""
    if text.isascii():
        return text
    import ftfy

    return unicodedata.normalize("NFC", ftfy.fix_text(text, normalization="NFC"))


def normalise_whitespace(text: str) -> str:
    """Collapse runs of spaces and blank lines outside code fences; keep code untouched."""
    parts = FENCE.split(text)
    for i in range(0, len(parts), 2):  # even parts are prose, odd parts are fenced code
        prose = parts[i].replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
        prose = re.sub(r"(?<=\S) {2,}", " ", prose)
        prose = re.sub(r" +\n", "\n", prose)
        parts[i] = re.sub(r"\n{3,}", "\n\n", prose)
    return "".join(parts).strip()


def clean_text(text: str) -> str:
    """One text through every cleaning step."""
    text = repair_unicode(text or "")
    for pattern in ARTIFACTS:
        text = pattern.sub("", text)
    text = BOILERPLATE.sub("", text)
    return normalise_whitespace(text)


def wordlike_ratio(text: str) -> float:
    """Share of whitespace tokens that look like words (letters, at most 20 of them)."""
    toks = text.split()
    if not toks:
        return 0.0
    good = 0
    for tok in toks:
        core = _PUNCT.sub("", tok)
        if core.isalpha() and (len(core) <= 20 or NO_SPACE_SCRIPTS.search(core)):
            good += 1
    return good / len(toks)


def drop_reason(text: str, min_chars: int) -> str | None:
    """Why a cleaned text cannot be used, or None when it is fine."""
    if not text:
        return "empty"
    if len(text) < min_chars:
        return "too_short"
    if wordlike_ratio(text) < MIN_WORDLIKE and not _mostly_code(text):
        return "non_linguistic"
    return None


def _mostly_code(text: str) -> bool:
    # Code answers are linguistic enough for training: judge them by their prose around fences.
    fenced = sum(len(m) for m in FENCE.findall(text))
    return fenced > 0.5 * len(text)


def clean_record(record: Record, min_chars: int) -> tuple[Record | None, str | None, int]:
    """The cleaned record (or None), its drop reason, and how many empty messages it lost."""
    if record.kind == "document":
        text = clean_text(record.text or "")
        reason = drop_reason(text, min_chars)
        return (None, reason, 0) if reason else (replace(record, text=text), None, 0)
    messages = [Message(m.role, clean_text(m.content)) for m in record.messages or []]
    kept = [m for m in messages if m.content]
    emptied = len(messages) - len(kept)
    reason = drop_reason("\n".join(m.content for m in kept), min_chars)
    return (None, reason, emptied) if reason else (replace(record, messages=kept), None, emptied)


def clean_records(records: list[Record], min_chars: int) -> tuple[list[Record], Counter]:
    """Clean every record; returns the kept records and the drop counts by reason."""
    kept: list[Record] = []
    drops: Counter = Counter()
    for record in records:
        cleaned, reason, emptied = clean_record(record, min_chars)
        if emptied:
            drops["empty_message"] += emptied
        if cleaned is None:
            drops[reason] += 1
        else:
            kept.append(cleaned)
    return kept, drops
