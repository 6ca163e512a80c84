"""End-to-end `build_dataset` on small workspaces: outputs, metadata, curation, bad input."""
import json
from pathlib import Path

import pytest

from rhizome.config import BuildConfig
from rhizome.curate import build_dataset, list_examples, set_decision
from rhizome.memory import open_memory
from rhizome.workspace import UserError, read_json, read_jsonl, write_jsonl

QA = [
    ("How do I start a compost pile?", "Mix green kitchen scraps with brown dry leaves, keep the heap as damp as a wrung-out sponge and turn it every week."),
    ("Why is my sourdough so dense?", "A dense loaf usually means a sluggish starter or short proofing; feed the starter twice a day and let the dough grow by half."),
    ("How should I train for a first marathon?", "Build weekly mileage slowly over sixteen weeks with one long run each weekend, then taper for the final two weeks."),
    ("How do I read a CSV file with pandas?", "Call pandas.read_csv with the path; you get a DataFrame you can filter, group and plot in a few lines."),
    ("What is a good way to start budgeting?", "List every fixed cost, give each remaining euro a job, and review the spreadsheet at the end of each month."),
    ("How do I keep bees calm during a hive inspection?", "Work slowly on a warm afternoon, use a little cool smoke at the entrance and avoid knocking the frames."),
    ("Which glue should I use for bookbinding?", "Use acid-free PVA for the spine and wheat paste for covering boards, since paste gives you time to adjust."),
    ("How do ownership and borrowing work in Rust?", "Each value has one owner; you can lend it out as many shared references or one mutable reference at a time."),
    ("What does mulch do in a vegetable garden?", "Mulch keeps soil moist, feeds worms as it breaks down and smothers weed seedlings before they get going."),
    ("How often should I water tomato seedlings?", "Water seedlings when the top centimetre of compost is dry, from below if you can, so stems stay dry."),
    ("What is interval training for runners?", "Intervals alternate hard efforts such as four hundred metre repeats with easy jogging to build speed and economy."),
    ("How do I fix a dry sourdough starter?", "Discard most of it and feed with equal weights of flour and lukewarm water until it doubles reliably again."),
]


def conv(i, q, a, rid=None, title=None):
    return {"id": rid or f"c{i}", "source": "chatgpt", "kind": "conversation", "title": title or q[:30],
            "created_at": None, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "metadata": {}, "origin": {"file": "conversations.json", "index": i}}


def corpus():
    recs = [conv(i, q, a) for i, (q, a) in enumerate(QA)]
    recs.append(conv(99, QA[0][0] + " ", QA[0][1].replace("every week", "weekly"), rid="dup"))  # near-duplicate
    recs.append({"id": "pdf1", "source": "pdf", "kind": "document", "title": "Garden guide", "created_at": None,
                 "text": "No-dig beds start with cardboard on the grass, then a thick layer of compost on top. "
                         "Plant straight into the compost; worms pull it down and the soil structure stays intact.",
                 "metadata": {}, "origin": {"file": "garden_guide.pdf", "page": 3}})
    recs.append({"id": "note1", "source": "markdown", "kind": "document", "title": "Standing desk", "created_at": None,
                 "text": "I decided to switch to a standing desk because my back hurt after long sitting days; "
                         "alternating every hour worked best.", "metadata": {"reflection": True, "tags": ["decision"]},
                 "origin": {"file": "notes/desk.md"}})
    recs.append(conv(50, "Can you recommend a good watch?", "Buy cheap watches now!!!!!! " * 6, rid="spam"))
    recs.append({"id": "junk", "source": "text", "kind": "document", "title": "junk", "created_at": None,
                 "text": "0x1f 0x2e 1234 5678 #### $$$$ 99.99 %%% ---- ==== 12 13 14", "metadata": {},
                 "origin": {"file": "junk.txt"}})
    return recs


def rows(ws, split, detailed=False):
    path = ws.split_path(split, detailed)
    return list(read_jsonl(path)) if path.stat().st_size else []


def test_build_writes_valid_splits_metadata_and_memory(ws):
    write_jsonl(ws.corpus, corpus())
    meta = build_dataset(ws, BuildConfig())
    counts = meta["counts"]
    assert counts["train"] + counts["validation"] + counts["test"] == counts["total"] == 14
    assert counts["validation"] >= 1 and counts["test"] >= 1
    assert meta["drops"]["clean"] == {"non_linguistic": 1}
    assert meta["drops"]["dedup"] == {"near_duplicate": 1}
    assert meta["drops"]["quality"] == {"low_quality": 1}
    assert set(meta["timings"]) >= {"clean", "pairs", "embed", "quality", "dedup", "themes", "ipf", "split", "memory", "total"}
    ipf = meta["ipf"]
    assert 0.2 <= ipf["weight_min"] <= ipf["weight_max"] <= 5.0 and 0 < ipf["ess"] <= 14 and ipf["iterations"] >= 1
    assert {"entropy_bits", "normalized_entropy", "shares"} <= set(meta["themes"]["before_ipf"])
    top = meta["cooccurrence"]["themes"]
    assert top and len(meta["cooccurrence"]["pmi"]) == len(top)
    assert meta["quality"]["count"] == 16 and "histogram" in meta["quality"]
    assert read_json(ws.dataset / "dataset_metadata.json")["counts"] == counts
    every = [r for s in ("train", "validation", "test") for r in rows(ws, s)]
    assert all(set(r) == {"id", "messages", "themes", "weight", "quality", "source"} for r in every)
    assert all(r["messages"][-1]["role"] == "assistant" for r in every)
    assert sum(1 for r in every if r["themes"]) >= 12
    detailed = [r for s in ("train", "validation", "test") for r in rows(ws, s, detailed=True)]
    assert all({"length", "alpha", "repetition", "coherence", "formatting", "quality"} <= set(r["scores"]) for r in detailed)
    pdf = next(r for r in detailed if r["origin"]["record_id"] == "pdf1")
    assert pdf["origin"]["page"] == 3 and pdf["messages"][0]["content"].endswith((".", "?"))
    dropped = list(read_jsonl(ws.dataset / "dropped_detailed.jsonl"))
    assert sorted(d["dropped"]["reason"] for d in dropped) == ["low_quality", "near_duplicate"]
    spam = next(d for d in dropped if d["dropped"]["reason"] == "low_quality")
    assert spam["origin"]["record_id"] == "spam" and spam["scores"]["quality"] < 0.46
    hits = open_memory(ws).search("no-dig bed with cardboard and compost", k=3)
    assert hits[0]["citation"] == "garden_guide.pdf p.3"
    again = build_dataset(ws, BuildConfig())  # every text already embedded: the cache is reused
    assert again["embeddings"]["computed"] == 0 and again["counts"] == counts


def test_curation_decisions_are_honoured_by_the_next_build(ws):
    write_jsonl(ws.corpus, corpus())
    build_dataset(ws, BuildConfig())
    page = list_examples(ws, "all", page=1, page_size=5)
    assert page["total"] == 14 and page["pages"] == 3 and len(page["rows"]) == 5
    assert all(r["status"] == "pending" for r in page["rows"])
    bees = list_examples(ws, "all", query="hive inspection")["rows"]
    assert len(bees) == 1
    rust = list_examples(ws, "all", query="ownership")["rows"][0]
    set_decision(ws, bees[0]["id"], "rejected")
    edited = [{"role": "user", "content": rust["prompt"]},
              {"role": "assistant", "content": "Rust gives every value exactly one owner and checks borrows at compile time."}]
    set_decision(ws, rust["id"], "edited", edited)
    dropped_dup = next(r for r in list_examples(ws, "dropped")["rows"] if r["dropped"]["reason"] == "near_duplicate")
    set_decision(ws, dropped_dup["id"], "approved")  # bring the removed near-duplicate back
    meta = build_dataset(ws, BuildConfig())
    assert meta["drops"]["curation"] == {"rejected": 1}
    # The approved copy now wins its near-duplicate group; its twin is the one removed.
    assert meta["drops"]["dedup"] == {"near_duplicate": 1}
    removed = [d for d in read_jsonl(ws.dataset / "dropped_detailed.jsonl") if d["dropped"]["stage"] == "dedup"]
    assert removed[0]["dropped"]["duplicate_of"] == dropped_dup["id"]
    assert meta["curation"] == {"approved": 1, "rejected": 1, "edited": 1, "unmatched": 0}
    every = {r["id"]: r for s in ("train", "validation", "test") for r in rows(ws, s)}
    assert bees[0]["id"] not in every and dropped_dup["id"] in every
    assert every[rust["id"]]["messages"][-1]["content"].startswith("Rust gives every value")
    statuses = {r["id"]: r["status"] for r in list_examples(ws, "all", page_size=50)["rows"]}
    assert statuses[rust["id"]] == "edited" and statuses[dropped_dup["id"]] == "approved"


def test_bad_decisions_are_refused(ws):
    with pytest.raises(UserError, match="decision must be"):
        set_decision(ws, "x", "maybe")
    with pytest.raises(UserError, match="last edited message"):
        set_decision(ws, "x", "edited", [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(UserError, match="split must be"):
        list_examples(ws, "everything")
    assert list_examples(ws, "train") == {"rows": [], "total": 0, "page": 1, "pages": 1, "page_size": 20}


def test_missing_empty_and_all_junk_corpora_give_clear_errors(ws):
    with pytest.raises(UserError, match="ingest"):
        build_dataset(ws)
    ws.corpus.write_text("\n")
    with pytest.raises(UserError, match="no usable records"):
        build_dataset(ws)
    write_jsonl(ws.corpus, [corpus()[-1], conv(1, "hi", "ok")])
    with pytest.raises(UserError, match=r"non_linguistic=1.*too_short=1|too_short=1.*non_linguistic=1"):
        build_dataset(ws)
    assert not ws.split_path("train").exists()  # nothing half-written


def test_one_record_and_all_duplicates_give_small_valid_datasets(ws):
    write_jsonl(ws.corpus, [conv(0, *QA[0])])
    one = build_dataset(ws)
    assert one["counts"] == {"train": 1, "validation": 0, "test": 0, "total": 1}
    assert any("validation split is empty" in w for w in one["warnings"])
    write_jsonl(ws.corpus, [conv(i, QA[1][0], QA[1][1] + " " * (i % 3), rid=f"d{i}") for i in range(6)])
    dups = build_dataset(ws)
    assert dups["counts"]["total"] == 1 and dups["drops"]["dedup"] == {"exact_duplicate": 5}


def test_themeless_and_non_english_corpora(ws):
    filler = ["It is what it is, and that is that.", "Yes, I think so too, you know, really.",
              "Well, maybe it is, maybe it is not, who knows.", "Sure, okay, that is fine by me, thanks."]
    write_jsonl(ws.corpus, [conv(i, f"So, what do you think {i}?", filler[i]) for i in range(4)])
    meta = build_dataset(ws)
    assert meta["counts"]["total"] >= 1 and meta["themes"]["distinct"] == 0
    assert any("no themes" in w for w in meta["warnings"]) and meta["ipf"]["weight_min"] == meta["ipf"]["weight_max"] == 1.0
    foreign = [("Wie lege ich einen Komposthaufen an?", "Mische grüne Küchenabfälle mit trockenem Laub und halte den Haufen feucht."),
               ("¿Cómo alimento mi masa madre?", "Aliméntala dos veces al día con harina y agua en partes iguales."),
               ("如何开始跑马拉松训练？", "每周逐渐增加跑量，每个周末进行一次长距离跑，最后两周减量。")]
    write_jsonl(ws.corpus, [conv(i, q, a) for i, (q, a) in enumerate(foreign)])
    meta = build_dataset(ws)
    assert meta["counts"]["total"] == 3
    texts = [r["messages"][-1]["content"] for s in ("train", "validation", "test") for r in rows(ws, s)]
    assert any("马拉松" in t or "跑" in t for t in texts)


SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sample_workspace_builds_into_splits_that_datasets_and_trl_load(ws, tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip("assets/sample is not present in this checkout")
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from rhizome.ingest import ingest_paths
    from rhizome.models import load_causal_lm

    ingest_paths(ws, [SAMPLE])
    meta = build_dataset(ws, BuildConfig())
    assert min(meta["counts"][s] for s in ("train", "validation", "test")) >= 1
    assert {"garden_guide.pdf"} <= {Path(str(r["origin"].get("file", ""))).name
                                     for r in rows(ws, "train", True) + rows(ws, "validation", True) + rows(ws, "test", True)}
    files = {s: str(ws.split_path(s)) for s in ("train", "validation", "test")}
    data = load_dataset("json", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert data["train"].num_rows == meta["counts"]["train"] and "messages" in data["train"].column_names
    model, tokenizer = load_causal_lm()
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_length=128, per_device_train_batch_size=2,
                     report_to=[], use_cpu=True, max_steps=1)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                         processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 and (batch["labels"] != -100).any()
    text = tokenizer.apply_chat_template(data["train"][0]["messages"], tokenize=False)
    assert data["train"][0]["messages"][-1]["content"][:40] in text
