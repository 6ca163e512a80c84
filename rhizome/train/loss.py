"""Next-token loss computed only where there is something to learn.

Only assistant tokens carry labels, so the LM head (576 x 49k for SmolLM2, about a fifth of the
model's FLOPs) is applied only at positions whose next token is trained in some row, through
transformers' `logits_to_keep`. TRL's fused head scores every position on CPU and adds entropy
and accuracy metrics each step; this skips both. Padded batches are padded on the right, so with
causal attention no real token can see a pad: the padding mask is dropped and attention takes
the fused `is_causal` kernel instead of materialising a (batch, len, len) mask. The same
function serves training (mean over trained tokens) and evaluation (per-example sums).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .data import IGNORE

def is_packed(inputs: dict[str, Any]) -> bool:
    """Padding-free batch: one row, positions restarting at 0 for each example."""
    return "position_ids" in inputs and inputs["input_ids"].size(0) == 1


def example_of_token(inputs: dict[str, Any]) -> torch.Tensor:
    """(batch, seq) index of the example each token belongs to, padded or padding-free."""
    ids = inputs["input_ids"]
    if is_packed(inputs):
        return ((inputs["position_ids"] == 0).long().cumsum(-1) - 1).clamp(min=0)
    return torch.arange(ids.size(0), device=ids.device)[:, None].expand_as(ids)


def trained_token_nll(model: Any, inputs: dict[str, Any], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative log-likelihood of every trained target token, and the example it belongs to."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    keep = mask.any(0).nonzero().flatten()  # positions whose next token is learned, in any row
    keys = ("input_ids", "position_ids") if is_packed(inputs) else ("input_ids",)  # right padding: no mask
    model_inputs = {k: inputs[k] for k in keys}
    outputs = model(**model_inputs, use_cache=False, logits_to_keep=keep)
    logits = outputs.logits  # (batch, len(keep), vocab)
    kept_targets = targets[:, keep]
    nll = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), kept_targets.reshape(-1), ignore_index=IGNORE, reduction="none"
    )
    kept_mask = kept_targets.reshape(-1) != IGNORE
    owners = example_of_token(inputs)[:, 1:][:, keep].reshape(-1)
    return nll[kept_mask], owners[kept_mask]


@torch.no_grad()
def example_loss_sums(model: Any, inputs: dict[str, Any], labels: torch.Tensor, n_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and trained-token count per example of one batch (for evaluation)."""
    nll, owners = trained_token_nll(model, inputs, labels)
    sums = torch.zeros(n_examples, dtype=torch.double, device=nll.device)
    counts = torch.zeros(n_examples, dtype=torch.double, device=nll.device)
    sums.index_add_(0, owners, nll.double())
    counts.index_add_(0, owners, torch.ones_like(nll, dtype=torch.double))
    return sums, counts
