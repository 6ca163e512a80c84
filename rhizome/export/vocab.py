"""HF tokenizer -> GGUF tokenizer metadata, for models that did not come from a GGUF.

Mirrors what llama.cpp's convert_hf_to_gguf.py writes for the two tokenizer kinds the Llama and
Qwen2 families use: byte-level BPE ("gpt2": Llama 3, Qwen2, SmolLM) and SentencePiece-style BPE
with byte fallback ("llama": Llama 2, TinyLlama, Mistral). A byte-level BPE also needs the name of
its pre-tokenizer; llama.cpp recognises it by hashing how the tokenizer splits a fixed text.
"""
from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path
from typing import Any

from ..workspace import UserError

# The probe text of convert_hf_to_gguf.py's get_vocab_base_pre(); must match it byte for byte.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
# Hash of the probe's token ids -> llama.cpp pre-tokenizer, for the families Rhizome exports.
KNOWN_PRE_TOKENIZERS = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5/2/2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3 embedding
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}


def add_hf_tokenizer(writer: Any, model_dir: Path, config: dict[str, Any], arch: str) -> str:
    """Write tokenizer.* keys for the tokenizer saved in `model_dir`; returns the GGUF tokenizer model."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{model_dir} has no tokenizer.json: save the model with its fast tokenizer, "
                        "or convert it with llama.cpp's convert_hf_to_gguf.py")
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    if model.get("type") != "BPE":
        raise UserError(f"{model_dir}: a {model.get('type')} tokenizer cannot be written to GGUF by Rhizome "
                        "(BPE only); convert the merged folder with llama.cpp's convert_hf_to_gguf.py")
    _add_prefix_space(writer, model_dir, arch)
    if model.get("byte_fallback"):
        return _add_llama_bpe(writer, model_dir)
    return _add_byte_level_bpe(writer, model_dir, config, arch)


def _add_prefix_space(writer: Any, model_dir: Path, arch: str) -> None:
    config_path = model_dir / "tokenizer_config.json"
    if arch == "llama" and config_path.is_file():
        value = json.loads(config_path.read_text(encoding="utf-8")).get("add_prefix_space")
        if value is not None:
            writer.add_add_space_prefix(bool(value))


def pre_tokenizer_name(model_dir: Path) -> str:
    """llama.cpp's name for the pre-tokenizer in `tokenizer.json`, or a UserError naming what to do.

    The file itself is hashed (not transformers' tokenizer class for the model type, which may
    substitute its own splitting rules): the GGUF must describe the tokenizer that was saved.
    """
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(CHKTXT).ids
    digest = sha256(str(ids).encode()).hexdigest()
    if digest not in KNOWN_PRE_TOKENIZERS:
        raise UserError(f"{model_dir}: this tokenizer's pre-tokenizer (hash {digest[:12]}) is not one Rhizome "
                        "knows (Llama 3, Qwen2, SmolLM, GPT-2); convert the merged folder with llama.cpp's "
                        "convert_hf_to_gguf.py")
    return KNOWN_PRE_TOKENIZERS[digest]


def _add_byte_level_bpe(writer: Any, model_dir: Path, config: dict[str, Any], arch: str) -> str:
    """Tokens, types and merges of a GPT-2 style tokenizer (convert_hf_to_gguf's get_vocab_base)."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    vocab = tokenizer.get_vocab()
    size = max(config.get("vocab_size") or 0, max(vocab.values()) + 1)
    reverse = {i: token for token, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(size):
        token = reverse.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if i in added:
            if not added[i].normalized:  # llama.cpp expects added tokens pre-normalised
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            special = added[i].special or (token.startswith("<|") and token.endswith("|>"))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(model_dir))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    if arch == "llama" and size == 49152:
        writer.add_add_bos_token(False)  # SmolLM/Granite-small vocabularies: as convert_hf_to_gguf does
    return "gpt2"


def _add_llama_bpe(writer: Any, model_dir: Path) -> str:
    """SentencePiece-style vocabulary with scores and byte tokens (convert_hf_to_gguf's llama_hf)."""
    import gguf

    vocab = gguf.LlamaHfVocab(model_dir)
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    return "llama"
