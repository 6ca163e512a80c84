"""Claude exports: content blocks, branches by parent_message_uuid, old inline tags, attachments."""
import json
import zipfile

from rhizome.ingest import ingest_paths
from rhizome.workspace import read_jsonl

ROOT = "00000000-0000-4000-8000-000000000000"


def msg(uuid, sender, parent, created, content=None, text="", **extra):
    out = {"uuid": uuid, "sender": sender, "text": text, "content": content or [], "created_at": created,
           "updated_at": created, "attachments": extra.pop("attachments", []), "files": extra.pop("files", [])}
    if parent is not None:
        out["parent_message_uuid"] = parent
    return {**out, **extra}


def block(text):
    return {"type": "text", "text": text, "start_timestamp": None, "stop_timestamp": None, "citations": []}


def branching_conversation():
    """An edited question: the branch ending in the newest leaf is the one kept."""
    messages = [
        msg("m1", "human", ROOT, "2024-05-01T10:00:00Z", [block("Draft a haiku")],
            attachments=[{"file_name": "notes.txt", "file_type": "txt", "file_size": 13,
                          "extracted_content": "autumn leaves"}]),
        msg("m2", "assistant", "m1", "2024-05-01T10:00:05Z",
            [{"type": "thinking", "thinking": "Five seven five."}, block("Leaves drift slowly down")]),
        msg("m3", "human", "m2", "2024-05-01T10:01:00Z", [block("Make it sadder")]),
        msg("m4", "assistant", "m3", "2024-05-01T10:01:05Z", [block("Old sad version")]),
        msg("m3b", "human", "m2", "2024-05-01T10:02:00Z", [block("Make it happier")]),
        msg("m5", "assistant", "m3b", "2024-05-01T10:02:05Z", [
            {"type": "tool_use", "name": "web_search", "input": {"query": "happy haiku"}},
            {"type": "tool_result", "name": "web_search", "content": [{"type": "text", "text": "result text"}]},
            block("Sunlight on the leaves")]),
    ]
    return {"uuid": "conv-a", "name": "Haiku", "created_at": "2024-05-01T10:00:00Z",
            "updated_at": "2024-05-01T10:02:05Z", "account": {"uuid": "acct"}, "chat_messages": messages}


def old_style_conversation():
    """No parent links: ordered by index; inline <antThinking>/<antArtifact> tags."""
    reply = ('<antThinking>User wants code.</antThinking>\nHere it is:\n\n<antArtifact identifier="fib" '
             'type="application/vnd.ant.code" language="python" title="Fibonacci">\ndef fib(n):\n    return n\n'
             '</antArtifact>')
    messages = [
        msg("b2", "assistant", None, "2023-01-01T00:00:05Z", text=reply, index=1),
        msg("b1", "human", None, "2023-01-01T00:00:00Z", text="Write fib", index=0,
            files=[{"file_name": "diagram.png"}]),
        msg("b3", "narrator", None, "2023-01-01T00:00:09Z", text="???", index=2),
    ]
    return {"uuid": "conv-b", "name": "", "created_at": "2023-01-01T00:00:00Z", "updated_at": "2023-01-01T00:00:09Z",
            "chat_messages": messages}


def test_claude_export_exact_records(ws, tmp_path):
    path = tmp_path / "conversations.json"
    convs = [branching_conversation(), old_style_conversation(),
             {"uuid": "conv-c", "name": "Empty", "chat_messages": []}, {"uuid": "bad"}]
    path.write_text(json.dumps(convs, indent=2), encoding="utf-8")
    report = ingest_paths(ws, [path])
    first, second = read_jsonl(ws.corpus)
    assert first["messages"] == [
        {"role": "user", "content": "Draft a haiku"}, {"role": "assistant", "content": "Leaves drift slowly down"},
        {"role": "user", "content": "Make it happier"}, {"role": "assistant", "content": "Sunlight on the leaves"}]
    assert (first["title"], first["created_at"], first["source"]) == ("Haiku", "2024-05-01T10:00:00+00:00", "claude")
    assert first["metadata"] == {
        "conversation_id": "conv-a", "update_time": "2024-05-01T10:02:05+00:00",
        "attachments": [{"turn": 0, "file_name": "notes.txt", "file_type": "txt",
                         "extracted_content": "autumn leaves"}],
        "thinking": [{"turn": 1, "text": "Five seven five."}],
        "tool_use": [{"turn": 3, "name": "web_search", "input": {"query": "happy haiku"}}],
        "tool_results": [{"turn": 3, "name": "web_search", "content": "result text"}],
    }
    assert second["messages"] == [
        {"role": "user", "content": "Write fib"},
        {"role": "assistant", "content": "Here it is:\n\n```python\ndef fib(n):\n    return n\n```"}]
    assert second["title"] == "Write fib"  # no name: the first question
    assert second["metadata"] == {
        "conversation_id": "conv-b", "update_time": "2023-01-01T00:00:09+00:00",
        "thinking": [{"turn": 1, "text": "User wants code."}],
        "artifacts": [{"turn": 1, "identifier": "fib", "type": "application/vnd.ant.code", "title": "Fibonacci",
                       "language": "python"}],
    }
    entry, = report["files"]
    assert (entry["status"], entry["format"]) == ("ok", "claude")
    assert entry["counts"] == {
        "added": 2, "attachments": 1, "conversations": 2, "duplicates": 0, "merged_assistant_parts": 0,
        "messages": 6, "records": 2,
        "dropped": {"empty_conversation": 1, "file_without_content": 1, "malformed_conversation": 1,
                    "unknown_role": 1}}


def test_claude_zip_with_side_files(ws, tmp_path):
    archive = tmp_path / "data-2024.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("conversations.json", json.dumps([old_style_conversation()]))
        zf.writestr("users.json", json.dumps([{"uuid": "u", "full_name": "A", "email_address": "a@b.c"}]))
        zf.writestr("__MACOSX/._conversations.json", b"\x00\x05\x16\x07")
    report = ingest_paths(ws, [archive])
    assert [(e["file"], e["status"], e["format"]) for e in report["files"]] == [
        ("data-2024.zip", "ok", "zip"), ("data-2024.zip/conversations.json", "ok", "claude"),
        ("data-2024.zip/users.json", "skipped", None)]
    assert report["files"][2]["reason"] == "data-2024.zip/users.json is JSON but holds no conversations or chat records"
    assert report["records_added"] == 1
