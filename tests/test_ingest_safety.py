"""Bad input: unsafe zips, zip bombs, malformed and truncated JSON, binary, empty and missing files."""
import io
import json
import zipfile

import pytest

from rhizome.config import IngestConfig
from rhizome.ingest import ingest_paths
from rhizome.workspace import UserError, read_json, read_jsonl

GOOD_JSONL = '{"user": "Is this kept?", "assistant": "Yes, nothing else is lost."}\n'


def good_file(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text(GOOD_JSONL, encoding="utf-8")
    return path


def make_zip(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("evil", ["../evil.txt", "notes/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_zip_with_path_traversal_is_refused_whole(ws, tmp_path, evil):
    archive = make_zip(tmp_path / "export.zip", {"conversations.json": "[]", evil: "pwned"})
    report = ingest_paths(ws, [archive, good_file(tmp_path)])
    zip_entry, good_entry = report["files"]
    assert zip_entry == {"file": "export.zip", "status": "error", "format": "zip", "counts": {},
                         "reason": f"export.zip is unsafe: member '{evil}' points outside the archive "
                                   "(path traversal); nothing was extracted"}
    assert good_entry["status"] == "ok" and report["records_added"] == 1
    assert not (ws.sources / "_unzipped" / "export.zip").exists()
    assert not list(tmp_path.rglob("evil.txt")) and not (ws.root / "evil.txt").exists()


def test_zip_bomb_and_size_cap_are_refused(ws, tmp_path):
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.txt": b"\0" * (5 * 1024 * 1024)})
    big = make_zip(tmp_path / "big.zip", {"a.txt": "x" * 5000, "b.txt": "y" * 5000}, zipfile.ZIP_STORED)
    report = ingest_paths(ws, [bomb, big, good_file(tmp_path)], IngestConfig(max_zip_bytes=8000))
    bomb_entry, big_entry, _ = report["files"]
    assert bomb_entry["status"] == "error" and bomb_entry["reason"].startswith(
        "bomb.zip looks like a zip bomb: 'zeros.txt' expands ")
    assert bomb_entry["reason"].endswith("x (limit max_zip_ratio=200); nothing was extracted")
    assert big_entry["reason"] == ("big.zip expands to more than 8,000 bytes (max_zip_bytes); "
                                   "nothing was extracted")
    assert not (ws.sources / "_unzipped" / "bomb.zip").exists()


def test_nested_archive_is_not_opened(ws, tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("conversations.json", "[]")
    outer = make_zip(tmp_path / "outer.zip", {"inner.zip": inner.getvalue(), "chat.jsonl": GOOD_JSONL})
    report = ingest_paths(ws, [outer])
    assert [(e["file"], e["status"], e["reason"]) for e in report["files"]] == [
        ("outer.zip", "ok", "extracted 2 file(s)"),
        ("outer.zip/chat.jsonl", "ok", "1 conversations, 2 messages; 1 new record(s)"),
        ("outer.zip/inner.zip", "skipped", "outer.zip/inner.zip is an archive inside an archive; unzip it first")]


def conversation(i):
    nodes = {"r": {"id": "r", "message": None, "parent": None, "children": ["u"]},
             "u": {"id": "u", "parent": "r", "children": [], "message": {
                 "author": {"role": "user"}, "content": {"content_type": "text", "parts": [f"question {i}"]}}}}
    return {"title": f"t{i}", "mapping": nodes, "current_node": "u"}


def test_malformed_truncated_binary_empty_and_missing(ws, tmp_path):
    full = json.dumps([conversation(i) for i in range(3)])
    (tmp_path / "truncated.json").write_text(full[: full.index('"t2"') + 10], encoding="utf-8")
    (tmp_path / "malformed.json").write_text('[{"title": "x" "mapping": {}}]', encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.md").write_bytes(b"")
    paths = [tmp_path / n for n in ("truncated.json", "malformed.json", "binary.json", "empty.md", "missing.txt")]
    report = ingest_paths(ws, paths + [good_file(tmp_path)])
    got = {e["file"]: (e["status"], e["reason"]) for e in report["files"]}
    assert got["truncated.json"] == ("error", "truncated.json ends too early (truncated download or "
                                              "copy?); export or copy it again; kept the 2 record(s) read before "
                                              "the problem")
    assert got["malformed.json"] == ("error", "malformed.json is not valid JSON (after key and value, inside map, "
                                              "I expect ',' or '}' near: [{\"title\": \"x\" \"mapping\": {}}]); "
                                              "check that it is the unmodified export")
    assert got["binary.json"] == ("error", "binary.json is binary data, not text, despite its name; "
                                           "save it as UTF-8 text to ingest it")
    assert got["empty.md"] == ("skipped", "empty.md is empty")
    assert got[str(tmp_path / "missing.txt")] == ("error", f"{tmp_path / 'missing.txt'} does not exist; check the path")
    assert [r["title"] for r in read_jsonl(ws.corpus)] == ["t0", "t1", "Is this kept?"]


def test_nothing_ingested_raises_user_error_and_keeps_the_corpus(ws, tmp_path):
    ingest_paths(ws, [good_file(tmp_path)])
    before = ws.corpus.read_text(encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UserError, match=r"^nothing could be ingested: empty.txt is empty\. See ingest_report"):
        ingest_paths(ws, [tmp_path / "empty.txt"])
    assert ws.corpus.read_text(encoding="utf-8") == before
    assert read_json(ws.ingest_report)["files"][0]["status"] == "skipped"
    with pytest.raises(UserError, match="nothing to ingest"):
        ingest_paths(ws, [])


def test_progress_events_name_each_file(ws, tmp_path):
    events = []
    (tmp_path / "a.txt").write_text("first note", encoding="utf-8")
    (tmp_path / "b.txt").write_text("second note", encoding="utf-8")
    ingest_paths(ws, [tmp_path / "a.txt", tmp_path / "b.txt"], progress=events.append)
    assert [(e.stage, e.step, e.total, e.get("file"), e.get("records")) for e in events] == [
        ("ingest", 1, 2, "a.txt", 1), ("ingest", 2, 2, "b.txt", 2)]


def test_folder_holding_a_zip_is_copied_once(ws, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    make_zip(folder / "chats.zip", {"chat.jsonl": GOOD_JSONL})
    first = ingest_paths(ws, [folder])
    second = ingest_paths(ws, [folder])
    assert [e["file"] for e in first["files"]] == ["exports/chats.zip", "exports/chats.zip/chat.jsonl"]
    assert (first["records_added"], second["records_added"], second["records_total"]) == (1, 0, 1)
    assert sorted(p.name for p in ws.sources.iterdir()) == ["_unzipped", "exports"]
    assert sorted(p.name for p in (ws.sources / "exports").iterdir()) == ["chats.zip"]
