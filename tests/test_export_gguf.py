"""Export of plain Hugging Face folders through llama.cpp's own converter, for six architectures.

Tiny randomly initialised models (2 layers, hidden 64) of Llama, Mistral, Qwen2, Qwen3, Phi-3 and
Gemma 3 carry the bundled SmolLM2 tokenizer (Qwen2: Qwen's own, see `tiny_tokenizer`). Each gets 2
real LoRA steps through `python -m rhizome train --model FOLDER` (the CLI's own `main`, default
target modules: Phi-3's are mapped to its fused qkv_proj), the real export (converter, F16, export
check), and then llama.cpp's greedy tokens for a fixed prompt must equal transformers' greedy tokens
on the merged model. The Phi-3 folder is named "phi3", so its GGUF's name would send llama.cpp down
its Phi-3 vocabulary path, which needs tokens SmolLM2 lacks (`converters.loadable_name`). Damaged
folders and an architecture llama.cpp cannot convert get one clear message each.
"""
import json

import pytest

from rhizome.config import ExportConfig
from rhizome.export.converters import (check_hf_folder, convert_hf, converter_error, converter_version,
                                       converters_dir)
from rhizome.workspace import UserError, Workspace, write_jsonl

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"
ARCHS = ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3"]
SHAPE = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)


def tiny_tokenizer(kind):
    """The bundled SmolLM2 tokenizer; Qwen's own for qwen2 (transformers 5 reads any qwen2 model's
    tokenizer as Qwen2Tokenizer, whose splitting with another vocabulary no converter recognises),
    from llama.cpp's Qwen2 vocabulary test file that set-up installs with the converters."""
    from transformers import AutoTokenizer

    from rhizome.models import resolve_train_model

    if kind == "qwen2":
        vocab = converters_dir() / "models" / "ggml-vocab-qwen2.gguf"
        assert vocab.is_file(), f"{vocab} missing: rerun `make setup`"
        return AutoTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)
    return AutoTokenizer.from_pretrained(resolve_train_model("bundled"))


def tiny_model(kind, folder):
    """A small random model of architecture `kind`, saved with its tokenizer."""
    import torch
    import transformers as tf

    configs = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(tie_word_embeddings=False)),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, dict(sliding_window=None)),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(tie_word_embeddings=True)),
        "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(head_dim=16)),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, dict(num_key_value_heads=4)),
        "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(head_dim=16, sliding_window=64)),
    }
    config_cls, model_cls, extra = configs[kind]
    tokenizer = tiny_tokenizer(kind)
    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
               bos_token_id=tokenizer.bos_token_id) if kind == "qwen2" else {}
    torch.manual_seed(0)
    model = model_cls(config_cls(**{**SHAPE, **extra, **ids}))
    with torch.no_grad():  # larger-than-default weights, so greedy choices are far from ties
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.normal_(0, 0.3)
    model.eval().save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if kind == "phi3":  # llama.cpp's Phi-3 converter reads a byte-level BPE only as Phi-4's GPT2Tokenizer
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config_path.write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer"}))
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """One folder per architecture, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: tiny_model(kind, root / kind) for kind in ARCHS}


def _dataset(ws: Workspace) -> None:
    rows = [{"messages": [{"role": "user", "content": f"Question {i} about the garden?"},
                          {"role": "assistant", "content": f"Answer {i}: water the roses."}], "weight": 1.0}
            for i in range(4)]
    write_jsonl(ws.split_path("train"), rows)
    write_jsonl(ws.split_path("validation"), rows[:2])
    write_jsonl(ws.split_path("test"), rows[:1])


def greedy_llama(path, ids, n):
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False)
    try:
        out = []
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            out.append(int(token))
            if len(out) == n:
                return out
    finally:
        llm.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ARCHS)
def test_train_export_and_llama_cpp_agree(kind, tiny_models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rhizome.__main__ import main
    from rhizome.export import export_run

    ws = Workspace(tmp_path / "ws").ensure()
    _dataset(ws)
    code = main(["train", "--workspace", str(ws.root), "--model", str(tiny_models[kind]), "--run-id", f"t-{kind}",
                 "--max-steps", "2", "--batch-size", "2", "--max-length", "64", "--eval-steps", "0",
                 "--save-steps", "0", "--knowledge-test-size", "0", "--learning-rate", "0.01"])
    assert code == 0
    # the default target modules, mapped to Phi-3's fused qkv_proj (and o_proj), and said so
    summary = json.loads(ws.run_dir(f"t-{kind}").joinpath("summary.json").read_text())
    assert summary.get("target_modules") == (["o_proj", "qkv_proj"] if kind == "phi3" else None)
    assert summary["memory"]["total_mb"] > summary["memory"]["weights_mb"] > 0
    result = export_run(ws, f"t-{kind}", ExportConfig(quant="f16", verify_prompts=2, verify_tokens=24))
    assert result["status"] == "ok", result["check"]
    assert result["check"]["f16"]["within_noise"] == 1.0
    merged = result["merged"]
    tok = AutoTokenizer.from_pretrained(merged)
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    with torch.no_grad():
        reference = model.generate(torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16, do_sample=False,
                                   pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
    assert greedy_llama(result["gguf"], ids, 16) == reference


def test_unsupported_architecture_names_it(tmp_path):
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    from rhizome.models import resolve_train_model

    OPTForCausalLM(OPTConfig(num_hidden_layers=1, hidden_size=32, ffn_dim=64, num_attention_heads=2,
                             vocab_size=49152, word_embed_proj_dim=32)).save_pretrained(str(tmp_path))
    AutoTokenizer.from_pretrained(resolve_train_model("bundled")).save_pretrained(str(tmp_path))
    with pytest.raises(UserError, match="architecture OPTForCausalLM is not supported by llama.cpp"):
        convert_hf(tmp_path, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".x.gguf*"))


def test_damaged_folders_get_clear_messages(tmp_path, tiny_models):
    import shutil

    with pytest.raises(UserError, match="no config.json"):
        check_hf_folder(tmp_path)
    folder = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], folder)
    check_hf_folder(folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="model.safetensors is truncated"):
        convert_hf(folder, tmp_path / "x.gguf")
    weights.write_bytes(b"\x00" * 10)
    with pytest.raises(UserError, match="damaged or truncated"):
        check_hf_folder(folder)
    weights.write_bytes(data)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(UserError, match="not valid JSON"):
        check_hf_folder(folder)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="no tokenizer"):
        check_hf_folder(folder)


def test_converter_version_matches_runtime_and_errors_read_well():
    import llama_cpp

    version = converter_version()
    assert version.runtime == llama_cpp.__version__ and version.mismatch is None
    assert version.llama_cpp_commit and len(version.llama_cpp_commit) == 40
    from rhizome.export.converters import ConverterVersion

    assert "rerun `make setup`" in ConverterVersion("0.3.1", None, "0.3.36").mismatch
    log = "INFO:hf-to-gguf:Loading model\nTraceback...\nNotImplementedError: BPE pre-tokenizer was not recognized\n"
    assert "tokenizer is not one this llama.cpp knows (NotImplementedError: BPE pre-tokenizer was not recognized)" \
        in converter_error(log)
    assert converter_error("Traceback...\nValueError: Missing tokenizer.model\nexit") == "ValueError: Missing tokenizer.model"
