"""Chat that remembers, on the real bundled GGUF, the real embedder and real FAISS + SQLite:
multi-turn context, sessions that persist (also across processes and a SIGKILL mid-answer),
exchanges that join the memory and leave it with their session, private sessions, saved chats
as training data, and every bad input or race as a clear message with no turn lost or doubled.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rhizome.chat import answer, rag
from rhizome.chat.history import delete_session, fit_history, split_reasoning, update_session
from rhizome.chat.sessions import SessionStore, Turn, check_name
from rhizome.config import BuildConfig, ChatConfig
from rhizome.memory.live import LiveChunks
from rhizome.workspace import UserError

ROOT = Path(__file__).resolve().parents[1]
# generated answers (not the small model's extractive quotes): these tests read what the model says
QUIET = ChatConfig(retrieval=False, temperature=0.0, max_tokens=8, answer_mode="generate")
FACT = "Remember this: my locker code at the Zanzibar climbing gym is 4812."
ASK_FACT = "What is the locker code at the Zanzibar climbing gym?"


def _memory(ws):
    """A small built memory (real embeddings) for retrieval to search beside the live chunks."""
    from rhizome.memory import build_memory, embed_texts
    from rhizome.models import resolve_embedder

    docs = ["Feed the sourdough starter twice a day with rye flour and water.",
            "Grey herons nest in tall trees in colonies called heronries."]
    entries = [{"text": t, "title": f"doc{i}", "source": "markdown", "kind": "chunk", "origin": {"file": f"d{i}.md"},
                "citation": f"d{i}.md"} for i, t in enumerate(docs)]
    build_memory(ws, entries, embed_texts(ws, docs), resolve_embedder(None))


def _cli(ws, *args, check=True):
    env = {**os.environ, "RHIZOME_DEBUG": "1"}
    proc = subprocess.run([sys.executable, "-m", "rhizome", *args, "--workspace", str(ws.root)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_second_turn_sees_the_first(ws):
    first = answer(ws, "My cat is called Tibbles.", QUIET, session="pets")
    assert first.history_turns == 0 and first.session == "pets" and first.saved
    second = answer(ws, "What is my cat called?", QUIET, session="pets")
    assert second.history_turns == 1
    contents = [m["content"] for m in second.messages]
    assert contents[-3:-1] == ["My cat is called Tibbles.", first.answer]  # the first exchange, in order
    assert second.timings["prompt_tokens"] > first.timings["prompt_tokens"]
    payload = second.to_dict()
    assert payload["history_turns"] == 1 and payload["session"] == "pets"
    stateless = answer(ws, "What is my cat called?", QUIET)
    assert stateless.history_turns == 0 and stateless.session is None and not stateless.saved
    assert [t.question for t in SessionStore(ws).turns("pets")] == ["My cat is called Tibbles.", "What is my cat called?"]


@pytest.mark.slow
def test_too_long_history_drops_the_oldest_turns_first(ws):
    store = SessionStore(ws)
    store.open("long")
    for i in range(8):
        qid = store.add_question("long", f"Question {i}: " + "tell me about rivers and lakes " * 6)
        store.add_answer(qid, f"Answer {i}: " + "water flows downhill to the sea " * 6)
    result = answer(ws, "And the mountains?", QUIET.replace(n_ctx=256), session="long")
    kept = [m["content"] for m in result.messages if m["role"] == "user"][:-1]
    assert 0 < result.history_turns < 8 and len(kept) == result.history_turns
    newest = [f"Question {i}:" for i in range(8 - result.history_turns, 8)]
    assert [k.split(" ", 2)[0] + " " + k.split(" ", 2)[1] for k in kept] == newest  # the newest, whole, in order
    assert result.messages[0]["role"] == "system" and result.messages[-1]["content"] == "And the mountains?"
    assert result.timings["prompt_tokens"] + result.timings["completion_tokens"] <= 256
    # one turn longer than the whole context: left out, the question still answered
    qid = store.add_question("long", "Tell me everything. " * 300)
    store.add_answer(qid, "Everything. " * 300)
    huge = answer(ws, "Short question?", QUIET.replace(n_ctx=256), session="long")
    assert huge.history_turns == 0 and huge.answer is not None


def test_fit_history_keeps_newest_whole_turns():
    turns = [Turn(f"q{i}", "word " * 10) for i in range(5)]
    count = lambda text: len(text.split())  # noqa: E731
    kept = fit_history(turns, 2 * (11 + 12) + 5, count)
    assert [t.question for t in kept] == ["q3", "q4"]
    assert fit_history(turns, 3, count) == []


@pytest.mark.slow
def test_exchange_joins_memory_leaves_with_its_session_and_private_never_joins(ws):
    _memory(ws)
    answer(ws, FACT, QUIET, session="gym")
    found = answer(ws, ASK_FACT, QUIET.replace(retrieval=True, top_k=3), session="other")
    chats = [s for s in found.sources if s["kind"] == "conversation"]
    assert chats and "4812" in chats[0]["snippet"] and chats[0]["citation"].startswith("chat 'gym', ")
    assert any(s["kind"] == "conversation" for s in found.to_dict()["sources"])  # what --json prints

    gone = _cli(ws, "sessions", "delete", "gym")
    assert "deleted session 'gym'" in gone.stdout
    hits, _ = rag.retrieve(ws, ASK_FACT, 10)
    assert not any("4812" in h["text"] for h in hits)

    update_session(ws, "secret", private=True)
    answer(ws, "Remember this: the vault word is periwinkle-quokka.", QUIET, session="secret")
    hits, _ = rag.retrieve(ws, "what is the vault word periwinkle quokka", 10)
    assert not any("quokka" in h["text"] for h in hits)
    assert len(SessionStore(ws).turns("secret")) == 1  # private still keeps the conversation itself


@pytest.mark.slow
def test_going_private_takes_a_session_out_of_memory(ws):
    _memory(ws)
    answer(ws, FACT, QUIET, session="gym")
    assert any("4812" in h["text"] for h in rag.retrieve(ws, ASK_FACT, 10)[0])
    update_session(ws, "gym", private=True)
    assert not any("4812" in h["text"] for h in rag.retrieve(ws, ASK_FACT, 10)[0])


@pytest.mark.slow
def test_sessions_survive_a_new_process_and_cli_lists_shows_deletes(ws):
    out = json.loads(_cli(ws, "chat", "--session", "trip", "Where is Lisbon?", "--no-retrieval", "--max-tokens", "6",
                          "--temperature", "0", "--json", "--private").stdout)
    assert out["session"] == "trip" and out["history_turns"] == 0
    out = json.loads(_cli(ws, "chat", "--session", "trip", "And its river?", "--no-retrieval", "--max-tokens", "6",
                          "--temperature", "0", "--json").stdout)
    assert out["history_turns"] == 1  # a new process continued the stored conversation
    listed = _cli(ws, "sessions").stdout
    assert "trip" in listed and "Where is Lisbon?" in listed and "2 turns" in listed and "[private]" in listed
    shown = json.loads(_cli(ws, "sessions", "show", "trip", "--json").stdout)
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant", "user", "assistant"]
    for args in (("sessions", "delete", "nope"), ("sessions", "show", "nope")):
        bad = _cli(ws, *args, check=False)
        assert bad.returncode == 2 and "no chat session named 'nope'" in bad.stderr
    bad = _cli(ws, "chat", "--session", "../etc", "hi", "--no-retrieval", check=False)
    assert bad.returncode == 2 and "may only hold" in bad.stderr and "Traceback" not in bad.stderr


KILL_SCRIPT = """
import sys
from rhizome.chat import answer
from rhizome.config import ChatConfig
from rhizome.chat.history import update_session
from rhizome.workspace import Workspace
ws = Workspace(sys.argv[1])
cfg = ChatConfig(retrieval=False, temperature=0.0, max_tokens=6)
update_session(ws, "k", private=True)  # private: no embedder to load, the test stays quick
answer(ws, "First question?", cfg, session="k")
answer(ws, "Second question?", cfg, session="k")
def tick(tok):
    print("STREAMING", flush=True)
answer(ws, "Write a very long story about the sea.", cfg.replace(max_tokens=400), on_token=tick, session="k")
"""


@pytest.mark.slow
def test_process_killed_mid_answer_keeps_every_completed_turn(ws):
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(ws.root)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "STREAMING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = SessionStore(ws)
    assert [t.question for t in store.turns("k")] == ["First question?", "Second question?"]
    roles = [m["role"] for m in store.messages("k")]
    assert roles == ["user", "assistant", "user", "assistant", "user"]  # the unfinished answer alone is lost
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    again = answer(ws, "Third try?", QUIET, session="k")
    assert again.history_turns == 2  # the dangling question is not fed back as a turn


def test_saved_conversations_become_training_examples(ws):
    from rhizome.curate import build_dataset
    from rhizome.workspace import read_jsonl, write_jsonl

    corpus = [("How do I start a compost pile?", "Mix green kitchen scraps with brown dry leaves and turn it weekly."),
              ("Why is my sourdough dense?", "A sluggish starter or short proofing; feed the starter twice a day."),
              ("How should I train for a marathon?", "Build weekly mileage slowly over sixteen weeks, then taper."),
              ("What does mulch do in a garden?", "Mulch keeps soil moist, feeds worms and smothers weed seedlings.")]
    write_jsonl(ws.corpus, [{"id": f"c{i}", "source": "chatgpt", "kind": "conversation", "title": q, "created_at": None,
                             "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                             "metadata": {}, "origin": {"file": "conversations.json"}} for i, (q, a) in enumerate(corpus)])
    store = SessionStore(ws)
    chats = {"bees": ("How do I keep bees calm during an inspection?",
                      "Work slowly on a warm afternoon and use a little cool smoke at the entrance."),
             "glue": ("Which glue should I use for bookbinding?",
                      "Use acid-free PVA for the spine and wheat paste for covering the boards."),
             "hidden": ("What is my bank PIN reminder phrase?", "Your reminder phrase is the blue heron at dawn.")}
    for name, (q, a) in chats.items():
        store.open(name, private=(name == "hidden"))
        store.add_answer(store.add_question(name, q), a)
    cfg = BuildConfig(semantic_method="tfidf", qa_quality_score_threshold=0.0, build_memory=False)

    def built_prompts(config):
        build_dataset(ws, config)
        rows = [r for split in ("train", "validation", "test") for r in read_jsonl(ws.split_path(split))]
        return {r["messages"][-2]["content"]: r["source"] for r in rows}

    assert not any(q in built_prompts(cfg) for q, _ in chats.values())  # off by default
    update_session(ws, "glue", train=True)  # one session opted in on its own
    prompts = built_prompts(cfg)
    assert prompts.get(chats["glue"][0]) == "rhizome" and chats["bees"][0] not in prompts
    prompts = built_prompts(cfg.replace(include_conversations=True))  # all (but private) opted in
    assert prompts.get(chats["bees"][0]) == "rhizome" and prompts.get(chats["glue"][0]) == "rhizome"
    assert chats["hidden"][0] not in prompts and prompts.get(corpus[0][0]) == "chatgpt"


def test_bad_names_empty_messages_corrupt_and_locked_databases(ws, monkeypatch):
    import rhizome.chat.sessions as sessions

    for bad in ("", "  ", "a/b", "..", ".hidden", "x\\y", "n" * 65, "a\nb"):
        with pytest.raises(UserError):
            check_name(bad)
    assert check_name(" holiday plans-2.0 ") == "holiday plans-2.0"
    with pytest.raises(UserError, match="empty"):
        answer(ws, "   ", QUIET, session="s")
    assert SessionStore(ws).get("s") is None  # nothing stored for an empty message

    locker = sqlite3.connect(ws.root / "conversations.sqlite", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(sessions, "LOCK_TIMEOUT_S", 0.2)
    with pytest.raises(UserError, match="locked"):
        SessionStore(ws).open("s")
    locker.execute("ROLLBACK")
    locker.close()

    (ws.root / "conversations.sqlite").write_bytes(b"this is not a database" * 100)
    for name in ("conversations.sqlite-wal", "conversations.sqlite-shm"):
        (ws.root / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match="unreadable"):
        SessionStore(ws).list()
    bad = _cli(ws, "sessions", check=False)
    assert bad.returncode == 2 and "unreadable" in bad.stderr and "Traceback" not in bad.stderr


def test_two_writers_on_one_session_lose_and_double_nothing(ws):
    store = SessionStore(ws)
    store.open("shared")

    def tab(label):
        for i in range(15):
            qid = SessionStore(ws).add_question("shared", f"{label} q{i}")
            SessionStore(ws).add_answer(qid, f"{label} a{i}")

    threads = [threading.Thread(target=tab, args=(t,)) for t in ("tab1", "tab2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    turns = store.turns("shared")
    assert len(turns) == 30
    assert all(t.answer == t.question.replace(" q", " a") for t in turns)  # every answer with its own question
    assert store.add_answer(turns[0].question_id, "again") is None  # a second answer is never stored
    assert len(store.turns("shared")) == 30


@pytest.mark.slow
def test_deleting_a_session_while_it_streams(ws):
    _memory(ws)
    answer(ws, FACT, QUIET, session="doomed")

    def delete_on_first_token(tok, done=[]):
        if not done:
            done.append(delete_session(ws, "doomed"))

    result = answer(ws, "Tell me about the sea.", QUIET, on_token=delete_on_first_token, session="doomed")
    assert result.answer and not result.saved and result.session == "doomed"
    assert SessionStore(ws).get("doomed") is None
    assert not any(h["kind"] == "conversation" for h in rag.retrieve(ws, "Tell me about the sea " + ASK_FACT, 10)[0])


def test_reasoning_is_kept_out_of_the_answer():
    assert split_reasoning("<think>the user wants x</think>\nThe answer is x.") == ("The answer is x.", "the user wants x")
    assert split_reasoning("<think>still thinking when cut off") == ("", "still thinking when cut off")
    assert split_reasoning("plain answer") == ("plain answer", "")
    assert split_reasoning("opened in the template</think>Yes.") == ("Yes.", "opened in the template")
    assert split_reasoning("<think>a</think>One <think>b</think>two") == ("One two", "a\n\nb")


LIVE_WRITER = """
import sys, numpy as np
from pathlib import Path
from rhizome.memory.live import LiveChunks
live = LiveChunks(Path(sys.argv[1]))
rng = np.random.default_rng(0)
for i in range(100000):
    live.add([{"text": f"exchange {i} about herons", "kind": "conversation"}],
             rng.standard_normal((1, 8)).astype("float32"), owner=f"s{i % 3}", embedder="e")
    if i == 5:
        print("ADDING", flush=True)
    if i % 7 == 0:
        live.remove(f"s{i % 3}")
"""


def test_live_memory_indexes_agree_even_after_a_kill(ws, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(tmp_path / "mem")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ADDING"
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    live = LiveChunks(tmp_path / "mem")
    rows = live.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    keyword = live.db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'herons'").fetchone()[0]
    assert rows > 0 and rows == keyword == len(live)  # every chunk in both indexes, nothing in one only
    live.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    # a second handle (another process, the app) sees writes made through the first
    other = LiveChunks(tmp_path / "mem")
    live.add([{"text": "one more about herons"}], np.ones((1, 8), np.float32), owner="x", embedder="e")
    assert len(other) == rows + 1
    assert other.remove("x") == 1 and len(live) == rows
