"""Property tests: any JSON (or bytes) fed to a parser yields valid records or a reported error."""
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rhizome.ingest import PARSERS, ingest_paths
from rhizome.ingest.common import FormatError, SkipFile, Source, Tally
from rhizome.records import ROLES, Record
from rhizome.workspace import UserError, Workspace, read_jsonl

# Keys and values the parsers look for, so random documents reach deep into their code paths.
KEYS = ["mapping", "current_node", "parent", "children", "message", "author", "role", "content", "content_type",
        "parts", "recipient", "metadata", "is_visually_hidden_from_conversation", "chat_messages", "sender",
        "text", "uuid", "parent_message_uuid", "index", "created_at", "attachments", "extracted_content", "type",
        "thinking", "messages", "conversations", "from", "value", "user", "assistant", "prompt", "response",
        "instruction", "input", "output", "title", "id", "create_time", "thoughts", "summary", "name", "files",
        "finish_details", "timestamp", "n1", "n2"]
WORDS = KEYS + ["user", "assistant", "human", "system", "tool", "all", "python", "text", "multimodal_text", "code",
                "execution_output", "tether_quote", "thoughts", "reasoning_recap", "user_editable_context",
                "image_asset_pointer", "audio_transcription", "max_tokens", "tool_use", "tool_result",
                "<antThinking>hm</antThinking>ok", '<antArtifact type="x">body</antArtifact>', "a\ue200cite\ue201b",
                "【1†source】"]
SCALARS = (st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12) | st.sampled_from(WORDS))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6), max_leaves=40)
IDS = ["n0", "n1", "n2", "n3"]


def mostly(common, rare, odds=9):
    """`common` about `odds` times in `odds + 1`, else `rare` (one_of alone is far from uniform)."""
    return st.tuples(st.integers(0, odds), common, rare).map(lambda t: t[2] if t[0] == 0 else t[1])


def fuzzed(structured):
    """Mostly the expected shape, sometimes any JSON at all in its place."""
    return mostly(structured, JSON)


def shaped(required: dict, **optional):
    """A dict with the `required` keys and any of the `optional` ones (those sometimes any JSON)."""
    return st.fixed_dictionaries(required, optional={k: fuzzed(v) for k, v in optional.items()})


ROLE_WORDS = mostly(st.sampled_from(["user", "assistant", "user", "assistant", "system", "tool", "human", "gpt"]),
                    st.sampled_from(WORDS), odds=5)
TEXTISH = st.one_of(st.text(max_size=12), st.sampled_from(WORDS), st.sampled_from(["hello", "a reply", " x "]))
KINDS = mostly(st.sampled_from(["text"] * 8 + ["multimodal_text", "code", "execution_output", "tether_quote",
                                               "thoughts", "reasoning_recap", "user_editable_context",
                                               "image_asset_pointer", "audio_transcription", "tool_use",
                                               "tool_result", "thinking"]), TEXTISH, odds=5)
PART = TEXTISH | shaped({"content_type": KINDS}, text=TEXTISH)
GPT_CONTENT = shaped({"content_type": KINDS, "parts": st.lists(PART, max_size=3)}, text=TEXTISH, language=TEXTISH,
                     thoughts=st.lists(shaped({"summary": TEXTISH, "content": TEXTISH}), max_size=2),
                     user_profile=TEXTISH, url=TEXTISH, title=TEXTISH)
GPT_MESSAGE = shaped({"author": shaped({"role": ROLE_WORDS}, name=TEXTISH), "content": GPT_CONTENT},
                     recipient=st.sampled_from(["all", "python", "browser"]) | TEXTISH,
                     create_time=st.floats(0, 2e9) | st.none(),
                     metadata=shaped({}, is_visually_hidden_from_conversation=st.booleans(), model_slug=TEXTISH,
                                     finish_details=shaped({"type": st.sampled_from(["max_tokens", "stop"])})))
GPT_NODE = shaped({"message": mostly(GPT_MESSAGE, st.none(), odds=4), "parent": st.sampled_from(IDS) | st.none(),
                   "children": st.lists(st.sampled_from(IDS), max_size=3)})
CHATGPT = shaped({"mapping": st.lists(fuzzed(GPT_NODE), min_size=1, max_size=4).map(
                      lambda nodes: {f"n{i}": node for i, node in enumerate(nodes)}),
                  "current_node": st.sampled_from(IDS + ["zz"]) | st.none()},
                 title=TEXTISH, create_time=st.floats(-1e12, 1e12) | st.none(), conversation_id=TEXTISH)
CLAUDE_BLOCK = shaped({"type": KINDS}, text=TEXTISH, thinking=TEXTISH, name=TEXTISH, input=JSON,
                      content=st.lists(shaped({"type": TEXTISH, "text": TEXTISH}), max_size=2) | TEXTISH)
CLAUDE_MESSAGE = shaped({"sender": ROLE_WORDS}, uuid=st.sampled_from(IDS), text=TEXTISH,
                        content=st.lists(CLAUDE_BLOCK, max_size=3), parent_message_uuid=st.sampled_from(IDS),
                        index=st.integers(-3, 3), created_at=TEXTISH,
                        attachments=st.lists(shaped({"file_name": TEXTISH, "extracted_content": TEXTISH}), max_size=2),
                        files=st.lists(JSON, max_size=2))
CLAUDE = shaped({"chat_messages": st.lists(fuzzed(CLAUDE_MESSAGE), min_size=1, max_size=5)}, uuid=TEXTISH,
                name=TEXTISH, created_at=TEXTISH)
TURN = shaped({}, role=ROLE_WORDS, content=TEXTISH | st.lists(shaped({"type": TEXTISH, "text": TEXTISH})),
              author=ROLE_WORDS | shaped({"role": ROLE_WORDS}), value=TEXTISH, timestamp=TEXTISH | st.floats(0, 2e9))
CHAT_RECORD = shaped({}, messages=st.lists(TURN, max_size=4), conversations=st.lists(
    TURN | shaped({"messages": st.lists(TURN, max_size=3)}, id=TEXTISH), max_size=3), user=TEXTISH,
    assistant=TEXTISH, prompt=TEXTISH, response=TEXTISH, instruction=TEXTISH, input=TEXTISH, output=TEXTISH,
    text=TEXTISH, title=TEXTISH)
# 50 examples keep CI fast; RHIZOME_FUZZ_EXAMPLES=2000 runs a deeper search locally.
FAST = settings(max_examples=int(os.environ.get("RHIZOME_FUZZ_EXAMPLES", "50")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_parser(fmt: str, path: Path) -> list:
    """The parser's records, or [] when it reported an error; any other exception fails the test."""
    try:
        records = list(PARSERS[fmt](Source(path, path.name), Tally()))
    except (FormatError, SkipFile):
        return []
    for record in records:
        assert isinstance(record, Record)
        data = record.to_dict()
        json.dumps(data, ensure_ascii=False)
        assert Record.from_dict(data) == record
        for message in record.messages or []:
            assert message.role in ROLES and isinstance(message.content, str) and message.content.strip()
    return records


def write(tmp: str, name: str, payload) -> Path:
    path = Path(tmp) / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(payload, encoding="utf-8")
    return path


@FAST
@given(value=JSON | CHATGPT | CLAUDE | CHAT_RECORD, wrap=st.booleans())
def test_json_parsers_never_raise(value, wrap):
    text = json.dumps([value] if wrap else value)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(tmp, "data.json", text)
        for fmt in ("chatgpt", "claude", "jsonl"):
            run_parser(fmt, path)


@FAST
@given(convs=st.lists(fuzzed(CHATGPT), max_size=3))
def test_chatgpt_parser_on_export_shaped_json(convs):
    with tempfile.TemporaryDirectory() as tmp:
        run_parser("chatgpt", write(tmp, "conversations.json", json.dumps(convs)))


@FAST
@given(convs=st.lists(fuzzed(CLAUDE), max_size=3))
def test_claude_parser_on_export_shaped_json(convs):
    with tempfile.TemporaryDirectory() as tmp:
        run_parser("claude", write(tmp, "conversations.json", json.dumps(convs)))


@FAST
@given(lines=st.lists((JSON | CHAT_RECORD).map(json.dumps) | st.text(max_size=30).filter(lambda s: "\n" not in s),
                      max_size=6))
def test_jsonl_lines_never_raise(lines):
    with tempfile.TemporaryDirectory() as tmp:
        run_parser("jsonl", write(tmp, "data.jsonl", "\n".join(lines)))


@FAST
@given(body=st.text(max_size=400), front=st.booleans())
def test_markdown_and_text_parsers_never_raise(body, front):
    with tempfile.TemporaryDirectory() as tmp:
        payload = ("---\n" + body[:40] + "\n---\n" if front else "") + body
        path = write(tmp, "note.md", payload.encode("utf-8", "replace"))
        run_parser("markdown", path)
        run_parser("text", path)
        run_parser("csv", path)


@FAST
@given(data=st.binary(max_size=600), name=st.sampled_from(["x.json", "x.md", "x.txt", "x.csv", "x.pdf", "x.zip", "x"]))
def test_ingest_paths_reports_any_bytes(data, name):
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        try:
            report = ingest_paths(ws, [write(tmp, name, data)])
        except UserError:
            report = json.loads(ws.ingest_report.read_text(encoding="utf-8"))
        entry = report["files"][0]
        assert entry["status"] in ("ok", "skipped", "error") and entry["reason"]
        assert all(isinstance(r, dict) for r in read_jsonl(ws.corpus))


def test_lone_surrogate_escapes_are_stored_as_replacement_characters(ws, tmp_path):
    (tmp_path / "odd.jsonl").write_text('{"user": "bad \\ud800 half", "assistant": "ok"}\n', encoding="utf-8")
    ingest_paths(ws, [tmp_path / "odd.jsonl"])
    record, = read_jsonl(ws.corpus)
    assert record["messages"][0]["content"] == "bad \ufffd half"
