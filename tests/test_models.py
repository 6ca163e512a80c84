"""The bundled models resolve offline and really work: llama.cpp chat, transformers + LoRA."""
import math

import pytest

from rhizome import models
from rhizome.workspace import UserError


def test_bundled_files_resolve_offline():
    gguf = models.bundled_gguf_path()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000
    assert (models.bundled_embedder_path() / "model.safetensors").is_file()
    assert models.resolve_gguf("base") == gguf


def test_bundled_gguf_answers_through_llama_cpp():
    from llama_cpp import Llama

    llm = Llama(model_path=str(models.bundled_gguf_path()), n_ctx=512, verbose=False, seed=0)
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Name one colour of the sky."}], max_tokens=16, temperature=0
    )
    assert out["choices"][0]["message"]["content"].strip()
@pytest.mark.slow
def test_gguf_loads_in_transformers_and_two_lora_steps_stay_finite(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    model, tokenizer = models.load_causal_lm()
    assert model.config.model_type == "llama"
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    batch = tokenizer(["Sourdough needs a lively starter.", "Water the seedlings at dawn."], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        loss = model(**batch, labels=labels).loss
        assert math.isfinite(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad)
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_dequantised_model_is_cached_once():
    first = models.resolve_train_model("bundled")
    assert models.resolve_train_model("bundled") == first
    assert (models.cache_dir() in __import__("pathlib").Path(first).parents)


def test_missing_model_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        models.resolve_gguf(str(tmp_path / "nope.gguf"))
    with pytest.raises(UserError, match="does not exist"):
        models.resolve_train_model(str(tmp_path / "no-such-model-dir"))


def test_hardware_detection_reports_cpu_here():
    hw = models.detect_hardware()
    assert hw.device in ("cpu", "cuda", "mps") and hw.cpu_threads >= 1
    assert hw.describe()


def test_local_hf_cache_models_are_listed(tmp_path):
    from rhizome.models import local_hf_models

    (tmp_path / "models--HuggingFaceTB--SmolLM2-360M" / "snapshots" / "abc").mkdir(parents=True)
    (tmp_path / "models--HuggingFaceTB--SmolLM2-360M" / "snapshots" / "abc" / "config.json").write_text("{}")
    (tmp_path / "models--org--incomplete" / "snapshots" / "x").mkdir(parents=True)  # no config: not usable
    (tmp_path / "datasets--org--data").mkdir()
    assert local_hf_models(tmp_path) == ["HuggingFaceTB/SmolLM2-360M"]


def test_gradient_checkpointing_is_on_above_a_billion_parameters():
    import torch

    from rhizome.config import TrainConfig
    from rhizome.train.loop import use_checkpointing
    from rhizome.workspace import UserError

    small = torch.nn.Linear(10, 10)
    assert not use_checkpointing("auto", small) and use_checkpointing("on", small)
    assert not use_checkpointing("off", small)
    big = torch.nn.Module()
    big.w = torch.nn.Parameter(torch.empty(0).new_empty((1,)).expand(1_000_000_001), requires_grad=False)
    assert use_checkpointing("auto", big)
    with pytest.raises(UserError, match="gradient_checkpointing"):
        TrainConfig(gradient_checkpointing="sometimes")


def test_embedder_is_loaded_once_when_two_users_ask_at_once():
    """Two people's first requests at the same moment share one embedder (one load, one object)."""
    import threading

    models.load_embedder.cache_clear()
    before, start, got = models.load_embedder.loads, threading.Barrier(2), []

    def first_request() -> None:
        start.wait()
        got.append(models.load_embedder(None, "cpu"))

    threads = [threading.Thread(target=first_request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(got) == 2 and got[0] is got[1]
    assert models.load_embedder.loads - before == 1
    assert models.load_embedder(None, "cpu") is got[0]  # later calls: the same, no lock taken
    assert got[0].encode(["a sentence"]).shape == (1, 384)
