"""What a run settles before the model loads: its memory estimate (refused with the numbers when
it cannot fit) and the LoRA target modules of models with fused attention projections.

The estimate reads the bundled SmolLM2-135M's real config; the refusal goes through the real CLI
with $RHIZOME_MEMORY_LIMIT_MB, the override a user sets to keep a run within a budget.
"""
from __future__ import annotations

import json

import pytest

from rhizome.config import TrainConfig, train_defaults
from rhizome.workspace import UserError, Workspace, write_jsonl


def bundled_estimate(precision="bf16", **changes):
    """The bundled model's estimate on a CPU training under `precision` (bf16 autocast or fp32)."""
    from rhizome.train.memory import plan_memory

    return plan_memory(TrainConfig(**changes), "cpu", precision)


def test_bundled_estimate_is_sane_against_its_parameters(monkeypatch):
    from rhizome.models import load_causal_lm

    monkeypatch.delenv("RHIZOME_MEMORY_LIMIT_MB", raising=False)
    est = bundled_estimate()
    model, _ = load_causal_lm("bundled")
    assert est.parameters == sum(p.numel() for p in model.parameters())  # counted from config.json alone
    assert est.weights_mb == pytest.approx(est.parameters * 4 / 2**20)  # float32 weights on a CPU
    # batch 8 x 384 tokens: activations and logits dominate (measured peaks: bench/RESULTS.md)
    assert 5_000 < est.total_mb < 10_000 and est.activations_mb > 5 * est.weights_mb
    assert bundled_estimate(batch_size=2).total_mb < est.total_mb / 2
    assert bundled_estimate("fp32").total_mb > est.total_mb  # float32 activations
    assert est.available_mb and est.available_mb > 0


def test_checkpointing_lowers_a_gpu_estimate():
    from rhizome.models import resolve_train_model
    from rhizome.train.memory import estimate_memory, model_shape

    shape = model_shape(resolve_train_model("bundled"))
    plain = estimate_memory(shape, TrainConfig(), "cuda", weight_bytes=2, act_bytes=2, checkpointing=False)
    checkpointed = estimate_memory(shape, TrainConfig(), "cuda", weight_bytes=2, act_bytes=2, checkpointing=True)
    assert checkpointed.activations_mb < plain.activations_mb / 5 and plain.weights_mb == pytest.approx(
        plain.parameters * 2 / 2**20)


def test_default_run_fits_this_machine(monkeypatch):
    """The CPU defaults are not refused here (the estimate against this machine's real memory)."""
    from rhizome.train.memory import plan_memory

    monkeypatch.delenv("RHIZOME_MEMORY_LIMIT_MB", raising=False)
    est = plan_memory(train_defaults("cpu"), "cpu", "bf16")
    assert est.total_mb < est.available_mb


def test_run_that_cannot_fit_is_refused_with_the_numbers(tmp_path, monkeypatch, capsys):
    from rhizome.__main__ import main

    ws = Workspace(tmp_path / "ws").ensure()
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": "Yes."}],
             "weight": 1.0} for i in range(4)]
    for split in ("train", "validation", "test"):
        write_jsonl(ws.split_path(split), rows)
    needed = bundled_estimate().total_mb / 1024
    monkeypatch.setenv("RHIZOME_MEMORY_LIMIT_MB", "1500")
    code = main(["train", "--workspace", str(ws.root), "--run-id", "big", "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"needs about {needed:.1f} GB but only 1.5 GB" in err and "lower batch_size" in err
    assert not ws.run_dir("big").exists()  # refused before anything was written: nothing to clean up
    monkeypatch.setenv("RHIZOME_MEMORY_LIMIT_MB", "lots")
    with pytest.raises(UserError, match="RHIZOME_MEMORY_LIMIT_MB='lots' is not a number"):
        bundled_estimate()


def tiny_phi3():
    import transformers as tf

    return tf.Phi3ForCausalLM(tf.Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2, pad_token_id=0,
                                            bos_token_id=1, eos_token_id=2))


def test_default_targets_map_to_fused_projections_and_explicit_ones_are_refused():
    from rhizome.train.model import lora_config

    peft, note = lora_config(TrainConfig(model="phi3-folder"), tiny_phi3())
    assert sorted(peft.target_modules) == ["o_proj", "qkv_proj"]
    assert "phi3-folder has no q_proj, k_proj, v_proj" in note and "qkv_proj, o_proj" in note
    with pytest.raises(UserError, match=r"target_modules \['q_proj'\] not found .*qkv_proj"):
        lora_config(TrainConfig(target_modules=["q_proj", "o_proj"]), tiny_phi3())
    peft, note = lora_config(TrainConfig(target_modules=["qkv_proj"]), tiny_phi3())
    assert sorted(peft.target_modules) == ["qkv_proj"] and note is None
