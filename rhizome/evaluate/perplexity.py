"""Held-out perplexity of the person's replies: base model vs a run's LoRA adapter, per theme.

The test split is tokenised exactly as training tokenises (`train.data.encode_split`: the
model's chat template, labels on the final assistant turn only), batched with the training
collator and scored with the training loss (`train.loss.example_loss_sums`), once with the
adapter disabled (the base) and once with it on. Perplexity = exp(total NLL / trained tokens),
over all examples and over the examples of each theme. Runs on CPU in float32; deterministic.
A big test split is sampled (`EvalConfig.perplexity_examples`, seeded).
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Callable

from ..config import TrainConfig
from ..events import ProgressFn, emit
from ..workspace import UserError, Workspace

BATCH = 8


def _perplexity(nll: float, tokens: float) -> float | None:
    return round(math.exp(nll / tokens), 4) if tokens else None


def sample_examples(test: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    """At most `limit` test examples (0: all), a seeded sample kept in split order: a big split's
    perplexity is as well estimated from a few hundred replies, in minutes instead of an hour."""
    if not limit or len(test) <= limit:
        return test
    return [test[i] for i in sorted(random.Random(seed).sample(range(len(test)), limit))]


def _score(model: Any, collator: Any, rows: list[dict[str, Any]],
           report: Callable[[int], None]) -> tuple[list[float], list[float]]:
    """Summed NLL and trained-token count of each row; `report(rows done)` after each batch."""
    import torch

    from ..train.loss import example_loss_sums

    sums, counts = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), BATCH):
            part = rows[start : start + BATCH]
            batch = collator([{**r, "index": i} for i, r in enumerate(part)])
            batch.pop("example_index")
            labels = batch.pop("labels")
            batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}
            s, c = example_loss_sums(model, batch, labels, len(part))
            sums += s.tolist()
            counts += c.tolist()
            report(len(sums))
    return sums, counts


def _groups(sums: list[float], counts: list[float], groups: list[list[str]]) -> dict[str, dict[str, Any]]:
    by: dict[str, list[float]] = {}
    for s, c, names in zip(sums, counts, groups):
        for name in names or ["(no theme)"]:
            acc = by.setdefault(name, [0.0, 0.0, 0])
            acc[0] += s
            acc[1] += c
            acc[2] += 1
    return {t: {"perplexity": _perplexity(a[0], a[1]), "examples": a[2]} for t, a in sorted(by.items())}


def _table(sums: list[float], counts: list[float], themes: list[list[str]], kinds: list[list[str]]) -> dict[str, Any]:
    return {"perplexity": _perplexity(sum(sums), sum(counts)), "tokens": int(sum(counts)),
            "per_kind": _groups(sums, counts, kinds), "per_theme": _groups(sums, counts, themes)}


def heldout_perplexity(ws: Workspace, run_id: str, test: list[dict[str, Any]],
                       progress: ProgressFn | None = None, of: int | None = None) -> dict[str, Any]:
    """{"base": table, "tuned": table, "reduction": fraction} over the replies of `test` (a
    sample of `of` test examples when given)."""
    from peft import PeftModel

    from ..models import load_causal_lm
    from ..train.data import IndexedCollator, encode_split

    run_dir = ws.run_dir(run_id)
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"run {run_id} has no adapter in {adapter}: train it to the end first")
    config = TrainConfig.load_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else TrainConfig()
    emit(progress, "perplexity", 0, 2 * len(test), message="loading the model")
    model, tokenizer = load_causal_lm(config.model, trust_remote_code=config.trust_remote_code)
    data = encode_split(tokenizer, test, config.max_length)
    if not data.rows:
        raise UserError(f"no test example of {ws.split_path('test')} fits max_length={config.max_length}: "
                        "nothing to measure perplexity on")
    model = PeftModel.from_pretrained(model, str(adapter))
    collator = IndexedCollator(pad_token_id=tokenizer.pad_token_id)
    kinds = [["notes" if "chunk" in (e.get("origin") or {}) else "conversations"] for e in data.examples]
    total = 2 * len(data.rows)
    with model.disable_adapter():
        base = _table(*_score(model, collator, data.rows,
                              lambda n: emit(progress, "perplexity", n, total, message="base")), data.themes, kinds)
    tuned = _table(*_score(model, collator, data.rows,
                           lambda n: emit(progress, "perplexity", len(data.rows) + n, total, message="tuned")),
                   data.themes, kinds)
    reduction = None
    if base["perplexity"] and tuned["perplexity"]:
        reduction = round(1 - tuned["perplexity"] / base["perplexity"], 4)
    return {"examples": len(data.rows), "of": of or len(test), "dropped": dict(data.drops), "base": base, "tuned": tuned,
            "reduction": reduction, "adapter": str(Path(adapter))}
