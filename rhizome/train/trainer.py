"""TRL's SFTTrainer with what it lacks here: the theme-weighted sampler, a loss computed only on
trained positions, example tracking for theme coverage, and an evaluation that yields per-theme
losses alongside validation loss and perplexity.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from trl import SFTTrainer

from .data import IndexedCollator, SplitData
from .diversity import ThemeTracker, theme_losses, top_themes
from .loss import example_loss_sums, trained_token_nll
from .sampler import ThemeWeightedSampler


class RhizomeTrainer(SFTTrainer):
    """An SFTTrainer wired to Rhizome's sampler, tracker and evaluation."""

    def __init__(
        self,
        *args: Any,
        sampler: ThemeWeightedSampler,
        tracker: ThemeTracker,
        eval_data: SplitData | None,
        theme_top_k: int = 5,
        **kwargs: Any,
    ) -> None:
        self.rhizome_sampler = sampler
        self.tracker = tracker
        self.eval_data = eval_data
        self.eval_themes = top_themes(tracker.example_themes, theme_top_k)
        self.tokens_seen = 0  # real (non-padding) tokens this process has trained on
        self.trained_tokens_seen = 0  # of which carried a label (assistant tokens)
        self.train_seconds = 0.0
        super().__init__(*args, **kwargs)

    # -- sampling -------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        return self.rhizome_sampler

    # -- training -------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        started = time.perf_counter()
        indices = inputs.pop("example_index", None)
        if indices is not None:
            self.tracker.update(indices.tolist())
        mask = inputs.get("attention_mask")
        self.tokens_seen += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        self.trained_tokens_seen += int((inputs["labels"][:, 1:] != -100).sum())
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.train_seconds += time.perf_counter() - started
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        nll, _ = trained_token_nll(model, inputs, labels)
        denom = num_items_in_batch if num_items_in_batch is not None else nll.numel()
        loss = nll.sum() / torch.as_tensor(denom, device=nll.device).clamp(min=1)
        # Like Trainer: num_items_in_batch counts every rank's tokens while DDP averages gradients.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        # Trainer pickles its arguments beside the weights; config.yaml already records them, and
        # nothing here may leave pickles behind.
        Path(output_dir or self.args.output_dir, "training_args.bin").unlink(missing_ok=True)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = self.measure(metric_key_prefix)
        if metrics:
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def measure(self, prefix: str = "eval") -> dict[str, float]:
        """Validation loss, perplexity and per-theme loss, each process scoring a share of the set."""
        data = self.eval_data
        if data is None or not data.rows:
            return {}
        sums, counts = self._score_examples(data)
        total = float(counts.sum())
        if total == 0:
            return {}
        loss = float(sums.sum()) / total
        metrics = {f"{prefix}_loss": loss, f"{prefix}_perplexity": math.exp(min(loss, 50.0))}
        per_theme = theme_losses(sums.tolist(), counts.tolist(), data.themes, self.eval_themes)
        metrics.update({f"{prefix}_theme/{t}": v for t, v in per_theme.items()})
        return metrics

    def _score_examples(self, data: SplitData) -> tuple[torch.Tensor, torch.Tensor]:
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        device = self.accelerator.device
        n = len(data.rows)
        sums = torch.zeros(n, dtype=torch.double, device=device)
        counts = torch.zeros(n, dtype=torch.double, device=device)
        mine = list(range(rank, n, world))
        collator: IndexedCollator = self.data_collator  # type: ignore[assignment]
        batch_size = self.args.per_device_eval_batch_size
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(mine), batch_size):
            rows = [data.rows[i] for i in mine[start : start + batch_size]]
            batch = collator(rows)
            index = batch.pop("example_index").to(device)
            labels = batch.pop("labels").to(device)
            batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            with self.accelerator.autocast():
                s, c = example_loss_sums(self.model, batch, labels, len(rows))
            sums.index_add_(0, index, s.to(device))
            counts.index_add_(0, index, c.to(device))
        self.model.train(was_training)
        if world > 1:
            sums, counts = self.accelerator.reduce(sums, "sum"), self.accelerator.reduce(counts, "sum")
        return sums.cpu(), counts.cpu()
