"""Export check: the GGUF must answer like the merged Hugging Face model it was converted from.

The commonest complaint about fine-tuned GGUFs is a model that talks gibberish or never stops
in llama.cpp/Ollama although it was fine in transformers. So, after every export, a few prompts
from the person's validation split go through both:

* template — the prompt tokens Rhizome's chat builds from the GGUF (its embedded Jinja template
  and tokenizer) must equal `apply_chat_template` of the HF tokenizer;
* stop tokens — every token the HF model ends generation with (tokenizer EOS, generation_config)
  and the template's end-of-turn token must be end-of-generation tokens for llama.cpp;
* answers — llama.cpp generates greedily with the F16 GGUF; one transformers pass over prompt +
  answer gives the HF model's choice at every step. Each llama.cpp token must be the HF argmax or
  within `NOISE` logits of it (F16 rounding can swap near-ties, nothing else can);
* the chosen quantised GGUF is measured the same way and reported, not judged (it is lossy).

A generation that runs to the limit without a stop token is a warning when the HF model runs on
too (the model was not trained to stop), and a failure when it is the GGUF alone.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOISE = 0.25  # logits: F16 rounding moves a 135M model's logits by < 0.05; a wrong tensor by whole units
FALLBACK_PROMPTS = ["Hello! Who are you?", "Explain in two sentences what a garden needs in spring.",
                    "Give me three tips for taking good notes."]


def validation_prompts(dataset_dir: Path, n: int) -> tuple[list[list[dict[str, str]]], str]:
    """Up to `n` conversations (everything before the first assistant turn) from validation.jsonl."""
    prompts = []
    path = Path(dataset_dir) / "validation.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                messages = json.loads(line).get("messages") or []
            except (json.JSONDecodeError, AttributeError):
                continue
            head = []
            for m in messages:
                if m.get("role") == "assistant":
                    break
                head.append({"role": m["role"], "content": str(m.get("content", ""))[:1500]})
            if head and head[-1]["role"] == "user":
                prompts.append(head)
            if len(prompts) == n:
                return prompts, "validation split"
    if prompts:
        return prompts, "validation split"
    return [[{"role": "user", "content": p}] for p in FALLBACK_PROMPTS[:n]], "built-in prompts (no validation split)"


def hf_stop_ids(model_dir: Path, tokenizer: Any) -> set[int]:
    """Every token id the HF model ends generation with."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    config_path = Path(model_dir) / "generation_config.json"
    if config_path.is_file():
        eos = json.loads(config_path.read_text(encoding="utf-8")).get("eos_token_id")
        ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template puts right after an assistant's answer (<|im_end|>, <end_of_turn>)."""
    marker = "Zq7marker"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                                             tokenize=False)
    except Exception:  # templates that insist on other roles: nothing to check
        return None
    after = text.split(marker, 1)[-1]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    special = set(tokenizer.all_special_ids)
    return next((i for i in ids if i in special), None)


class Checker:
    """The merged HF model and its tokenizer, loaded once for every GGUF checked against it."""

    def __init__(self, merged_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.dir = Path(merged_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return list(out["input_ids"] if isinstance(out, dict) else out)

    def choices(self, ids: list[int], answer: list[int]) -> Any:
        """HF logits at each answer position (teacher forcing on llama.cpp's answer)."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(check_threads())
        try:
            with torch.no_grad():
                logits = self.model(torch.tensor([ids + answer])).logits[0]
        finally:
            torch.set_num_threads(before)
        return logits[len(ids) - 1: len(ids) - 1 + len(answer)].float()


def greedy(llm: Any, ids: list[int], max_tokens: int) -> tuple[list[int], bool]:
    """llama.cpp's greedy answer; whether it ended on an end-of-generation token (kept in the list)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.reset()
    out = []
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return out, True
        if len(out) >= max_tokens:
            break
    return out, False


def check_gguf(checker: Checker, gguf: Path, prompts: list[list[dict[str, str]]], max_tokens: int,
               judge: bool) -> dict[str, Any]:
    """Template, stop tokens and greedy agreement of one GGUF with the HF model; problems if `judge`."""
    import llama_cpp

    from ..chat.llm import Engine

    engine = Engine(Path(gguf), n_ctx=2048, n_threads=check_threads())
    problems: list[str] = []
    result: dict[str, Any] = {"file": Path(gguf).name}
    try:
        vocab = llama_cpp.llama_model_get_vocab(engine.llm.model)
        if judge:
            problems += _template_problems(checker, engine, prompts)
            problems += _stop_problems(checker, vocab)
        agree = near = total = stopped = 0
        worst = 0.0
        for messages in prompts:
            ids = checker.prompt_ids(messages)[: 2048 - max_tokens - 1]
            answer, ended = greedy(engine.llm, ids, max_tokens)
            logits = checker.choices(ids, answer)
            best = logits.argmax(-1)
            for pos, token in enumerate(answer):
                gap = float(logits[pos, best[pos]] - logits[pos, token])
                agree += int(token == int(best[pos]))
                near += int(gap <= NOISE)
                worst = max(worst, gap)
            total += len(answer)
            stopped += int(ended)
        result.update(tokens=total, agreement=round(agree / max(total, 1), 4),
                      within_noise=round(near / max(total, 1), 4), max_logit_gap=round(worst, 3),
                      stopped=f"{stopped}/{len(prompts)}")
        if judge and near < total:
            problems.append(f"answers: the F16 GGUF disagrees with the merged model beyond numerical noise "
                            f"({total - near} of {total} tokens, largest gap {worst:.2f} logits) — the conversion "
                            "is wrong for this model")
        result["never_stops"] = stopped == 0
    finally:
        engine.close()
    result["problems"] = problems
    return result


def check_threads() -> int:
    """Half the cores: a few dozen tokens gain little from more, and on a busy machine llama.cpp's
    and torch's spinning threads slow each other down by an order of magnitude (measured: 7 tokens
    in 20 s with 2 threads at load 14 on 2 cores, 0.4 s with 1)."""
    from ..models import detect_hardware

    return max(1, detect_hardware().cpu_threads // 2)


def _template_problems(checker: Checker, engine: Any, prompts: list[list[dict[str, str]]]) -> list[str]:
    for messages in prompts:
        ours, _stops = engine.prompt_tokens(messages)
        theirs = checker.prompt_ids(messages)
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            text = engine.llm.detokenize(ours[at: at + 8], special=True).decode("utf-8", "replace")
            return [f"template: the GGUF's chat template and tokenizer render the prompt differently from the "
                    f"model's own ({len(ours)} vs {len(theirs)} tokens, first difference at token {at}: {text!r})"]
    return []


def _stop_problems(checker: Checker, vocab: Any) -> list[str]:
    import llama_cpp

    wanted = hf_stop_ids(checker.dir, checker.tokenizer)
    turn_end = end_of_turn_id(checker.tokenizer)
    if turn_end is not None:
        wanted.add(turn_end)
    missing = sorted(i for i in wanted if not llama_cpp.llama_vocab_is_eog(vocab, i))
    if missing:
        names = [checker.tokenizer.convert_ids_to_tokens(i) for i in missing]
        return [f"stop tokens: llama.cpp does not end generation on {names} (the model's end of turn), so the "
                "GGUF would never stop"]
    return []


def verify_export(merged_dir: Path, f16: Path, prompts: list[list[dict[str, str]]], max_tokens: int = 64,
                  quantised: Path | None = None) -> dict[str, Any]:
    """Check the F16 GGUF (judged) and the quantised one (measured); returns the report for export.json."""
    checker = Checker(merged_dir)
    try:
        report = {"prompts": len(prompts), "max_tokens": max_tokens, "noise_logits": NOISE,
                  "f16": check_gguf(checker, f16, prompts, max_tokens, judge=True)}
        if quantised is not None and Path(quantised) != Path(f16):
            report["quantised"] = check_gguf(checker, quantised, prompts, max_tokens, judge=False)
    finally:
        del checker
    problems = list(report["f16"].pop("problems"))
    report.get("quantised", {}).pop("problems", None)
    warnings = []
    if report["f16"]["never_stops"]:
        if report["f16"]["within_noise"] == 1.0:
            warnings.append(f"no answer ended within {max_tokens} tokens, in transformers either: the model has not "
                            "learned to stop (train longer); the GGUF is faithful to it")
        else:
            problems.append(f"stop: the GGUF's answers never reach a stop token within {max_tokens} tokens")
    report.update(status="failed" if problems else "ok", problems=problems, warnings=warnings)
    return report
