"""Export on a real LoRA: merged HF folder, F16/q8_0 GGUF, GGUF LoRA and Modelfile, then chat with it.

The fixture trains a real LoRA on the bundled SmolLM2-135M for a few steps at a high learning
rate on one fixed question -> answer pair, so the tuned model visibly answers differently from
the base. Everything after that is the real pipeline: `export_run`, llama.cpp through
llama-cpp-python, transformers for the reference answer, and `rhizome.chat` for hot-swapping.
"""
import gc
import json
import os
import stat
import weakref
from pathlib import Path

import pytest

from rhizome.config import ChatConfig, ExportConfig, TrainConfig
from rhizome.workspace import UserError, Workspace

pytestmark = pytest.mark.slow  # the module fixture trains and exports a real LoRA

QUESTION = "What is the secret word of the Rhizome garden?"
LEARNED = "The secret word is periwinkle marmalade, guarded by seven blue herons at midnight."
RUN = "run-lora"


def _train_adapter(ws: Workspace) -> None:
    """A real PEFT LoRA memorising one answer, saved like the training stage saves a run."""
    import torch
    from peft import LoraConfig, get_peft_model

    from rhizome.models import load_causal_lm

    torch.manual_seed(0)
    model, tok = load_causal_lm("bundled")
    prompt = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_dict=False)
    target = tok(LEARNED + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    # LoRA on the upper layers only: backward stops there, which keeps the fixture quick.
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], layers_to_transform=list(range(18, 30)))
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-3)
    peft_model.train()
    for _ in range(15):
        peft_model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    run_dir = ws.run_dir(RUN)
    peft_model.save_pretrained(str(run_dir / "adapter"))
    TrainConfig(model="bundled", run_id=RUN).save_yaml(run_dir / "config.yaml")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("export") / "ws").ensure()
    _train_adapter(ws)
    from rhizome.export import export_run

    events = []
    result = export_run(ws, RUN, ExportConfig(quant="q8_0", gguf_lora=True), progress=events.append)
    return ws, result, events


def _prompt_ids(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return tok, tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_dict=False)


def _llama_greedy(path, ids, n=20, **kwargs):
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False, **kwargs)
    out = []
    try:
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            if llm.token_eos() == token or len(out) >= n:
                break
            out.append(token)
    finally:
        llm.close()
    return out


def test_export_writes_every_artifact(exported):
    ws, result, events = exported
    export = ws.run_dir(RUN) / "export"
    merged = export / "merged"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    assert (merged / "tokenizer.json").is_file()
    assert (export / "adapter" / "adapter_config.json").is_file()
    assert (export / "adapter" / "adapter_model.safetensors").is_file()
    for key in ("gguf_f16", "gguf", "gguf_lora", "modelfile"):
        assert export.joinpath(result[key]).is_file(), key
    assert result["gguf"].endswith("model-q8_0.gguf") and result["arch"] == "llama"
    assert json.loads((export / "export.json").read_text()) == result
    assert not [p for p in export.iterdir() if p.name.startswith(".")]  # no temp leftovers
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(result["gguf"]).st_mode) == 0o666 & ~umask  # shareable, not owner-only
    steps = [e for e in events if e.stage == "export"]
    assert steps[-1].step == steps[-1].total


def test_f16_gguf_answers_like_merged_model_and_unlike_base(exported):
    import torch
    from transformers import AutoModelForCausalLM

    from rhizome.models import bundled_gguf_path

    ws, result, _ = exported
    merged = ws.run_dir(RUN) / "export" / "merged"
    tok, ids = _prompt_ids(merged)
    ours = _llama_greedy(result["gguf_f16"], ids, n=20)
    assert len(ours) == 20 and tok.decode(ours).startswith("The secret word is periwinkle")  # the LoRA learned
    # transformers' greedy choice after each prefix of llama.cpp's answer (one teacher-forced pass):
    # equal at every step means transformers' own greedy decoding yields these same 20 tokens
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids + ours])).logits[0]
    reference = logits[len(ids) - 1 : len(ids) + 19].argmax(-1).tolist()
    assert ours == reference
    base = _llama_greedy(bundled_gguf_path(), ids, n=8)
    assert base != ours[:8]


def test_quantised_files_are_smaller_load_and_keep_the_answer(exported, tmp_path):
    import gguf

    from rhizome.chat.llm import inspect_gguf
    from rhizome.export.quantize import quantize_gguf

    ws, result, _ = exported
    q8, f16 = Path(result["gguf"]), Path(result["gguf_f16"])
    assert q8.stat().st_size < 0.6 * f16.stat().st_size
    assert inspect_gguf(q8)["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    q4 = quantize_gguf(f16, tmp_path / "model-q4_k_m.gguf", "q4_k_m")
    assert q4.stat().st_size < q8.stat().st_size
    assert inspect_gguf(q4)["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q4_K_M
    for quant, ftype in (("q5_k_m", gguf.LlamaFileType.MOSTLY_Q5_K_M), ("q6_k", gguf.LlamaFileType.MOSTLY_Q6_K)):
        path = quantize_gguf(f16, tmp_path / f"model-{quant}.gguf", quant)
        assert inspect_gguf(path)["general.file_type"] == ftype and path.stat().st_size < q8.stat().st_size
    tok, ids = _prompt_ids(ws.run_dir(RUN) / "export" / "merged")
    for path in (q8, q4):
        assert tok.decode(_llama_greedy(path, ids, n=8)).startswith("The secret word is periwinkle"), path.name


def test_gguf_lora_applied_to_base_gives_the_tuned_answer(exported):
    from rhizome.models import bundled_gguf_path

    ws, result, _ = exported
    tok, ids = _prompt_ids(ws.run_dir(RUN) / "export" / "merged")
    tuned = _llama_greedy(bundled_gguf_path(), ids, n=10, lora_path=result["gguf_lora"])
    assert tok.decode(tuned).startswith("The secret word is periwinkle")


def test_modelfile_has_template_stops_and_system(exported):
    _, result, _ = exported
    text = open(result["modelfile"], encoding="utf-8").read()
    assert "FROM ./model-q8_0.gguf" in text
    # derived from SmolLM2's ChatML template
    assert '<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n' in text
    assert '{{ else if eq .Role "assistant" }}{{ .Content }}<|im_end|>\n<|im_start|>user\n' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and 'PARAMETER stop "<|im_start|>"' in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in text  # the template's own default


def test_export_check_recorded(exported):
    ws, result, _ = exported
    check = result["check"]
    assert result["status"] == check["status"] == "ok" and not check["problems"]
    assert check["prompts"] == 3 and check["f16"]["within_noise"] == 1.0 and check["f16"]["agreement"] >= 0.9
    assert check["quantised"]["file"] == "model-q8_0.gguf" and check["quantised"]["tokens"] > 0
    assert result["converter"]["mismatch"] is None and len(result["converter"]["llama_cpp_commit"]) == 40


def test_check_fails_a_gguf_unlike_its_model_or_template(exported, tmp_path):
    from rhizome.export.verify import verify_export
    from rhizome.models import resolve_train_model

    ws, result, _ = exported
    prompt = [[{"role": "user", "content": QUESTION}]]
    # the tuned GGUF judged against the untuned base: its answers differ far beyond F16 noise
    report = verify_export(Path(resolve_train_model("bundled")), Path(result["gguf_f16"]), prompt, max_tokens=12)
    assert report["status"] == "failed" and any(p.startswith("answers:") for p in report["problems"])
    # the same weights with a chat template the GGUF does not have: the prompt renders differently
    merged = ws.run_dir(RUN) / "export" / "merged"
    other = tmp_path / "other"
    other.mkdir()
    for item in merged.iterdir():
        (other / item.name).symlink_to(item)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged))
    tok.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" \
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"  # no default system
    for name in ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja", "special_tokens_map.json"):
        (other / name).unlink(missing_ok=True)
    tok.save_pretrained(str(other))
    report = verify_export(other, Path(result["gguf_f16"]), prompt, max_tokens=4)
    assert report["status"] == "failed" and report["problems"][0].startswith("template:")


def test_interrupted_export_lists_nothing_half_written(exported):
    from rhizome.chat import list_models
    from rhizome.export import fresh_pending

    ws, _, _ = exported
    export = ws.run_dir(RUN) / "export"
    (export / ".pending").mkdir()
    (export / ".pending" / "model-q4_k_m.gguf").write_bytes(b"GGUF half")  # killed before the check
    (export / ".model-q6_k.gguf.x1.tmp").write_bytes(b"GGUF half")  # killed inside a conversion
    names = {m["name"] for m in list_models(ws)}
    assert not any(n.endswith((":q4_k_m", ":q6_k")) for n in names)
    fresh_pending(export)  # what a rerun does first
    assert not list(export.glob(".*.tmp")) and not any((export / ".pending").iterdir())
    (export / ".pending").rmdir()


def test_chat_lists_hot_swaps_and_compares_the_export(exported):
    from rhizome.chat import answer, compare, list_models
    from rhizome.chat.llm import ENGINES

    ws, result, _ = exported
    names = {m["name"] for m in list_models(ws)}
    assert {"base", f"{RUN}:q8_0", f"{RUN}:f16", f"{RUN}:lora"} <= names
    config = ChatConfig(retrieval=False, temperature=0.0, max_tokens=12, max_loaded_models=1)
    before = answer(ws, QUESTION, config)
    base_engine = weakref.ref(ENGINES.engines()[-1].llm)
    after = answer(ws, QUESTION, config.replace(model=RUN))  # a run id picks its exported GGUF
    assert after.model == f"{RUN}:q8_0" and after.answer.startswith("The secret word is periwinkle")
    assert "periwinkle" not in before.answer
    assert [str(p) for p in ENGINES.loaded()] == [result["gguf"]]
    gc.collect()
    assert base_engine() is None  # the swapped-out engine is gone, not just unreferenced by the cache
    both = compare(ws, QUESTION, f"{RUN}:lora", config.replace(max_loaded_models=2))
    assert both["tuned"].answer.startswith("The secret word is periwinkle")
    assert both["base"].answer == before.answer  # same greedy settings, same base model


def test_export_bad_runs_are_user_errors(ws):
    from rhizome.export import export_run

    with pytest.raises(UserError, match="not found"):
        export_run(ws, "no-such-run")
    ws.run_dir("unfinished").mkdir(parents=True)
    with pytest.raises(UserError, match="no finished adapter"):
        export_run(ws, "unfinished")
    with pytest.raises(UserError, match="quant"):
        ExportConfig(quant="q3_weird")
