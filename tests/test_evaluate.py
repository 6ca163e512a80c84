"""The eval on the sample workspace after a short real run: rows, sources, repeatability, errors.

One module-scoped fixture ingests and builds the bundled sample, trains a real LoRA for two
steps, exports it to a q8_0 GGUF, and evaluates it once (base and tuned, with and without
retrieval, real llama.cpp answers, real embeddings, real perplexity through transformers+PEFT).
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rhizome.config import BuildConfig, ChatConfig, EvalConfig, ExportConfig, TrainConfig
from rhizome.workspace import Workspace

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample"
SMALL = EvalConfig(questions=8, max_tokens=24, seed=3, n_threads=1)
CHAT = ChatConfig(top_k=2)  # shorter prompts keep the fixture quick
# Retrieval must put the question's own note among the sources for most questions (measured 1.0
# on the sample; the bar leaves room for ties in the keyword ranking).
MIN_SOURCE_HIT = 0.6


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from rhizome.curate import build_dataset
    from rhizome.evaluate import evaluate_run
    from rhizome.export import export_run
    from rhizome.ingest import ingest_paths
    from rhizome.train import train_lora

    ws = Workspace(tmp_path_factory.mktemp("eval") / "ws").ensure()
    ingest_paths(ws, [SAMPLE])
    build_dataset(ws, BuildConfig())
    run_id = train_lora(ws, TrainConfig(max_steps=2, eval_steps=0, knowledge_test_size=0, save_steps=0))
    export_run(ws, run_id, ExportConfig(quant="q8_0"))
    events = []
    result = evaluate_run(ws, run_id, SMALL, progress=events.append, chat=CHAT)
    return ws, run_id, result, events


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "rhizome", *args], capture_output=True, text=True, timeout=600)


def _numbers(result):
    """Everything measured except wall-clock times."""
    rows = [{"row": (r["label"], r["retrieval"]), "summary": {k: v for k, v in r["summary"].items() if k != "seconds"},
             "answers": [(a["answer"], a["score"], a.get("source_hit")) for a in r["answers"]]}
            for r in result["rows"]]
    return rows, result["perplexity"], [q["question"] for q in result["questions"]]


@pytest.mark.slow
def test_eval_has_all_four_rows_and_writes_json_and_markdown(evaluated):
    ws, run_id, result, events = evaluated
    rows = {(r["label"], r["retrieval"]) for r in result["rows"]}
    assert rows == {("base", False), ("base", True), ("tuned", False), ("tuned", True)}
    assert len(result["questions"]) == SMALL.questions
    for row in result["rows"]:
        assert len(row["answers"]) == SMALL.questions and row["summary"]["n"] == SMALL.questions
        assert ("source_hit_rate" in row["summary"]) == row["retrieval"]
        assert row["per_theme"]
        if row["label"] == "tuned":
            assert sum(row["vs_base"].values()) == SMALL.questions
    folder = Path(result["folder"])
    assert folder.parent == ws.run_dir(run_id) / "eval"
    saved = json.loads((folder / "results.json").read_text())
    assert saved["rows"][0]["summary"] == result["rows"][0]["summary"]
    assert "| tuned + retrieval |" in (folder / "summary.md").read_text()
    ppl = result["perplexity"]
    assert ppl["base"]["perplexity"] > 1 and ppl["tuned"]["perplexity"] > 1 and ppl["base"]["per_theme"]
    assert {e.stage for e in events} >= {"questions", "perplexity", "answers", "score"}


@pytest.mark.slow
def test_retrieval_finds_the_questions_own_note(evaluated):
    _, _, result, _ = evaluated
    for row in result["rows"]:
        if row["retrieval"]:
            assert row["summary"]["source_hit_rate"] >= MIN_SOURCE_HIT, row["summary"]


@pytest.mark.slow
def test_same_seed_gives_the_same_numbers(evaluated):
    from rhizome.evaluate import evaluate_run

    ws, run_id, first, _ = evaluated
    second = evaluate_run(ws, run_id, SMALL, chat=CHAT)
    assert _numbers(second) == _numbers(first)
    assert second["previous"] == first["stamp"] and second["compared"]
    assert all(c["change"] == 0 for entry in second["compared"] for k, c in entry["changes"].items() if k != "seconds")


@pytest.mark.slow
def test_scorer_puts_the_reference_on_top_and_an_empty_answer_at_the_bottom(evaluated):
    """The real scoring path (`_score_all`, embeddings included) on answers we choose."""
    from rhizome.evaluate import _score_all, _summaries

    ws, _, result, _ = evaluated
    questions = result["questions"]
    model_rows = [r for r in result["rows"] if not r["retrieval"]]

    def row(label, answers):
        return {"label": label, "spec": label, "retrieval": False,
                "answers": [{"id": q["id"], "answer": a, "sources": []} for q, a in zip(questions, answers)]}

    rows = [row("base", ["" for _ in questions]), row("verbatim", [q["reference"] for q in questions])]
    rows += [row(r["label"] + "-copy", [a["answer"] for a in r["answers"]]) for r in model_rows]
    _score_all(ws, rows, questions)
    _summaries(rows, questions)
    scores = {r["label"]: r["summary"]["score"] for r in rows}
    assert scores["verbatim"] == pytest.approx(1.0, abs=1e-3) and scores["base"] == 0.0
    assert all(0.0 <= s <= scores["verbatim"] for s in scores.values())
    assert rows[1]["vs_base"]["wins"] == len(questions)


@pytest.mark.slow
def test_extractive_answer_quotes_and_cites_the_notes(evaluated):
    from rhizome.chat import answer

    ws, _, result, _ = evaluated
    question = result["questions"][0]["question"]
    got = answer(ws, question, ChatConfig(answer_mode="extractive"))
    assert got.answer.startswith("From your notes:") and re.search(r"\[\d\]", got.answer)
    assert got.sources and got.timings["answer_mode"] == "extractive"


@pytest.mark.slow
def test_bad_evals_are_clear_user_errors(evaluated, tmp_path):
    ws, run_id, _, _ = evaluated
    bare = ws.run_dir("run-without-export")
    bare.mkdir(exist_ok=True)
    shutil.copy(ws.run_dir(run_id) / "config.yaml", bare / "config.yaml")
    out = run_cli("eval", "--workspace", str(ws.root), "--run", bare.name)
    assert out.returncode == 2 and "has no export" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("eval", "--workspace", str(ws.root), "--run", "no-such-run")
    assert out.returncode == 2 and "no run 'no-such-run'" in out.stderr
    empty = Workspace(tmp_path / "empty").ensure()
    empty.run_dir("r1").mkdir(parents=True)
    out = run_cli("eval", "--workspace", str(empty.root), "--run", "r1")
    assert out.returncode == 2 and "no held-out test split" in out.stderr


def test_extractive_answer_picks_the_answering_sentence_and_never_the_question():
    from rhizome.chat.extract import extractive_answer, focus_source

    question = "How often should I feed my sourdough starter?"
    hits = [{"text": "How often should I feed my sourdough starter?"},
            {"text": "Bread is nice. Feed the sourdough starter twice a day with rye flour and water. "
                     "Grey herons nest in tall trees near the river."},
            {"text": "My sourdough starter smells like nail polish remover since I feed it less.",
             "origin": {"role": "user", "turn": 0}}]
    text = extractive_answer(question, hits)
    assert text.startswith("From your notes:") and "Feed the sourdough starter twice a day" in text
    assert "[2]" in text and "[1]" not in text  # the question itself is never quoted
    assert "[3]" not in text  # the person's own message told, it does not answer
    assert extractive_answer(question, hits[:1]) == ""  # nothing to quote: the model answers instead
    assert extractive_answer(question, hits[2:]) == ""
    focused = focus_source(question, hits[1]["text"], 80)
    assert "Feed the sourdough starter" in focused and "herons" not in focused


def test_a_big_test_split_is_sampled_for_perplexity_the_same_way_each_time():
    from rhizome.evaluate.perplexity import sample_examples

    test = [{"id": i} for i in range(1000)]
    picked = sample_examples(test, 300, seed=0)
    assert len(picked) == 300 and picked == sample_examples(test, 300, seed=0)
    assert [e["id"] for e in picked] == sorted(e["id"] for e in picked)  # split order kept
    assert picked != sample_examples(test, 300, seed=1)
    assert sample_examples(test[:8], 300, seed=0) == test[:8] and sample_examples(test, 0, seed=0) == test
