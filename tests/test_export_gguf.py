"""GGUF writing from a plain Hugging Face folder (no base GGUF to copy metadata from).

Tiny, randomly initialised Llama and Qwen2 models carrying the bundled SmolLM2 tokenizer are
saved with transformers, converted by `write_f16_gguf` (hyper-parameters from config.json,
tokenizer built from tokenizer.json) and loaded by llama.cpp: its logits must match the
transformers model's, which checks the tensor names, the Llama Q/K permutation and Qwen2's
biases. Unsupported architectures and bad files get UserErrors.
"""
import json

import numpy as np
import pytest

from rhizome.export.gguf import permute_rotary, write_f16_gguf
from rhizome.export.modelfile import modelfile_text
from rhizome.workspace import UserError

TEXT = "Hello world, the quick brown fox jumps over the lazy dog. 1234 naïve 🦙"


def _tiny(kind, folder):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from rhizome.models import resolve_train_model

    shape = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if kind == "llama":  # untied head, so output.weight is written too
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=False, rope_theta=10000.0, **shape))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **shape))
    torch.manual_seed(0)
    with torch.no_grad():  # larger-than-default weights so the logits are far from uniform
        for p in model.parameters():
            p.normal_(0, 0.3) if p.ndim > 1 else p.normal_(1.0, 0.1)
    model.eval().save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(resolve_train_model("bundled")).save_pretrained(str(folder))
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_hf_folder_to_gguf_matches_transformers(tmp_path, kind):
    import torch
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    model = _tiny(kind, tmp_path)
    info = write_f16_gguf(tmp_path, tmp_path / "tiny.gguf")
    assert info["arch"] == kind and info["metadata_from"].startswith("config.json")
    ids = AutoTokenizer.from_pretrained(str(tmp_path))(TEXT, add_special_tokens=False)["input_ids"]
    llm = Llama(model_path=str(tmp_path / "tiny.gguf"), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    try:
        assert llm.tokenize(TEXT.encode(), add_bos=False, special=False) == ids
        assert llm.metadata["tokenizer.ggml.pre"] == "smollm"
        assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
        llm.eval(ids)
        ours = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    # llama.cpp's pick is the reference's best token, up to F16-sized ties (without the Q/K
    # permutation fewer than 10% agree and correlations go negative)
    picked = reference[np.arange(len(ids)), ours.argmax(-1)]
    assert (picked >= reference.max(-1) - 0.05).all()
    assert min(np.corrcoef(ours[i], reference[i])[0, 1] for i in range(len(ids))) > 0.999


def test_rotary_permutation_interleaves_halves():
    # one head of dim 4: rows [r0 r1 | r2 r3] (HF halves) become [r0 r2 r1 r3] (llama.cpp pairs)
    weight = np.arange(8, dtype=np.float32).reshape(4, 2)
    assert permute_rotary(weight, 1)[:, 0].tolist() == [0, 4, 2, 6]


def test_unsupported_architecture_names_what_to_do(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(str(tmp_path))
    with pytest.raises(UserError, match="GPT2LMHeadModel.*convert_hf_to_gguf"):
        write_f16_gguf(tmp_path, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_missing_tokenizer_and_config_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        write_f16_gguf(tmp_path, tmp_path / "x.gguf")
    _tiny("llama", tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer.json"):
        write_f16_gguf(tmp_path, tmp_path / "x.gguf")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_modelfile_for_llama3_and_unknown_templates():
    llama3 = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}"
              "<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n")
    text = modelfile_text("model-q4_k_m.gguf", llama3, "<|eot_id|>", system="Be brief.")
    assert "FROM ./model-q4_k_m.gguf" in text and "<|start_header_id|>{{ .Role }}<|end_header_id|>" in text
    assert text.count('PARAMETER stop "<|eot_id|>"') == 1 and 'SYSTEM """Be brief."""' in text
    odd = modelfile_text("m.gguf", "{{ messages[0]['content'] }}", "</end>")
    assert "TEMPLATE" not in odd and 'PARAMETER stop "</end>"' in odd


def test_a_newer_adapter_drops_gguf_exported_from_the_old_one(tmp_path):
    import os

    from rhizome.export import drop_stale

    export, adapter = tmp_path / "export", tmp_path / "adapter_model.safetensors"
    export.mkdir()
    old, kept = export / "model-q8_0.gguf", export / "model-f16.gguf"
    old.write_bytes(b"GGUF")
    adapter.write_bytes(b"weights")
    kept.write_bytes(b"GGUF")
    os.utime(old, (1_000_000, 1_000_000))
    drop_stale(export, adapter)
    assert not old.exists() and kept.exists()
