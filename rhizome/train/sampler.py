"""Theme-weighted sampling: draw training examples in proportion to their IPF weights.

The dataset build gives every example a weight that rakes theme frequencies towards a tempered
target (rare themes up, common ones down). This sampler draws each epoch's examples with
replacement by those weights, so the trainer really sees the balanced mix. The order of epoch
`e` is a pure function of `(seed, e)`: after a resume the trainer skips the batches already
done and gets exactly the examples the interrupted run would have seen. Optionally the draws
are grouped by length (sorted within mega-batches, then the batches shuffled) so padded batches
waste little; with padding-free batches there is nothing to group.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from ..workspace import UserError

MEGA_BATCHES = 16  # batches sorted together when grouping by length


class ThemeWeightedSampler(Sampler[int]):
    """Indices for one epoch; `weighted=False` gives a plain seeded shuffle."""

    def __init__(
        self,
        weights: Sequence[float],
        lengths: Sequence[int] | None = None,
        batch_size: int = 1,
        num_samples: int | None = None,
        seed: int = 13,
        weighted: bool = True,
        group_by_length: bool = False,
    ) -> None:
        self.weights = torch.as_tensor([float(w) for w in weights], dtype=torch.double)
        if self.weights.numel() == 0 or not torch.isfinite(self.weights).all() or (self.weights < 0).any():
            raise UserError("example weights must be finite and non-negative")
        if weighted and float(self.weights.sum()) <= 0:
            raise UserError("every example has weight 0: rebuild the dataset or turn weighted_sampling off")
        self.lengths = list(lengths) if lengths is not None else [1] * len(self.weights)
        self.batch_size = max(int(batch_size), 1)
        self.num_samples = int(num_samples or len(self.weights))
        self.seed = int(seed)
        self.weighted = weighted
        self.group_by_length = group_by_length
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch))

    def order(self, epoch: int) -> list[int]:
        """The indices of epoch `epoch`, identical on every call and every process."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.weighted:
            drawn = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=gen)
        else:
            n = len(self.weights)
            drawn = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-self.num_samples // n))])
            drawn = drawn[: self.num_samples]
        indices = drawn.tolist()
        return self._group(indices, gen) if self.group_by_length else indices

    def _group(self, indices: list[int], gen: torch.Generator) -> list[int]:
        size = self.batch_size * MEGA_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(indices), size):
            chunk = sorted(indices[start : start + size], key=lambda i: -self.lengths[i])
            batches += [chunk[j : j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        # Keep the last (possibly short) batch last so full batches stay aligned to batch_size.
        head, tail = batches[:-1], batches[-1:]
        perm = torch.randperm(len(head), generator=gen).tolist()
        return [i for b in [head[p] for p in perm] + tail for i in b]

    def fingerprint(self) -> str:
        """Identifies the data the order depends on, to refuse resuming on a changed dataset."""
        blob = json.dumps([self.weights.tolist(), self.lengths, self.batch_size, self.num_samples])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "num_samples": self.num_samples,
            "weighted": self.weighted,
            "group_by_length": self.group_by_length,
            "fingerprint": self.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("fingerprint") not in (None, self.fingerprint()):
            raise UserError(
                "the dataset or batch settings changed since this run's checkpoint: "
                "start a new run instead of resuming"
            )
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state.get("epoch", self.epoch))
        self.weighted = bool(state.get("weighted", self.weighted))
        self.group_by_length = bool(state.get("group_by_length", self.group_by_length))

