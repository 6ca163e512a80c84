"""PDF files (PyMuPDF): one document record per page, in reading order, without page furniture.

Text blocks are ordered column by column: blocks that cross a column start (titles, full-width
paragraphs) split the page into bands, and inside a band blocks are read by column, then top
to bottom. Lines of a block are joined into a paragraph, end-of-line hyphenation is undone,
and blocks in the top/bottom margins that repeat on many pages (running headers, footers) or
are bare page numbers are removed. Pages with images but no text are reported as scanned.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..records import Record
from .common import FormatError, SkipFile, Source, Tally, make_id

MARGIN = 0.1  # top/bottom fraction of the page where headers and footers live
_PAGE_NUMBER = re.compile(r"^[\s\-–—|]*(?:page\s*)?(?:\d{1,4}|[ivxlcdm]{1,6})(?:\s*(?:of|/)\s*\d{1,4})?[\s\-–—|]*$",
                          re.IGNORECASE)
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])[-\u00ad]\n\n?(?=[a-zà-ÿ])")


@dataclass
class Block:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str


def parse(src: Source, tally: Tally) -> Iterator[Record]:
    """Yield one document record per page that has text."""
    doc = open_pdf(src.path, src.name)
    try:
        title = (doc.metadata or {}).get("title", "").strip() or Path(src.rel or src.name).stem
        pages = [read_page(page) for page in doc]
        images = [bool(page.get_images()) for page in doc]
    finally:
        doc.close()
    repeated = find_repeated(pages)
    scanned = []
    for number, (blocks, has_images) in enumerate(zip(pages, images, strict=True), start=1):
        text = page_text(blocks, repeated)
        tally.count("pages")
        if not text:
            if has_images:
                scanned.append(number)
            else:
                tally.count("blank_pages")
            continue
        tally.count("pages_with_text")
        yield Record(id=make_id("pdf", title, number, text), source="pdf", kind="document", title=title,
                     text=text, metadata={"page": number, "pages": len(pages)},
                     origin={"file": src.name, "page": number})
    report_scanned(src.name, scanned, len(pages), tally)


def open_pdf(path: Path, name: str):
    """Open a PDF or raise FormatError for damaged and password-protected files."""
    import pymupdf

    pymupdf.TOOLS.mupdf_display_errors(False)
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises several types for damaged files
        raise FormatError(f"{name} is not a readable PDF ({exc}); open and re-save it, or export it again") from None
    if doc.needs_pass:
        doc.close()
        raise FormatError(f"{name} is encrypted and needs a password; save an unlocked copy to ingest it")
    if doc.page_count == 0:
        doc.close()
        raise SkipFile(f"{name} has no pages")
    return doc


def read_page(page) -> list[tuple[Block, str]]:
    """The page's text blocks in reading order, each with its zone: top, bottom or body."""
    width, height = page.rect.width, page.rect.height
    blocks = [Block(b[0], b[1], b[2], b[3], b[4]) for b in page.get_text("blocks") if b[6] == 0 and b[4].strip()]
    ordered = order_blocks(blocks, width)
    return [(b, "top" if b.y1 <= height * MARGIN else "bottom" if b.y0 >= height * (1 - MARGIN) else "body")
            for b in ordered]


def order_blocks(blocks: list[Block], width: float) -> list[Block]:
    """Reading order for one- or multi-column pages (see the module docstring)."""
    starts = column_starts(blocks, width)
    tol = width * 0.02

    def column(b: Block) -> int:
        return sum(1 for s in starts if s <= b.x0 + tol)

    def spans(b: Block) -> bool:
        return any(b.x0 + tol < s < b.x1 - tol for s in starts)

    out: list[Block] = []
    band: list[Block] = []
    for block in sorted(blocks, key=lambda b: (round(b.y0, 1), b.x0)):
        if spans(block):
            out += sorted(band, key=lambda b: (column(b), b.y0))
            band = []
            out.append(block)
        else:
            band.append(block)
    return out + sorted(band, key=lambda b: (column(b), b.y0))


def column_starts(blocks: list[Block], width: float) -> list[float]:
    """Left edges where a column begins: clusters of narrow blocks' x0 at least 10% apart."""
    lefts = sorted(b.x0 for b in blocks if b.x1 - b.x0 < width * 0.6)
    starts: list[float] = []
    for x in lefts:
        if not starts or x - starts[-1] > width * 0.1:
            starts.append(x)
    return starts


def find_repeated(pages: list[list[tuple[Block, str]]]) -> set[str]:
    """Normalised margin texts found on at least half the pages (and on two or more)."""
    seen: dict[str, int] = {}
    for blocks in pages:
        keys = {normalise(b.text) for b, zone in blocks if zone != "body"}
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
    need = max(2, (len(pages) + 1) // 2)
    return {key for key, n in seen.items() if n >= need}


def normalise(text: str) -> str:
    """Margin text with digits masked, so "Page 3" and "Page 4" compare equal."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", text)).strip().lower()


def page_text(blocks: list[tuple[Block, str]], repeated: set[str]) -> str:
    """Body text of a page: furniture removed, lines joined into paragraphs, hyphens undone."""
    paragraphs = []
    for block, zone in blocks:
        if zone != "body" and (normalise(block.text) in repeated or _PAGE_NUMBER.match(block.text.strip())):
            continue
        paragraphs.append(block.text.strip())
    text = _HYPHEN_BREAK.sub("", "\n\n".join(paragraphs))
    # Lines inside a paragraph were broken only to fit the page width.
    return "\n\n".join(re.sub(r"[ \t]*\n[ \t]*", " ", p).strip() for p in text.split("\n\n") if p.strip())


def report_scanned(name: str, scanned: list[int], total: int, tally: Tally) -> None:
    """Tell the person which pages had no text layer; all of them makes the file an error."""
    if not scanned:
        return
    tally.count("scanned_pages", len(scanned))
    listed = ", ".join(map(str, scanned[:20])) + (" …" if len(scanned) > 20 else "")
    if len(scanned) == total:
        raise FormatError(f"{name} has no text layer (scanned pages {listed}); run OCR on it "
                          "(for example `ocrmypdf in.pdf out.pdf`) and ingest the result")
    tally.note(f"page(s) {listed} have no text layer (scanned?); OCR them to include their text")
