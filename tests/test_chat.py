"""Chat on the real bundled GGUF through llama-cpp-python, with the real memory index.

Streaming, sampling settings, retrieval that cites its sources and respects the context budget,
the `--json` shape, and every bad input (not a GGUF, truncated, unsupported architecture, an
adapter given as a model, empty or missing index, over-long question) as a UserError after
which the engine keeps answering.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rhizome.chat import answer, list_models, resolve_model
from rhizome.chat.llm import ENGINES
from rhizome.config import ChatConfig
from rhizome.models import bundled_gguf_path, resolve_embedder
from rhizome.workspace import UserError

GREEDY = ChatConfig(retrieval=False, temperature=0.0, max_tokens=24)
DOCS = [
    ("Feed the sourdough starter twice a day with equal weights of rye flour and water, and keep the jar "
     "at 24 degrees so the starter doubles within six hours.", "Baking notes", "pdf", "baking.pdf p.3"),
    ("Grey herons nest in tall trees in colonies called heronries and return to the same nest each spring.",
     "Bird diary", "markdown", "birds.md"),
    ("The quarterly VAT return is due one month and seven days after the end of the accounting period.",
     "Tax chat", "chatgpt", "Tax questions (conversation)"),
]


def _build_memory(ws, docs):
    from rhizome.memory import build_memory, embed_texts

    entries = [{"text": t, "title": title, "source": source, "kind": "document", "origin": {"file": cite},
                "citation": cite} for t, title, source, cite in docs]
    vectors = embed_texts(ws, [e["text"] for e in entries]) if entries else np.zeros((0, 384), np.float32)
    build_memory(ws, entries, vectors, resolve_embedder(None))


def test_answer_streams_tokens_and_reports_timings(ws):
    tokens = []
    result = answer(ws, "Name one colour of the sky.", GREEDY, on_token=tokens.append)
    assert result.answer and len(tokens) > 1
    assert "".join(tokens).strip() == result.answer
    assert result.model == "base" and result.sources == []
    timings = result.timings
    assert timings["template"] == "gguf" and timings["retrieval"] is False
    assert 0 < timings["completion_tokens"] <= GREEDY.max_tokens and timings["prompt_tokens"] > 10
    assert timings["tokens_per_s"] > 0


def test_sampling_settings_are_applied(ws):
    first = answer(ws, "Write a sentence about rivers.", GREEDY)
    assert answer(ws, "Write a sentence about rivers.", GREEDY).answer == first.answer  # greedy is deterministic
    short = answer(ws, "Write a long story about rivers.", GREEDY.replace(max_tokens=5))
    assert short.timings["completion_tokens"] == 5 and short.timings["finish_reason"] == "length"
    hot = [answer(ws, "Write a sentence about rivers.", GREEDY.replace(temperature=1.5, seed=s, max_tokens=16)).answer
           for s in (1, 2)]
    assert hot[0] != hot[1]  # sampling with different seeds explores
@pytest.mark.slow
def test_retrieval_puts_cited_sources_in_the_answer(ws):
    _build_memory(ws, DOCS)
    config = ChatConfig(temperature=0.0, max_tokens=32, top_k=2, answer_mode="generate", source_chars=0)
    result = answer(ws, "How often should I feed my sourdough starter?", config)
    assert result.answer
    assert result.sources[0]["citation"] == "baking.pdf p.3" and result.sources[0]["n"] == 1
    assert "rye flour" in result.sources[0]["snippet"]
    assert len(result.sources) == 2 and result.timings["retrieval"] is True
    assert result.timings["embed_ms"] > 0 and result.timings["search_ms"] >= 0
    bare = answer(ws, "How often should I feed my sourdough starter?", config.replace(retrieval=False))
    assert result.timings["prompt_tokens"] > bare.timings["prompt_tokens"] + 40  # the sources went into the prompt


def test_retrieval_fits_sources_into_a_small_context(ws):
    long_docs = [(f"Chapter {i}: " + " ".join(["sourdough starter feeding rye flour water warmth"] * 40),
                  f"Book {i}", "pdf", f"book.pdf p.{i}") for i in range(1, 5)]
    _build_memory(ws, long_docs)
    config = ChatConfig(temperature=0.0, max_tokens=64, top_k=4, n_ctx=512, answer_mode="generate", source_chars=0)
    result = answer(ws, "How do I feed a sourdough starter?", config)
    assert 1 <= len(result.sources) < 4  # four ~330-token chunks cannot all fit in 512 tokens
    assert result.timings["prompt_tokens"] + config.max_tokens <= 512


def test_json_shape_from_the_cli(ws):
    cmd = [sys.executable, "-m", "rhizome", "chat", "Say hello.", "--json", "--no-retrieval",
           "--max-tokens", "8", "--temperature", "0", "--workspace", str(ws.root)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"answer", "sources", "model", "timings", "reasoning", "history_turns", "session", "saved"}
    assert data["history_turns"] == 0 and data["session"] is None and data["saved"] is False
    assert data["answer"] and data["model"] == "base" and data["sources"] == []
    assert data["timings"]["completion_tokens"] <= 8


def test_list_and_resolve_models(ws, tmp_path):
    assert list_models(ws)[0]["name"] == "base"
    shutil.copy(bundled_gguf_path(), ws.models / "mine.gguf")
    assert "models/mine.gguf" in {m["name"] for m in list_models(ws)}
    assert resolve_model(ws, "models/mine.gguf").path == ws.models / "mine.gguf"
    with pytest.raises(UserError, match="unknown model"):
        resolve_model(ws, "no-such-model")
    ws.run_dir("trained-not-exported").mkdir(parents=True)
    with pytest.raises(UserError, match="no exported GGUF"):
        resolve_model(ws, "trained-not-exported")


def _tiny_gguf(path, arch="rhizome-unknown", adapter=False):
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    if adapter:
        writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_bad_model_files_are_user_errors_and_chat_keeps_serving(ws, tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are my notes, not a model\n")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(bundled_gguf_path().read_bytes()[:4_000_000])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    unknown, adapter = tmp_path / "unknown.gguf", tmp_path / "lora.gguf"
    _tiny_gguf(unknown)
    _tiny_gguf(adapter, arch="llama", adapter=True)
    cases = [(fake, "not a GGUF"), (truncated, "truncated"), (garbage, "damaged"), (adapter, "LoRA adapter, not a model"),
             (tmp_path / "missing.gguf", "not found"), (unknown, "'rhizome-unknown'")]
    one = GREEDY.replace(max_loaded_models=1)
    assert answer(ws, "Hello?", one).answer
    loaded = ENGINES.engines()
    for path, message in cases:
        with pytest.raises(UserError, match=message):
            answer(ws, "Hello?", one.replace(model=str(path)))
        if path is not unknown:  # refused before loading: the working engine is not given up
            assert ENGINES.engines() == loaded
    assert answer(ws, "Hello?", one).answer  # the app keeps serving


def test_missing_or_empty_index_and_bad_questions_are_user_errors(ws):
    with pytest.raises(UserError, match="no memory index"):
        answer(ws, "What did I write about herons?", ChatConfig(max_tokens=8))
    _build_memory(ws, [])
    with pytest.raises(UserError, match="empty"):
        answer(ws, "What did I write about herons?", ChatConfig(max_tokens=8))
    with pytest.raises(UserError, match="too long"):
        answer(ws, "why " * 400, GREEDY.replace(n_ctx=256))
    with pytest.raises(UserError, match="empty"):
        answer(ws, "   ", GREEDY)
    assert answer(ws, "Hello?", GREEDY.replace(n_ctx=256)).answer
