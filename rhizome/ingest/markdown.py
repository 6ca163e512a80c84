"""Markdown notes and Obsidian vaults: one document record per note.

YAML front matter gives title, dates and tags (a list, a scalar, or a comma string). Inline
`#tags` and nested `#a/b` are collected, but never from code, `#123`, headings or URL fragments.
`[[wikilinks]]` and `![[embeds]]` become plain text, `%%comments%%` are removed and callouts are
kept as text. Notes carrying one of the configured reflection tags get
`metadata["reflection"] = True`, so the build stage can turn them into reflection examples.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..records import Record
from .common import SkipFile, Source, Tally, iso_time, make_id
from .text import read_text_file

_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FENCE_OPEN = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
_COMMENT = re.compile(r"%%.*?%%|<!--.*?-->", re.DOTALL)
_WIKILINK = re.compile(r"(!?)\[\[([^\[\]\n]+?)\]\]")
_CALLOUT = re.compile(r"^>[ \t]*\[!(\w[\w-]*)\][+-]?[ \t]*(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"^>[ \t]?", re.MULTILINE)
_URL = re.compile(r"\b[a-zA-Z][\w+.-]*://\S+|\]\([^)\s]*\)")
_TAG = re.compile(r"(?<![\w/#&\\])#([\w/-]*[^\W\d_][\w/-]*)", re.UNICODE)
_ATTACHMENT = re.compile(r"\.(png|jpe?g|gif|webp|svg|bmp|pdf|mp3|wav|m4a|ogg|mp4|mov|webm)$", re.IGNORECASE)
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


def parse(src: Source, tally: Tally) -> Iterator[Record]:
    """Yield the note as one document record (skipped when it has no text)."""
    raw, _encoding, _repaired = read_text_file(src.path, src.name)
    front, body = split_front_matter(raw, tally)
    text, inline_tags, links = clean_body(body)
    if not text.strip():
        raise SkipFile(f"{src.name} has no text besides front matter")
    tags = _unique(front_matter_tags(front) + inline_tags)
    title = _front_str(front, "title") or _first_heading(text) or Path(src.rel or src.name).stem
    reflection = matching_tags(tags, src.config.reflection_tags)
    tally.count("documents")
    tally.count("reflections", bool(reflection))
    meta: dict[str, Any] = {"tags": tags, "reflection": bool(reflection), "path": src.rel or src.name}
    if reflection:
        meta["reflection_tags"] = reflection
    if links:
        meta["links"] = links
    for key in ("aliases", "updated", "modified"):
        if front.get(key) not in (None, "", []):
            meta[key] = iso_time(front[key]) if key != "aliases" else _as_list(front[key])
    created = iso_time(front.get("date") or front.get("created"))
    yield Record(id=make_id("markdown", src.rel or src.name, text), source="markdown", kind="document",
                 title=title, created_at=created, text=text.strip(), metadata=meta,
                 origin={"file": src.name, "path": src.rel or src.name})


def split_front_matter(raw: str, tally: Tally | None = None) -> tuple[dict, str]:
    """(front matter dict, body); a broken YAML block is kept out of the text and noted."""
    match = _FRONT.match(raw.lstrip("\ufeff"))
    if not match:
        return {}, raw
    try:
        data = yaml.safe_load(match.group(1) or "")
    except yaml.YAMLError:
        data = None
        if tally is not None:
            tally.note("front matter is not valid YAML; its tags and dates were ignored")
    return (data if isinstance(data, dict) else {}), raw[match.end():]


def front_matter_tags(front: dict) -> list[str]:
    """Tags from `tags:`/`tag:` as a list, a scalar or a comma/space separated string."""
    tags: list[str] = []
    for key in ("tags", "tag"):
        for item in _as_list(front.get(key)):
            tags.extend(t.lstrip("#").strip("/") for t in re.split(r"[,\s]+", item) if t.strip("#/ "))
    return tags


def clean_body(body: str) -> tuple[str, list[str], list[str]]:
    """(plain text, inline tags, link targets) of a note body; code is left exactly as written."""
    saved: list[str] = []

    def hide(code: str) -> str:
        saved.append(code)
        return f"\x00{len(saved) - 1}\x00"

    text = _INLINE_CODE.sub(lambda m: hide(m.group(0)), hide_fences(body, hide))
    text = _COMMENT.sub("", text)
    links: list[str] = []
    text = _WIKILINK.sub(lambda m: _link_text(m, links), text)
    tags = find_tags(text)
    text = render_callouts(text)
    text = _PLACEHOLDER.sub(lambda m: saved[int(m.group(1))], text)
    return re.sub(r"\n{3,}", "\n\n", text), tags, _unique(links)


def hide_fences(body: str, hide) -> str:
    """Replace each fenced code block (``` or ~~~, unclosed runs to the end) via `hide`."""
    lines = body.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            out.append(lines[i])
            i += 1
            continue
        fence, j = opening.group(1), i + 1
        while j < len(lines) and not re.match(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            j += 1
        out.append(hide("\n".join(lines[i:j + 1])))
        i = j + 1
    return "\n".join(out)


def find_tags(text: str) -> list[str]:
    """Inline Obsidian tags, outside code (already hidden), headings and URLs."""
    tags: list[str] = []
    for line in _URL.sub(" ", text).splitlines():
        if re.match(r"^\s{0,3}#{1,6}\s", line):
            line = re.sub(r"^\s{0,3}#{1,6}\s", "", line)  # a heading's marks are not tags
        for tag in _TAG.findall(line):
            tag = tag.strip("/-")
            if tag and re.search(r"[^\W\d_]", tag):
                tags.append(tag)
    return _unique(tags)


def _link_text(match: re.Match, links: list[str]) -> str:
    target, _, alias = match.group(2).partition("|")
    page, _, heading = target.partition("#")
    page, heading = page.strip(), heading.strip().lstrip("^")
    links.append(page or heading)
    if match.group(1) and _ATTACHMENT.search(page):
        return page  # an embedded image's alias is its display size, not text
    if alias.strip():
        return alias.strip()
    if target.partition("#")[2].startswith("^"):
        return page or heading
    name = re.sub(r"\.md$", "", page, flags=re.IGNORECASE)
    return f"{name} > {heading}" if name and heading else (name or heading)


def render_callouts(text: str) -> str:
    """`> [!note] Title` blocks become `Note: Title` followed by their lines, unquoted."""
    if "[!" not in text:
        return text
    out: list[str] = []
    in_callout = False
    for line in text.split("\n"):
        head = _CALLOUT.match(line)
        if head:
            kind, title = head.group(1).capitalize(), head.group(2).strip()
            out.append(f"{kind}: {title}" if title else f"{kind}:")
            in_callout = True
        elif in_callout and line.startswith(">"):
            out.append(_QUOTED.sub("", line))
        else:
            in_callout = False
            out.append(line)
    return "\n".join(out)


def matching_tags(tags: list[str], wanted: list[str]) -> list[str]:
    """The note's tags that are (or nest under) one of the wanted tags, case-insensitively."""
    wanted_l = {w.lower().lstrip("#") for w in wanted}
    return [t for t in tags if t.lower() in wanted_l or t.lower().split("/")[0] in wanted_l]


def _first_heading(text: str) -> str:
    match = re.search(r"^#[ \t]+(.+?)[ \t#]*$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _front_str(front: dict, key: str) -> str:
    value = front.get(key)
    return str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items if isinstance(v, (str, int, float)) and not isinstance(v, bool)]


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in items if not (x.lower() in seen or seen.add(x.lower()))]
