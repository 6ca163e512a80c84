"""Plain text in several encodings, mojibake repair, and JSONL/JSON chat shapes."""
import json

import ftfy.bad_codecs  # noqa: F401  (registers sloppy-windows-1252 to build real mojibake)

from rhizome.ingest import ingest_paths
from rhizome.workspace import read_jsonl

GERMAN = "Grüße aus Köln — ça va très bien, naïve café.\nZweite Zeile."
JAPANESE = "日本語のテキストです。文字コードの検出をテストします。"


def test_encodings_are_detected_and_mojibake_repaired(ws, tmp_path):
    (tmp_path / "legacy.txt").write_bytes(GERMAN.replace("\n", "\r\n").encode("cp1252"))
    (tmp_path / "utf16.txt").write_bytes(GERMAN.encode("utf-16"))
    (tmp_path / "sjis.txt").write_bytes(JAPANESE.encode("shift_jis"))
    broken = "Café “quoted” naïve".encode("utf-8").decode("sloppy-windows-1252")  # CafÃ© â€œquotedâ€\x9d …
    (tmp_path / "mojibake.txt").write_text(broken, encoding="utf-8")
    report = ingest_paths(ws, sorted(tmp_path.glob("*.txt")))
    got = {r["title"]: (r["text"], r["metadata"]) for r in read_jsonl(ws.corpus)}
    assert got == {
        "legacy": (GERMAN, {"encoding": "cp1252", "repaired_mojibake": False}),
        "mojibake": ("Café “quoted” naïve", {"encoding": "utf-8", "repaired_mojibake": True}),
        "sjis": (JAPANESE, {"encoding": "cp932", "repaired_mojibake": False}),
        "utf16": (GERMAN, {"encoding": "utf-16", "repaired_mojibake": False}),
    }
    reasons = {e["file"]: e["reason"] for e in report["files"]}
    assert reasons["mojibake.txt"] == "1 documents; 1 new record(s); repaired mis-encoded characters (mojibake)"
    assert reasons["legacy.txt"] == "1 documents; 1 new record(s); decoded as cp1252"


JSONL_LINES = [
    {"user": "Hi", "assistant": "Hello!"},
    {"messages": [{"role": "system", "content": "Be kind"}, {"role": "user", "content": "Q"},
                  {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]},
    '{"broken": ',
    {"instruction": "Translate to English", "input": "chat", "output": "cat"},
    {"conversations": [{"from": "human", "value": "ShareGPT q"}, {"from": "gpt", "value": "ShareGPT a"}]},
    {"text": "A standalone note.", "title": "Note"},
    {"foo": 1},
    "",
]


def test_jsonl_shapes_and_a_malformed_line(ws, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in JSONL_LINES), encoding="utf-8")
    report = ingest_paths(ws, [path])
    records = list(read_jsonl(ws.corpus))
    assert [(r["kind"], r["title"], r["origin"]["index"]) for r in records] == [
        ("conversation", "Hi", 0), ("conversation", "Q", 1), ("conversation", "Translate to English", 3),
        ("conversation", "ShareGPT q", 4), ("document", "Note", 5)]
    assert [r.get("messages") for r in records[:4]] == [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        [{"role": "system", "content": "Be kind"}, {"role": "user", "content": "Q"},
         {"role": "assistant", "content": "A"}],
        [{"role": "user", "content": "Translate to English\n\nchat"}, {"role": "assistant", "content": "cat"}],
        [{"role": "user", "content": "ShareGPT q"}, {"role": "assistant", "content": "ShareGPT a"}]]
    assert records[4]["text"] == "A standalone note."
    entry, = report["files"]
    assert (entry["status"], entry["format"]) == ("ok", "jsonl")
    assert entry["counts"]["dropped"] == {"malformed_line": 1, "unrecognised_record": 1}
    assert entry["reason"].endswith("skipped 1 line(s) that are not valid JSON (line 3)")


def test_custom_conversations_json_is_streamed(ws, tmp_path):
    data = {"conversations": [
        {"id": "c1", "title": "Custom", "messages": [
            {"author": "user", "content": "How?", "timestamp": "2024-02-02T12:00:00Z"},
            {"author": {"role": "assistant"}, "content": "Like this.", "timestamp": 1706875260}]},
        {"id": "c2", "messages": [{"author": "Alice", "content": "??"}]}]}
    (tmp_path / "custom.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (tmp_path / "pairs.json").write_text(json.dumps([{"prompt": "p?", "response": "r."}]), encoding="utf-8")
    report = ingest_paths(ws, [tmp_path / "custom.json", tmp_path / "pairs.json"])
    first, second = read_jsonl(ws.corpus)
    assert first == {
        "id": first["id"], "source": "jsonl", "kind": "conversation", "title": "Custom",
        "created_at": "2024-02-02T12:00:00+00:00",
        "messages": [{"role": "user", "content": "How?"}, {"role": "assistant", "content": "Like this."}],
        "metadata": {"conversation_id": "c1"}, "origin": {"file": "custom.json", "index": 0}}
    assert second["messages"] == [{"role": "user", "content": "p?"}, {"role": "assistant", "content": "r."}]
    assert report["files"][0]["counts"]["dropped"] == {"no_turns": 1, "unknown_role": 1}
