"""Plain text in any encoding: detect the encoding, repair mojibake, make one document record.

Decoding order: a byte-order mark, then strict UTF-8, then charset-normalizer's best guess
(preferring Windows-1252 among equally plausible Western code pages, since it is by far the
most common legacy encoding). ftfy then repairs text that was decoded wrongly once already
("CafÃ©" -> "Café") without touching quotes, ligatures or widths.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import Iterator

from ..records import Record
from .common import FormatError, SkipFile, Source, Tally, make_id

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_PREFERRED = ("cp1252", "iso8859_15", "latin_1")
_CONTROL_OK = set("\n\r\t\f\v\x1b")


def parse(src: Source, tally: Tally) -> Iterator[Record]:
    """Yield the file as one document record."""
    text, encoding, repaired = decode_bytes(src.path.read_bytes(), src.name)
    text = text.strip()
    if not text:
        raise SkipFile(f"{src.name} holds only whitespace")
    tally.count("documents")
    tally.count("characters", len(text))
    if encoding not in ("utf-8", "ascii"):
        tally.note(f"decoded as {encoding}")
    if repaired:
        tally.note("repaired mis-encoded characters (mojibake)")
    title = Path(src.rel or src.name).stem
    yield Record(id=make_id("text", title, text), source="text", kind="document", title=title, text=text,
                 metadata={"encoding": encoding, "repaired_mojibake": repaired},
                 origin={"file": src.name})


def decode_bytes(data: bytes, name: str = "file") -> tuple[str, str, bool]:
    """(text, encoding, repaired) for bytes of unknown encoding; FormatError if they are not text."""
    text, encoding = _decode(data, name)
    if looks_binary(text):
        raise FormatError(f"{name} is binary data, not text; save it as plain UTF-8 text to ingest it")
    fixed = repair_text(text)
    return fixed.replace("\r\n", "\n").replace("\r", "\n"), encoding, fixed != text


def _decode(data: bytes, name: str) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding.replace("-sig", "")
            except UnicodeDecodeError:
                break
    if b"\x00" in data[:8192]:
        raise FormatError(f"{name} is binary data, not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    encoding = guess_encoding(data)
    if encoding is None:
        raise FormatError(f"{name} is binary data or an unknown encoding; save it as UTF-8 text")
    return data.decode(encoding, errors="replace"), encoding


def guess_encoding(data: bytes) -> str | None:
    """charset-normalizer's guess, preferring cp1252 when it is as plausible as the top pick."""
    from charset_normalizer import from_bytes

    results = list(from_bytes(data[:1_000_000]))
    if not results:
        return None
    least_chaos = min(r.chaos for r in results)
    calm = [r.encoding for r in results if r.chaos <= least_chaos + 0.01]
    for preferred in _PREFERRED:
        if preferred in calm:
            return preferred
    return calm[0]


def looks_binary(text: str) -> bool:
    """Text with many control characters (other than whitespace) is really binary data."""
    sample = text[:20000]
    if not sample:
        return False
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in _CONTROL_OK)
    return controls / len(sample) > 0.01 or "\x00" in sample


def repair_text(text: str) -> str:
    """Fix mojibake only: keep curly quotes, ligatures, widths and HTML entities as written."""
    import ftfy

    config = ftfy.TextFixerConfig(unescape_html=False, uncurl_quotes=False, fix_latin_ligatures=False,
                                  fix_character_width=False, fix_line_breaks=False, explain=False)
    return ftfy.fix_text(text, config)


def read_text_file(path: Path, name: str) -> tuple[str, str, bool]:
    """Decode a whole file (markdown notes, CSV heads) the same way plain text is decoded."""
    data = path.read_bytes()
    if not data.strip():
        raise SkipFile(f"{name} is empty")
    return decode_bytes(data, name)
