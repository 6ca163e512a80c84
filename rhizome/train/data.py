"""Training examples as token ids with labels on the assistant's final turn only.

Each `dataset/*.jsonl` example is rendered with the model's own chat template. The prompt
(everything before the last assistant message, plus the generation prompt) is masked with -100;
the assistant reply and its end-of-turn token are learned. An example longer than `max_length`
first loses its oldest context turns, then prompt tokens from the left; one whose reply alone
does not fit is dropped as `too_long`. Drop reasons are counted for the run's data report.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from ..workspace import UserError, Workspace, read_jsonl

IGNORE = -100


@dataclass
class Encoded:
    """One tokenised example, or the reason it was dropped."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    dropped: str | None = None

    @property
    def trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _template_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
    )
    return list(out["input_ids"])


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], int]:
    """Full token ids and where the learned reply starts."""
    full = _template_ids(tokenizer, messages, generation_prompt=False)
    if not messages or messages[-1]["role"] != "assistant":
        return full, len(full)  # nothing to learn: every label masked
    prompt = _template_ids(tokenizer, messages[:-1], generation_prompt=True)
    start = 0
    # Templates normally render the prompt as an exact prefix; if one does not, learn from the
    # first token where they differ rather than mislabel.
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    return full, start


def _context_variants(messages: list[dict[str, str]]):
    """The messages, then shorter contexts that still open on a user turn (oldest dropped first)."""
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    body = messages[len(head):]
    yield messages
    for cut in range(1, len(body) - 1):
        if body[cut]["role"] == "user":
            yield head + body[cut:]


def encode_messages(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> Encoded:
    """Token ids and labels (-100 outside the final assistant turn), fitted to `max_length`."""
    if not messages or not any(m.get("content", "").strip() for m in messages):
        return Encoded(dropped="empty")
    for variant in _context_variants(messages):
        ids, start = _render(tokenizer, variant)
        if len(ids) <= max_length:
            return Encoded(ids, [IGNORE] * start + ids[start:])
    if len(ids) - start > max_length - 1:
        return Encoded(dropped="too_long")
    cut = len(ids) - max_length  # keep the whole reply, lose prompt tokens from the left
    return Encoded(ids[cut:], [IGNORE] * (start - cut) + ids[start:])


@lru_cache(maxsize=2)
def preview_first_example(ws: Workspace, model: str = "bundled", max_length: int = 384,
                          trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """`preview_labels` of the first training example, as the trainer will see it."""
    examples = read_split(ws, "train")
    if not examples:
        raise UserError("no dataset yet: build one first (Data → Build dataset, or `rhizome build`)")
    tokens = preview_labels(load_tokenizer(model, trust_remote_code), examples[0]["messages"], max_length)
    if not tokens:
        raise UserError(f"the first example is longer than max length ({max_length} tokens) even without "
                        "its context; raise max_length (“Max tokens per example”)")
    return tokens


def load_tokenizer(spec: str = "bundled", trust_remote_code: bool = False) -> Any:
    """The training tokenizer of a model spec (cached), without loading the weights."""
    from transformers import AutoTokenizer

    from ..models import resolve_train_model

    return AutoTokenizer.from_pretrained(resolve_train_model(spec), trust_remote_code=trust_remote_code)


def preview_labels(tokenizer: Any, messages: list[dict[str, str]], max_length: int = 384) -> list[dict[str, Any]]:
    """Which tokens of one example are trained: `[{"token", "id", "trained"}, ...]` for the UI.

    `tokenizer` is a tokenizer or a model spec ("bundled", a folder, an HF id). An example that
    would be dropped (empty, reply longer than max_length) previews as an empty list.
    """
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    enc = encode_messages(tokenizer, messages, max_length)
    if enc.dropped:
        return []
    return [
        {"token": tokenizer.decode([tid]), "id": tid, "trained": label != IGNORE}
        for tid, label in zip(enc.input_ids, enc.labels)
    ]


@dataclass
class SplitData:
    """Tokenised rows of one split plus their metadata."""

    rows: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    drops: Counter

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]

    @property
    def weights(self) -> list[float]:
        return [max(float(e.get("weight", 1.0) or 0.0), 0.0) for e in self.examples]

    @property
    def themes(self) -> list[list[str]]:
        return [list(e.get("themes") or []) for e in self.examples]


def read_split(ws: Workspace, split: str, detailed: bool = False) -> list[dict[str, Any]]:
    """A split's examples; `detailed`: from `*_detailed.jsonl` when there (each example's origin too)."""
    path = ws.split_path(split, detailed=True) if detailed else ws.split_path(split)
    path = path if path.is_file() else ws.split_path(split)
    if not path.is_file():
        return []
    try:
        return [row for row in read_jsonl(path) if isinstance(row.get("messages"), list)]
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSONL ({exc}): rebuild the dataset with `rhizome build`") from exc


def require_train_split(ws: Workspace) -> None:
    """Fail fast, before loading a model, when there is nothing to train on."""
    path = ws.split_path("train")
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"the training set {path} is missing or empty: run `rhizome build` first")


def encode_split(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> SplitData:
    rows, kept, drops = [], [], Counter()
    for example in examples:
        enc = encode_messages(tokenizer, example["messages"], max_length)
        reason = enc.dropped or (None if enc.trained else "no_trained_tokens")
        if reason:
            drops[reason] += 1
            continue
        rows.append({"input_ids": enc.input_ids, "labels": enc.labels, "index": len(rows)})
        kept.append(example)
    return SplitData(rows, kept, drops)


def load_training_data(ws: Workspace, tokenizer: Any, max_length: int, grounded_fraction: float = 0.0,
                       seed: int = 0) -> tuple[SplitData, SplitData, SplitData]:
    """Train, validation and test splits; refuses a train split with nothing to learn.
    `grounded_fraction` of the training examples get retrieved sources, as the chat shows them
    (`grounded.py`); validation stays bare, so its loss compares across runs."""
    train_examples = read_split(ws, "train")
    if not train_examples:
        raise UserError(f"the training set {ws.split_path('train')} has no examples: run `rhizome build` first")
    if grounded_fraction > 0:
        from .grounded import ground_examples

        train_examples, _ = ground_examples(ws, train_examples, grounded_fraction, seed)
    train = encode_split(tokenizer, train_examples, max_length)
    _check_trainable(ws.split_path("train"), train, len(train_examples), max_length)
    validation = encode_split(tokenizer, read_split(ws, "validation"), max_length)
    test = SplitData([], read_split(ws, "test"), Counter())
    return train, validation, test


def _check_trainable(path: Path, data: SplitData, total: int, max_length: int) -> None:
    if data.rows:
        return
    if data.drops.get("too_long", 0) == total:
        raise UserError(
            f"all {total} examples in {path} have replies longer than max_length={max_length} tokens: "
            "raise max_length or shorten the examples"
        )
    if data.drops.get("no_trained_tokens", 0):
        raise UserError(
            f"every label in {path} is masked (no example ends with an assistant reply to learn): "
            "check that the last message of each example has role 'assistant'"
        )
    raise UserError(f"no usable examples in {path} ({dict(data.drops)}): rebuild the dataset")


@dataclass
class IndexedCollator(DataCollatorForLanguageModeling):
    """TRL's collator (padding-free or padded) that also returns each row's example index.

    The index lets the trainer see which examples a step really consumed, for theme coverage.
    """

    varlen_kernels: bool = False
    """Keep the cu_seq_lens tensors that flash-attention reads; sdpa/eager mask from position_ids."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
        if not self.varlen_kernels:
            for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"):
                batch.pop(key, None)
        batch["example_index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
        return batch
