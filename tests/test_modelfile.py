"""Ollama Modelfiles derived from each family's own chat template.

The templates are the real ones llama.cpp tests with (`models/templates/` of the vendored
llama.cpp, installed with the converters at set-up). Each is put on the bundled tokenizer, with
the family's special tokens added, and the derived Go template must render a two-turn
conversation (with and without a system prompt, where the family has one) exactly as
`apply_chat_template` does; its stop parameters must contain the family's end-of-turn token.
"""
import pytest

from rhizome.export.converters import converters_dir
from rhizome.export.modelfile import derive, go_template, modelfile_text, render_go

# family -> (template file, bos, eos, special tokens the template uses, end-of-turn stop)
FAMILIES = {
    "smollm2-chatml": (None, "<|im_start|>", "<|im_end|>", [], "<|im_end|>"),
    "qwen2.5": ("Qwen-Qwen2.5-7B-Instruct.jinja", None, "<|im_end|>", ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", None, "<|im_end|>", ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
    "llama3.2": ("meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
                 ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
    "mistral-nemo": ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", ["<s>", "</s>", "[INST]", "[/INST]"],
                     "</s>"),
    "phi3.5": ("microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>",
               ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"], "<|end|>"),
    "gemma2": ("google-gemma-2-2b-it.jinja", "<bos>", "<eos>", ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
               "<end_of_turn>"),
}
TWO_TURNS = [{"role": "user", "content": "What is a rhizome?"}, {"role": "assistant", "content": "A creeping root."},
             {"role": "user", "content": "And a tuber?"}]


@pytest.fixture(scope="module")
def base_tokenizer():
    from transformers import AutoTokenizer

    from rhizome.models import resolve_train_model

    return AutoTokenizer.from_pretrained(resolve_train_model("bundled"))


def family_tokenizer(base, family):
    import copy

    file, bos, eos, specials, _stop = FAMILIES[family]
    tok = copy.deepcopy(base)
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    if bos:
        tok.bos_token = bos
    tok.eos_token = eos
    if file:
        tok.chat_template = (converters_dir() / "models" / "templates" / file).read_text(encoding="utf-8")
    return tok


@pytest.mark.parametrize("family", list(FAMILIES))
def test_derived_template_renders_like_the_model(base_tokenizer, family):
    tok = family_tokenizer(base_tokenizer, family)
    derived = derive(tok)
    assert derived.exact and derived.template, derived.reason
    systems = [None] if family in ("gemma2", "mistral-nemo") else [None, "Answer in one sentence."]
    for system in systems:
        messages = ([{"role": "system", "content": system}] if system else []) + TWO_TURNS
        want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if tok.bos_token and want.startswith(tok.bos_token) and tok("a")["input_ids"][0] == tok.bos_token_id:
            want = want[len(tok.bos_token):]  # llama.cpp/Ollama add the BOS themselves
        assert render_go(derived.template, system, TWO_TURNS) == want
    assert FAMILIES[family][4] in derived.stops
    text = modelfile_text("model-q8_0.gguf", derived)
    assert f'PARAMETER stop "{FAMILIES[family][4]}"' in text and 'TEMPLATE """' in text


def test_smollm2_default_system_becomes_the_modelfile_system(base_tokenizer):
    derived = derive(base_tokenizer)
    assert derived.system.startswith("You are a helpful AI assistant named SmolLM")
    assert modelfile_text("m.gguf", derived, system="Be brief.").count('SYSTEM """Be brief."""') == 1


def test_a_template_that_hides_the_messages_gets_no_template(base_tokenizer):
    import copy

    tok = copy.deepcopy(base_tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    derived = derive(tok)
    assert derived.template is None and "verbatim" in derived.reason
    text = modelfile_text("m.gguf", derived)
    assert "TEMPLATE" not in text.split("# no TEMPLATE")[0] and 'PARAMETER stop "<|im_end|>"' in text


def test_go_renderer_handles_last_turn_and_system():
    template = go_template("P:", "|ua|", "|au|", "|end|", ("S[", "]"))
    assert render_go(template, None, TWO_TURNS) == "P:What is a rhizome?|ua|A creeping root.|au|And a tuber?|end|"
    assert render_go(template, "sys", TWO_TURNS[:1]) == "S[sys]What is a rhizome?|end|"
