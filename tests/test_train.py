"""LoRA training on the real bundled SmolLM2-135M: masking, sampling, a real run, stop, bad input.

Small settings (max_length 128, batch 2, a few steps, one thread: tiny matmuls gain nothing from
a second thread and lose a lot when other jobs share the cores) keep the file to well under a
minute on two cores; the first run of the suite also dequantises the bundled GGUF once (~30 s).
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from rhizome.config import TrainConfig
from rhizome.workspace import UserError, Workspace, read_json, write_jsonl

THEMES = {
    "bees": ("How do I keep my hive calm?", "Rooted answer: Move slowly and smoke the entrance lightly.\nNext step: Inspect on a warm afternoon."),
    "bread": ("Why is my loaf dense?", "Rooted answer: The dough was under-proofed.\nNext step: Let it rise until it jiggles."),
    "rust": ("What does the borrow checker do?", "Rooted answer: It proves references never outlive their data.\nNext step: Read chapter four again."),
}


def make_examples(n: int, weight_of=lambda theme: 1.0) -> list[dict]:
    rows = []
    for i in range(n):
        theme = list(THEMES)[i % 3]
        question, answer = THEMES[theme]
        rows.append({"id": f"{theme}-{i}", "messages": [{"role": "user", "content": f"{question} ({i})"},
                                                        {"role": "assistant", "content": answer}],
                     "themes": [theme], "weight": weight_of(theme), "quality": 1.0, "source": "jsonl"})
    return rows


def write_dataset(root: Path, train: list[dict], validation: list[dict] | None = None, test: list[dict] | None = None) -> Workspace:
    ws = Workspace(root).ensure()
    write_jsonl(ws.split_path("train"), train)
    write_jsonl(ws.split_path("validation"), validation if validation is not None else make_examples(3))
    write_jsonl(ws.split_path("test"), test if test is not None else make_examples(2))
    return ws


def small_config(**changes) -> TrainConfig:
    base = dict(max_steps=2, batch_size=2, max_length=128, eval_steps=1, save_steps=1, logging_steps=1,
                knowledge_test_size=1, knowledge_max_new_tokens=6, num_threads=1)
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from rhizome.models import resolve_train_model

    return AutoTokenizer.from_pretrained(resolve_train_model("bundled"))


# -- sampler --------------------------------------------------------------------------------

def test_sampler_draws_in_proportion_to_weights():
    from rhizome.train.sampler import ThemeWeightedSampler

    weights = [1.0, 2.0, 3.0, 4.0]
    sampler = ThemeWeightedSampler(weights, num_samples=40_000, seed=3)
    counts = Counter(sampler.order(0))
    for i, w in enumerate(weights):
        share = counts[i] / 40_000
        # binomial sd at n=40k is <= 0.0025; 4 sd keeps the test from ever flaking
        assert abs(share - w / 10) < 0.01, (i, share)
    plain = Counter(ThemeWeightedSampler(weights, num_samples=400, weighted=False).order(0))
    assert set(plain.values()) == {100}  # unweighted: a shuffle, every example equally often


def test_sampler_order_is_reproducible_and_state_round_trips():
    from rhizome.train.sampler import ThemeWeightedSampler

    sampler = ThemeWeightedSampler([0.5, 1, 2, 1, 0.2, 3], lengths=[5, 9, 3, 7, 8, 2], batch_size=2, seed=7)
    sampler.set_epoch(4)
    state = json.loads(json.dumps(sampler.state_dict()))  # stored as JSON in every checkpoint
    other = ThemeWeightedSampler([0.5, 1, 2, 1, 0.2, 3], lengths=[5, 9, 3, 7, 8, 2], batch_size=2, seed=99)
    other.load_state_dict(state)
    assert list(other) == list(sampler) == sampler.order(4)
    assert sampler.order(4) != sampler.order(5)  # each epoch draws afresh
    changed = ThemeWeightedSampler([1, 1, 1, 1, 1, 1], batch_size=2)
    with pytest.raises(UserError, match="changed"):
        changed.load_state_dict(state)


def test_length_grouping_reduces_padding():
    from rhizome.train.sampler import ThemeWeightedSampler

    lengths = [int(x) for x in torch.randint(10, 300, (256,), generator=torch.Generator().manual_seed(0))]

    def padding(order):
        batches = [order[i:i + 8] for i in range(0, len(order), 8)]
        return sum(max(lengths[j] for j in b) * len(b) - sum(lengths[j] for j in b) for b in batches)

    plain = ThemeWeightedSampler([1.0] * 256, lengths, batch_size=8, group_by_length=False).order(0)
    grouped = ThemeWeightedSampler([1.0] * 256, lengths, batch_size=8, group_by_length=True).order(0)
    assert sorted(plain) == sorted(grouped)  # same draws, different batching
    assert padding(grouped) < 0.3 * padding(plain)


# -- tokenisation and label masking ---------------------------------------------------------

def test_only_the_final_assistant_turn_is_trained():
    from rhizome.train import preview_labels

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First question?"},
                {"role": "assistant", "content": "An earlier reply."}, {"role": "user", "content": "Second question?"},
                {"role": "assistant", "content": "Rooted answer: the learned reply."}]
    tokens = preview_labels("bundled", messages, max_length=256)  # the UI passes a model spec
    trained = "".join(t["token"] for t in tokens if t["trained"])
    untrained = "".join(t["token"] for t in tokens if not t["trained"])
    assert trained.startswith("Rooted answer: the learned reply.<|im_end|>")
    assert "An earlier reply." in untrained and "Second question?" in untrained and "Be brief." in untrained
    first = next(i for i, t in enumerate(tokens) if t["trained"])
    assert all(t["trained"] for t in tokens[first:])  # one contiguous trained span at the end


def test_long_examples_lose_old_context_then_are_dropped(tokenizer):
    from rhizome.train.data import encode_messages

    filler = "word " * 60
    messages = [{"role": "user", "content": filler}, {"role": "assistant", "content": filler},
                {"role": "user", "content": "Short question?"}, {"role": "assistant", "content": "Short reply."}]
    enc = encode_messages(tokenizer, messages, max_length=64)
    assert enc.dropped is None and len(enc.input_ids) <= 64
    assert "word word" not in tokenizer.decode(enc.input_ids) and "Short question?" in tokenizer.decode(enc.input_ids)
    too_long = encode_messages(tokenizer, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": filler * 2}], 64)
    assert too_long.dropped == "too_long"


def test_packed_batches_do_not_attend_across_examples(tokenizer):
    """Padding-free packing: each example's loss is the same packed as padded in its own row."""
    from rhizome.models import load_causal_lm
    from rhizome.train.data import IndexedCollator, encode_messages
    from rhizome.train.loss import example_loss_sums

    torch.set_num_threads(1)  # tiny forwards: a second thread only adds waiting on a shared machine
    model, _ = load_causal_lm("bundled")
    encoded = [encode_messages(tokenizer, ex["messages"], 128) for ex in make_examples(3)]
    rows = [{"input_ids": e.input_ids, "labels": e.labels, "index": i} for i, e in enumerate(encoded)]
    results = []
    for packing in (True, False):
        batch = IndexedCollator(pad_token_id=tokenizer.pad_token_id, padding_free=packing)(rows)
        batch.pop("example_index")
        labels = batch.pop("labels")
        results.append(example_loss_sums(model, batch, labels, len(rows)))
    (packed_sums, packed_counts), (padded_sums, padded_counts) = results
    assert packed_counts.tolist() == padded_counts.tolist() == [e.trained for e in encoded]
    assert torch.allclose(packed_sums, padded_sums, rtol=1e-4), (packed_sums, padded_sums)


# -- a real run ------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_lora_steps_write_a_complete_run(tmp_path):
    from safetensors.torch import load_file

    from rhizome.train import train_lora

    ws = write_dataset(tmp_path / "ws", make_examples(12, weight_of=lambda t: 3.0 if t == "bees" else 1.0))
    events_seen = []
    config = small_config()
    run_id = train_lora(ws, config, progress=events_seen.append)
    run = ws.run_dir(run_id)

    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert all(torch.isfinite(t).all() for t in adapter.values())
    assert any(float(t.abs().sum()) > 0 for k, t in adapter.items() if "lora_B" in k)  # B starts at 0: it learned

    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["kind"] == "train"]
    assert [e["step"] for e in train_events] == [1, 2]
    keys = {"step", "total", "epoch", "loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "eta_s", "coverage", "entropy"}
    assert all(keys <= set(e) for e in events)
    assert all(math.isfinite(e["loss"]) and e["tokens_per_s"] > 0 and 0 < e["coverage"] <= 1 for e in train_events)
    evals = [e for e in events if e["kind"] == "eval"]
    assert evals[0]["step"] == 0 and all(math.isfinite(e["eval_loss"]) for e in evals)
    assert set(evals[-1]["theme_loss"]) == {"bees", "bread", "rust"}
    assert any(e.stage == "train" and e.step == 2 and "loss" in e.metrics for e in events_seen)

    summary = read_json(run / "summary.json")
    assert summary["steps"] == 2 and summary["state"] == "finished" and math.isfinite(summary["perplexity"])
    assert (run / "plots" / "training.png").read_bytes()[:4] == b"\x89PNG"
    assert "plotly" in (run / "plots" / "training.html").read_text()
    knowledge = read_json(run / "knowledge_test.json")
    assert len(knowledge["rows"]) == 1 and {"base", "tuned"} <= set(knowledge["summary"])
    assert knowledge["rows"][0]["base"]["new_tokens"] <= 6 and knowledge["rows"][0]["tuned"]["latency_s"] > 0
    assert "| prompt |" in (run / "knowledge_test.md").read_text()
    assert read_json(run / "status.json")["state"] == "finished"
    assert not list(run.rglob("training_args.bin"))  # no pickles left in the run folder

    saved = TrainConfig.load_yaml(run / "config.yaml")
    assert saved == config.replace(run_id=run_id)  # `train --config` reruns exactly this
@pytest.mark.slow
def test_stop_event_stops_cleanly_and_a_second_training_is_refused(tmp_path):
    from rhizome.train import read_status, train_lora

    ws = write_dataset(tmp_path / "ws", make_examples(12))
    stop, outcome = threading.Event(), {}
    config = small_config(max_steps=200, eval_steps=0, save_steps=0, knowledge_test_size=0)

    def run():
        outcome["run_id"] = train_lora(ws, config, stop_event=stop)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while not list(ws.runs.glob("*/events.jsonl")) and time.time() < deadline:
        time.sleep(0.2)
    with pytest.raises(UserError, match="already running"):
        train_lora(ws, config)
    stop.set()
    thread.join(timeout=120)
    run_dir = ws.run_dir(outcome["run_id"])
    summary = read_json(run_dir / "summary.json")
    assert summary["state"] == "stopped" and 1 <= summary["steps"] < 200
    checkpoint = run_dir / "checkpoints" / f"checkpoint-{summary['steps']}"
    assert (checkpoint / "rhizome_state.json").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert read_status(ws, outcome["run_id"])["state"] == "stopped"
@pytest.mark.slow
def test_early_stopping_ends_a_run_that_stops_improving(tmp_path):
    from rhizome.train import train_lora

    ws = write_dataset(tmp_path / "ws", make_examples(12))
    # A learning rate too small to move the loss: the second evaluation does not improve on the first.
    config = small_config(max_steps=10, learning_rate=1e-12, early_stopping_patience=1, save_steps=0,
                          knowledge_test_size=0)
    summary = read_json(ws.run_dir(train_lora(ws, config)) / "summary.json")
    assert summary["state"] == "finished" and summary["steps"] == 2


# -- bad input --------------------------------------------------------------------------------

def test_empty_dataset_is_refused(tmp_path):
    from rhizome.train import train_lora

    ws = write_dataset(tmp_path / "ws", [])
    with pytest.raises(UserError, match="missing or empty"):
        train_lora(ws, small_config())
    assert ws.list_runs() == []


def test_missing_model_path_is_refused(tmp_path):
    from rhizome.train import train_lora

    ws = write_dataset(tmp_path / "ws", make_examples(4))
    with pytest.raises(UserError, match="does not exist"):
        train_lora(ws, small_config(model=str(tmp_path / "no" / "such" / "model")))
    assert ws.list_runs() == []


def test_examples_all_too_long_are_refused(tmp_path):
    from rhizome.train import train_lora

    long = make_examples(4)
    for ex in long:
        ex["messages"][-1]["content"] = "a long reply " * 80
    ws = write_dataset(tmp_path / "ws", long)
    with pytest.raises(UserError, match="max_length=128"):
        train_lora(ws, small_config())
    assert ws.list_runs() == []  # a run that never started leaves no folder


def test_all_labels_masked_is_refused(tmp_path):
    from rhizome.train import train_lora

    rows = make_examples(4)
    for ex in rows:
        ex["messages"] = ex["messages"][:1]  # ends on the user: nothing for the model to learn
    ws = write_dataset(tmp_path / "ws", rows)
    with pytest.raises(UserError, match="every label .* is masked"):
        train_lora(ws, small_config())


def test_rotation_keeps_the_newest_and_the_best_checkpoints(tmp_path):
    from rhizome.train.runs import complete_checkpoints, rotate_checkpoints, write_checkpoint_state

    run = tmp_path / "run"
    for step, loss in [(2, 3.0), (4, 2.5), (6, 2.7), (8, 2.6), (10, None)]:
        write_checkpoint_state(run / "checkpoints" / f"checkpoint-{step}", {"step": step, "eval_loss": loss})
    (run / "checkpoints" / "checkpoint-12").mkdir()  # killed mid-save: no state file, not a checkpoint
    rotate_checkpoints(run, keep_best=2)
    assert [p.name for p in complete_checkpoints(run)] == ["checkpoint-4", "checkpoint-8", "checkpoint-10"]
