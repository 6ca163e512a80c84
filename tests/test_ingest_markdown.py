"""Markdown and Obsidian vaults: front matter, tricky tags, links, comments, callouts, reflections."""
from rhizome.config import IngestConfig
from rhizome.ingest import ingest_paths
from rhizome.workspace import read_jsonl

DAILY = """---
title: A hard choice
tags: [decision, "work/planning"]
date: 2024-03-01
aliases: hard choice
---
# Morning

Decided to move the [[Projects/Garden|garden project]] forward. #reflection/daily
See ![[sketch.png|300]] and [[Plans#Budget]] and [[Ideas#^blockid]].
%%private: do not train on this%%
Issue #123 is unrelated, and so is https://example.com/page#section and [anchor](#local).
Price is 5#, C# code, email a#b, &#123; entity.

> [!warning] Careful
> Budget is tight.

```python
# not a heading
x = 1  #not-a-tag %%not a comment%%
```
Inline `#notatag` code and a #tag-with-dash, nested #area/sub/deep, #2024 no.
%%multi
line comment%%
## Heading #inheading
"""

DAILY_TEXT = """# Morning

Decided to move the garden project forward. #reflection/daily
See sketch.png and Plans > Budget and Ideas.

Issue #123 is unrelated, and so is https://example.com/page#section and [anchor](#local).
Price is 5#, C# code, email a#b, &#123; entity.

Warning: Careful
Budget is tight.

```python
# not a heading
x = 1  #not-a-tag %%not a comment%%
```
Inline `#notatag` code and a #tag-with-dash, nested #area/sub/deep, #2024 no.

## Heading #inheading"""


def make_vault(root):
    (root / ".obsidian").mkdir(parents=True)
    (root / ".obsidian" / "app.json").write_text('{"theme": "dark"}')
    (root / "Daily").mkdir()
    (root / "Notes").mkdir()
    (root / "Daily" / "2024-03-01.md").write_text(DAILY, encoding="utf-8")
    (root / "Notes" / "plain.md").write_text("---\ntags: learning, books\n---\nJust a plain note about #books.\n")
    (root / "Notes" / "scalar.md").write_text("---\ntag: ideas\n---\nBody\n")
    (root / "Notes" / "empty-body.md").write_text("---\ntags: [x]\n---\n\n")
    (root / "Notes" / "binary.md").write_bytes(b"\x00\x01\x02\xff\xfe" * 50)
    (root / "Notes" / "broken-yaml.md").write_text("---\ntags: [unclosed\n---\nText here #real\n")
    return root


def test_obsidian_vault_exact_output(ws, tmp_path):
    report = ingest_paths(ws, [make_vault(tmp_path / "vault")])
    records = {r["origin"]["path"]: r for r in read_jsonl(ws.corpus)}
    daily = records["Daily/2024-03-01.md"]
    assert daily["text"] == DAILY_TEXT
    assert (daily["title"], daily["created_at"], daily["kind"]) == ("A hard choice", "2024-03-01", "document")
    assert daily["metadata"] == {
        "tags": ["decision", "work/planning", "reflection/daily", "tag-with-dash", "area/sub/deep", "inheading"],
        "reflection": True, "path": "Daily/2024-03-01.md", "reflection_tags": ["decision", "reflection/daily"],
        "links": ["Projects/Garden", "sketch.png", "Plans", "Ideas"], "aliases": ["hard choice"]}
    assert daily["origin"] == {"file": "vault/Daily/2024-03-01.md", "path": "Daily/2024-03-01.md"}
    plain = records["Notes/plain.md"]
    assert (plain["title"], plain["text"]) == ("plain", "Just a plain note about #books.")
    assert plain["metadata"] == {"tags": ["learning", "books"], "reflection": True, "path": "Notes/plain.md",
                                 "reflection_tags": ["learning"]}
    assert records["Notes/scalar.md"]["metadata"] == {"tags": ["ideas"], "reflection": False,
                                                       "path": "Notes/scalar.md"}
    assert records["Notes/broken-yaml.md"]["metadata"]["tags"] == ["real"]
    statuses = {e["file"]: (e["status"], e["reason"]) for e in report["files"]}
    assert statuses == {
        "vault/Daily/2024-03-01.md": ("ok", "1 documents; 1 new record(s)"),
        "vault/Notes/binary.md": ("error", "vault/Notes/binary.md is binary data, not text, despite its name; "
                                           "save it as UTF-8 text to ingest it"),
        "vault/Notes/broken-yaml.md": ("ok", "1 documents; 1 new record(s); "
                                             "front matter is not valid YAML; its tags and dates were ignored"),
        "vault/Notes/empty-body.md": ("skipped", "vault/Notes/empty-body.md has no text besides front matter"),
        "vault/Notes/plain.md": ("ok", "1 documents; 1 new record(s)"),
        "vault/Notes/scalar.md": ("ok", "1 documents; 1 new record(s)"),
    }
    assert report["records_added"] == 4
    again = ingest_paths(ws, [tmp_path / "vault"])
    assert (again["records_added"], again["records_total"]) == (0, 4)
    assert sorted(p.name for p in ws.sources.iterdir()) == ["vault"]  # the unchanged vault is copied once


def test_reflection_tags_are_configurable(ws, tmp_path):
    make_vault(tmp_path / "vault")
    config = IngestConfig(reflection_tags="#ideas, other")  # a --tags flag arrives as one string
    assert config.reflection_tags == ["ideas", "other"]
    ingest_paths(ws, [tmp_path / "vault" / "Notes"], config)
    flagged = {r["origin"]["path"]: r["metadata"]["reflection"] for r in read_jsonl(ws.corpus)}
    assert flagged == {"broken-yaml.md": False, "plain.md": False, "scalar.md": True}
