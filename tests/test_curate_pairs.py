"""Pairs stage and question generation (template, and llm through the real bundled GGUF)."""
import json

import pytest

from rhizome.config import BuildConfig
from rhizome.curate.pairs import (
    chunk_tokens, chunk_words, conversation_examples, make_examples, reflection_question,
)
from rhizome.curate.questions import ask_questions, extract_question, keyphrases
from rhizome.records import Message, Record

GARDEN = ("Compost needs a balance of green and brown material. Greens such as grass clippings and kitchen "
          "scraps provide nitrogen, while browns such as dry leaves and cardboard provide carbon. Turn the "
          "pile every week so that air reaches the microbes, and keep it as damp as a wrung-out sponge.")


def chat(*turns, rid="c1"):
    return Record(rid, "chatgpt", "conversation", title="Garden chat",
                  messages=[Message(r, c) for r, c in turns], origin={"file": "conversations.json", "index": 0})


def test_each_assistant_turn_gets_its_context_window():
    rec = chat(("system", "Be brief."), ("user", "How often should I water tomatoes?"),
               ("assistant", "Water tomatoes deeply about twice a week."), ("user", "And in a heatwave?"),
               ("assistant", "Every day in a heatwave, early in the morning."))
    examples, drops = conversation_examples(rec, BuildConfig(context_turns=2))
    assert not drops and len(examples) == 2
    second = examples[1]
    assert [m.role for m in second.messages] == ["system", "user", "assistant"]  # window opens on a user turn
    assert second.messages[1].content == "And in a heatwave?"
    assert second.origin["turn"] == 3 and second.origin["record_id"] == "c1"
    wide, _ = conversation_examples(rec, BuildConfig(context_turns=4, system_prompt="You are me."))
    assert [m.role for m in wide[1].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert wide[1].messages[0].content == "You are me."


def test_conversation_drop_reasons_and_merged_turns():
    cfg = BuildConfig()
    _, d1 = conversation_examples(chat(("assistant", "Hello there, I am ready to help you today.")), cfg)
    assert d1 == {"no_user_turn": 1}
    _, d2 = conversation_examples(chat(("user", "Anyone there? Please answer me.")), cfg)
    assert d2 == {"no_assistant_reply": 1}
    _, d3 = conversation_examples(chat(("user", "Is the soil ready?"), ("assistant", "Yes.")), cfg)
    assert d3 == {"too_short": 1}
    merged, _ = conversation_examples(chat(("user", "Part one of my question."), ("user", "Part two."),
                                           ("assistant", "Here is one answer to both parts.")), cfg)
    assert merged[0].messages[0].content == "Part one of my question.\n\nPart two."


def test_word_chunks_overlap_and_cover_the_text():
    text = " ".join(f"w{i}" for i in range(100))
    chunks = chunk_words(text, size=40, overlap=10)
    assert [c.split()[0] for c in chunks] == ["w0", "w30", "w60"]
    assert chunks[-1].split()[-1] == "w99" and all(len(c.split()) <= 40 for c in chunks)
    assert chunk_words("short text", 40, 10) == ["short text"]


def test_token_chunks_use_tokenizer_offsets():
    from rhizome.models import load_embedder

    tok = load_embedder().tokenizer
    chunks = chunk_tokens(GARDEN * 3, size=50, overlap=10, tokenizer=tok)
    assert len(chunks) > 2
    assert all(len(tok(c, add_special_tokens=False)["input_ids"]) <= 52 for c in chunks)
    assert chunks[0].startswith("Compost needs") and (GARDEN * 3).startswith(chunks[0])


def test_documents_and_reflections_become_examples():
    docs = [
        Record("d1", "pdf", "document", title="Composting guide", text=GARDEN, origin={"file": "guide.pdf", "page": 2}),
        Record("r1", "markdown", "document", title="Standing desk", text="I decided to switch to a standing desk "
               "because my back hurt after long days of sitting.", metadata={"reflection": True, "tags": ["decision"]}),
    ]
    cfg = BuildConfig()
    examples, drops, chunks = make_examples(docs, cfg, lambda cs: [f"Q about {c.title}?" for c in cs])
    by_id = {e.origin["record_id"]: e for e in examples}
    assert by_id["r1"].messages[0].content == "What did I decide about Standing desk, and why?"
    assert by_id["d1"].messages[0].content == "Q about Composting guide?"
    assert by_id["d1"].messages[1].content == GARDEN and by_id["d1"].origin["page"] == 2
    assert len(chunks) == 1 and not drops


def test_reflection_question_follows_tags():
    learn = Record("n", "markdown", "document", title="Marathon", text="x", metadata={"reflection": True, "tags": ["#learning"]})
    assert reflection_question(learn) == "What did I learn from Marathon?"


def test_template_questions_use_distinctive_keyphrases():
    texts = [GARDEN, "Sourdough starter needs flour and water every day. A strong starter makes the dough rise."]
    phrases = keyphrases(texts)
    assert all(p and not {"like", "time", "thing"} & set(p) for p in phrases)
    questions, stats = ask_questions(None, texts, ["Composting", "Bread"], BuildConfig())
    assert stats == {"mode": "template", "generated": 2}
    assert all(q.endswith(("?", ".")) for q in questions)
    assert any(p in questions[0] for p in phrases[0])


def test_extract_question_cleans_model_output():
    assert extract_question('Question: "What does compost need?"\nExtra text') == "What does compost need?"
    assert extract_question("1. Why turn the pile every week?") == "Why turn the pile every week?"
    assert extract_question("This passage is about compost.") is None


@pytest.mark.timeout(120)
def test_llm_questions_are_generated_once_then_cached(ws):
    texts = [GARDEN]
    cfg = BuildConfig(question_mode="llm")
    first, stats1 = ask_questions(ws, texts, ["Composting"], cfg)
    assert stats1["mode"] == "llm" and stats1["generated"] == 1 and stats1["cached"] == 0
    assert first[0].endswith("?") and len(first[0].split()) >= 3
    cache = ws.root / "cache" / "questions.jsonl"
    assert len(cache.read_text().splitlines()) == 1 and json.loads(cache.read_text())["key"]
    again, stats2 = ask_questions(ws, texts, ["Composting"], cfg)
    assert again == first and stats2["generated"] == 0 and stats2["cached"] == 1
