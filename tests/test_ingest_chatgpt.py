"""ChatGPT exports: branch walking, hidden/system/tool messages, content types, citations, merging."""
import json
import zipfile

from rhizome.ingest import ingest_paths
from rhizome.workspace import read_json, read_jsonl


def node(node_id, parent, children, role=None, content=None, **extra):
    """One mapping node as ChatGPT writes it (message None for the root)."""
    if role is None:
        return {"id": node_id, "message": None, "parent": parent, "children": children}
    message = {"id": node_id, "author": {"role": role, "name": extra.pop("name", None), "metadata": {}},
               "create_time": extra.pop("create_time", 1700000000.0), "content": content,
               "status": "finished_successfully", "recipient": extra.pop("recipient", "all"),
               "metadata": extra.pop("metadata", {})}
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def text(*parts):
    return {"content_type": "text", "parts": list(parts)}


def branching_conversation():
    """Edits, regenerations, hidden/system/tool nodes, custom instructions and every content type."""
    nodes = [
        node("root", None, ["sys"]),
        node("sys", "root", ["ctx"], "system", text("You are ChatGPT.")),
        node("ctx", "sys", ["hid"], "user",
             {"content_type": "user_editable_context", "user_profile": "I am a botanist.",
              "user_instructions": "Answer briefly."},
             metadata={"is_visually_hidden_from_conversation": True}),
        node("hid", "ctx", ["u1"], "user", text("remember my name"),
             metadata={"is_visually_hidden_from_conversation": True}),
        node("u1", "hid", ["a1"], "user", text("Plan a trip to Kyoto")),
        node("a1", "u1", ["u2_old", "u2_new"], "assistant",
             text("Kyoto in spring is lovely \ue200cite\ue202turn0search1\ue201."),
             metadata={"model_slug": "gpt-4o"}),
        node("u2_old", "a1", ["a2_old"], "user", text("What about winter?")),
        node("a2_old", "u2_old", [], "assistant", text("Winter is cold.")),
        node("u2_new", "a1", ["a2_first", "a2_regen"], "user",
             {"content_type": "multimodal_text",
              "parts": [{"content_type": "image_asset_pointer", "asset_pointer": "file-service://file-abc"},
                        "What is in this photo?"]}),
        node("a2_first", "u2_new", [], "assistant", text("First try.")),
        node("a2_regen", "u2_new", ["a3"], "assistant", text("A temple garden【3†source】 with moss."),
             metadata={"finish_details": {"type": "max_tokens"}, "model_slug": "gpt-4o"}),
        node("a3", "a2_regen", ["call"], "assistant", text(" It is Saihō-ji.")),
        node("call", "a3", ["out"], "assistant", {"content_type": "code", "language": "python", "text": "print(2+2)"},
             recipient="python"),
        node("out", "call", ["quote"], "tool", {"content_type": "execution_output", "text": "4"}, name="python"),
        node("quote", "out", ["a4"], "tool",
             {"content_type": "tether_quote", "url": "https://example.org/moss", "domain": "example.org",
              "text": "Moss gardens need shade.", "title": "Moss"}, name="browser"),
        node("a4", "quote", ["th"], "assistant", text("The answer is 4."), metadata={"model_slug": "o3"}),
        node("th", "a4", ["recap"], "assistant",
             {"content_type": "thoughts", "thoughts": [{"summary": "Checking", "content": "Let me think."}]}),
        node("recap", "th", ["u3"], "assistant", {"content_type": "reasoning_recap", "content": "Thought for 3s"}),
        node("u3", "recap", ["code"], "user", text("Show code")),
        node("code", "u3", ["a5"], "assistant",
             {"content_type": "code", "language": "python", "text": "print('hi')\n"}),
        node("a5", "code", [], "assistant", text("")),
    ]
    return {"title": "Trip planning", "create_time": 1700000000.0, "update_time": 1700000500.0,
            "mapping": {n["id"]: n for n in nodes}, "current_node": "a5", "conversation_id": "conv-1",
            "default_model_slug": "gpt-4o", "id": "conv-1"}


def fallback_conversation():
    """No usable current_node: the newest leaf wins."""
    nodes = [node("r", None, ["u"]), node("u", "r", ["old", "new"], "user", text("Hello")),
             node("old", "u", [], "assistant", text("Old reply"), create_time=1.0),
             node("new", "u", [], "assistant", text("New reply"), create_time=2.0)]
    return {"title": "", "create_time": None, "mapping": {n["id"]: n for n in nodes}, "current_node": "missing",
            "conversation_id": "conv-2"}


def export(tmp_path, conversations, name="conversations.json"):
    path = tmp_path / name
    path.write_text(json.dumps(conversations, ensure_ascii=False), encoding="utf-8")
    return path


EXPECTED_MESSAGES = [
    {"role": "user", "content": "Plan a trip to Kyoto"},
    {"role": "assistant", "content": "Kyoto in spring is lovely."},
    {"role": "user", "content": "What is in this photo?"},
    {"role": "assistant", "content": "A temple garden with moss. It is Saihō-ji.\n\nThe answer is 4."},
    {"role": "user", "content": "Show code"},
    {"role": "assistant", "content": "```python\nprint('hi')\n```"},
]


def test_branching_export_keeps_the_seen_branch_exactly(ws, tmp_path):
    convs = [branching_conversation(), fallback_conversation(), {"title": "broken", "mapping": []},
             {"title": "only system", "mapping": {"s": node("s", None, [], "system", text("x"))}, "current_node": "s"}]
    report = ingest_paths(ws, [export(tmp_path, convs)])
    records = list(read_jsonl(ws.corpus))
    assert [r["title"] for r in records] == ["Trip planning", "Hello"]
    first = records[0]
    assert first["messages"] == EXPECTED_MESSAGES
    assert first["source"] == "chatgpt" and first["kind"] == "conversation"
    assert first["created_at"] == "2023-11-14T22:13:20+00:00"
    assert first["origin"] == {"file": "conversations.json", "index": 0}
    assert first["metadata"] == {
        "conversation_id": "conv-1", "model_slug": "gpt-4o", "update_time": "2023-11-14T22:21:40+00:00",
        "custom_instructions": {"user_profile": "I am a botanist.", "user_instructions": "Answer briefly."},
        "tool_results": [{"name": "python", "content_type": "execution_output", "text": "4"},
                         {"name": "browser", "content_type": "tether_quote",
                          "text": "> Moss gardens need shade.\n— Moss (https://example.org/moss)"}],
        "thoughts": [{"summary": "Checking", "content": "Let me think."}],
    }
    assert records[1]["messages"] == [{"role": "user", "content": "Hello"},
                                      {"role": "assistant", "content": "New reply"}]
    assert records[1]["metadata"]["model_slug"] is None
    entry, = report["files"]
    assert entry["status"] == "ok" and entry["format"] == "chatgpt"
    assert entry["counts"] == {
        "added": 2, "conversations": 2, "duplicates": 0, "merged_assistant_parts": 2, "messages": 8,
        "records": 2, "thoughts": 1, "tool_results": 2,
        "dropped": {"empty_conversation": 1, "empty_message": 1, "hidden": 1, "image": 1,
                    "malformed_conversation": 1, "reasoning_recap": 1, "system": 2, "tool_call": 1}}
    assert entry["reason"].startswith("2 conversations, 8 messages; 2 new record(s); dropped ")


def test_reingest_adds_nothing_and_report_says_so(ws, tmp_path):
    path = export(tmp_path, [branching_conversation()])
    first = ingest_paths(ws, [path])
    second = ingest_paths(ws, [path])
    assert (first["records_added"], second["records_added"], second["records_total"]) == (1, 0, 1)
    assert second["files"][0]["counts"]["duplicates"] == 1
    assert len(list(read_jsonl(ws.corpus))) == 1
    assert sorted(p.name for p in ws.sources.iterdir()) == ["conversations.json"]  # copied once


def test_zip_export_with_split_files_and_side_files(ws, tmp_path):
    archive = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("conversations-000.json", json.dumps([branching_conversation()]))
        zf.writestr("conversations-001.json", json.dumps([fallback_conversation()]))
        zf.writestr("chat.html", "<html><body>copy</body></html>")
        zf.writestr("user.json", json.dumps({"id": "user-1", "email": "a@b.c"}))
        zf.writestr("file-abc.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    report = ingest_paths(ws, [archive])
    summary = [(e["file"], e["status"], e["format"]) for e in report["files"]]
    assert summary == [
        ("chatgpt-export.zip", "ok", "zip"),
        ("chatgpt-export.zip/chat.html", "skipped", None),
        ("chatgpt-export.zip/conversations-000.json", "ok", "chatgpt"),
        ("chatgpt-export.zip/conversations-001.json", "ok", "chatgpt"),
        ("chatgpt-export.zip/file-abc.png", "skipped", None),
        ("chatgpt-export.zip/user.json", "skipped", None),
    ]
    assert report["files"][4]["reason"] == "chatgpt-export.zip/file-abc.png is a PNG image, not a supported format"
    assert report["records_added"] == 2
    assert (ws.sources / "_unzipped" / "chatgpt-export.zip" / "conversations-000.json").is_file()
    origins = [r["origin"]["file"] for r in read_jsonl(ws.corpus)]
    assert origins == ["chatgpt-export.zip/conversations-000.json", "chatgpt-export.zip/conversations-001.json"]
    assert read_json(ws.ingest_report) == report


def test_fifty_megabyte_single_message_is_kept_whole(ws, tmp_path):
    big = "word " * 10_000_000  # 50 MB in one message
    nodes = [node("r", None, ["u"]), node("u", "r", ["a"], "user", text("Summarise this")),
             node("a", "u", [], "assistant", text(big))]
    conv = {"title": "Huge", "mapping": {n["id"]: n for n in nodes}, "current_node": "a"}
    report = ingest_paths(ws, [export(tmp_path, [conv])])
    record, = read_jsonl(ws.corpus)
    assert record["messages"][1]["content"] == big.strip()
    entry, = report["files"]
    assert entry["status"] == "ok" and entry["counts"]["long_messages"] == 1
    assert "kept 1 very long message(s)" in entry["reason"]
