"""The knowledge test: the same prompts answered by the base and the tuned model, side by side.

Runs in memory right after training: the base answers come from the PEFT model with its adapter
disabled, the tuned ones with the adapter merged into the weights (so generation pays no LoRA
overhead), then unmerged. Greedy decoding makes the comparison repeatable. Saved as
`knowledge_test.json` (rows and a summary) and `knowledge_test.md` (a table) in the run folder,
with latency, token counts, the empty-answer rate and TF-IDF cosine similarity to the reference.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..workspace import write_json, write_text


def select_prompts(test_examples: list[dict[str, Any]], prompts: list[str], size: int) -> list[dict[str, Any]]:
    """Configured prompts (no reference) or the first `size` test examples with an assistant reply."""
    if prompts:
        return [{"messages": [{"role": "user", "content": p}], "reference": None} for p in prompts[:size or None]]
    chosen = []
    for ex in test_examples:
        msgs = ex.get("messages") or []
        if len(msgs) >= 2 and msgs[-1].get("role") == "assistant":
            chosen.append({"messages": msgs[:-1], "reference": msgs[-1]["content"]})
        if len(chosen) >= size:
            break
    return chosen


@torch.no_grad()
def _answer(model: Any, tokenizer: Any, messages: list[dict[str, str]], max_new_tokens: int) -> dict[str, Any]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    started = time.perf_counter()
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    latency = time.perf_counter() - started
    new = out[0, ids["input_ids"].shape[1]:]
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    return {"answer": text, "latency_s": round(latency, 3), "new_tokens": int(new.numel()),
            "prompt_tokens": int(ids["input_ids"].shape[1])}


def _similarities(answers: list[str], references: list[str | None]) -> list[float | None]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    pairs = [(a, r) for a, r in zip(answers, references) if r]
    if not pairs:
        return [None] * len(answers)
    vec = TfidfVectorizer().fit([t for pair in pairs for t in pair] + ["placeholder"])
    sims = []
    for a, r in zip(answers, references):
        if not r or not a.strip():
            sims.append(None if not r else 0.0)
        else:
            sims.append(round(float(cosine_similarity(vec.transform([a]), vec.transform([r]))[0, 0]), 4))
    return sims


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    sims = [r["similarity"] for r in rows if r["similarity"] is not None]
    return {
        "mean_latency_s": round(sum(r["latency_s"] for r in rows) / len(rows), 3),
        "mean_new_tokens": round(sum(r["new_tokens"] for r in rows) / len(rows), 2),
        "empty_rate": sum(1 for r in rows if not r["answer"]) / len(rows),
        "mean_similarity": round(sum(sims) / len(sims), 4) if sims else None,
    }


def run_knowledge_test(model: Any, tokenizer: Any, items: list[dict[str, Any]], max_new_tokens: int) -> dict[str, Any]:
    """Answers from both models for each item; `model` is a PeftModel."""
    model.eval()
    with model.disable_adapter():
        base = [_answer(model, tokenizer, it["messages"], max_new_tokens) for it in items]
    model.merge_adapter()
    try:
        tuned = [_answer(model, tokenizer, it["messages"], max_new_tokens) for it in items]
    finally:
        model.unmerge_adapter()
    refs = [it["reference"] for it in items]
    for side in (base, tuned):
        for row, sim in zip(side, _similarities([r["answer"] for r in side], refs)):
            row["similarity"] = sim
    rows = [{"prompt": it["messages"][-1]["content"], "reference": it["reference"], "base": b, "tuned": t}
            for it, b, t in zip(items, base, tuned)]
    return {"rows": rows, "summary": {"base": _summary(base), "tuned": _summary(tuned)},
            "max_new_tokens": max_new_tokens}


def save_knowledge_test(result: dict[str, Any], run_dir: Path) -> dict[str, str]:
    write_json(run_dir / "knowledge_test.json", result)
    write_text(run_dir / "knowledge_test.md", render_markdown(result))
    return {"json": str(run_dir / "knowledge_test.json"), "markdown": str(run_dir / "knowledge_test.md")}


def render_markdown(result: dict[str, Any]) -> str:
    def cell(text: Any) -> str:
        return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")[:300]

    lines = ["# Knowledge test: base vs tuned", "", "| | base | tuned |", "|---|---|---|"]
    base, tuned = result["summary"].get("base", {}), result["summary"].get("tuned", {})
    for key in ("mean_latency_s", "mean_new_tokens", "empty_rate", "mean_similarity"):
        lines.append(f"| {key} | {cell(base.get(key))} | {cell(tuned.get(key))} |")
    lines += ["", "| prompt | reference | base answer | tuned answer | sim base / tuned |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        sims = f"{cell(r['base']['similarity'])} / {cell(r['tuned']['similarity'])}"
        lines.append(f"| {cell(r['prompt'])} | {cell(r['reference'])} | {cell(r['base']['answer'])} | "
                     f"{cell(r['tuned']['answer'])} | {sims} |")
    return "\n".join(lines) + "\n"
