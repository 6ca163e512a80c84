"""One dataclass per stage, with YAML load/save and validation in `__post_init__`.

The CLI turns flags into these, the UI turns widget values into these, and a training run
saves its resolved config as `config.yaml` so `train --config` reruns it exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .workspace import UserError, write_text

C = TypeVar("C", bound="StageConfig")


class StageConfig:
    """Shared YAML/dict behaviour; subclasses are plain dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any] | None) -> C:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
        return cls(**data)

    def save_yaml(self, path: str | Path) -> None:
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))

    @classmethod
    def load_yaml(cls: type[C], path: str | Path) -> C:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{p} is not valid YAML: {exc}") from exc
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise UserError(f"{name} must be between {low} and {high}, got {value}")


@dataclass
class IngestConfig(StageConfig):
    """How sources become `corpus.jsonl`."""

    reflection_tags: list[str] = field(default_factory=lambda: ["reflection", "decision", "learning"])
    """Markdown notes carrying any of these tags are also extracted as reflection examples."""
    max_zip_bytes: int = 2 * 1024**3
    """Refuse zip archives whose total uncompressed size exceeds this (zip bombs)."""
    max_zip_ratio: float = 200.0
    """Refuse zip members compressed more than this ratio (zip bombs)."""
    text_column: str | None = None
    """Override the detected text column of CSV/Parquet/HF datasets."""
    prompt_column: str | None = None
    """Override the detected prompt column of CSV/Parquet/HF datasets."""
    response_column: str | None = None
    """Override the detected response column of CSV/Parquet/HF datasets."""


@dataclass
class BuildConfig(StageConfig):
    """How `corpus.jsonl` becomes `dataset/` and `memory/`."""

    context_turns: int = 4
    """Turns of preceding context kept with each assistant reply."""
    system_prompt: str | None = None
    """Optional system message prepended to every example."""
    chunk_size: int = 220
    """Words per document chunk."""
    chunk_overlap: int = 40
    """Words shared by consecutive chunks."""
    question_mode: str = "template"
    """How document chunks get a question: template (fast) or llm (local chat model, cached)."""
    min_chars: int = 20
    """Texts shorter than this are dropped as too_short."""
    dedup_similarity_threshold: float = 0.95
    """Cosine similarity at or above which two examples are near-duplicates."""
    qa_quality_score_threshold: float = 0.46
    """Examples scoring below this quality are dropped as low_quality."""
    semantic_method: str = "hybrid"
    """Theme extraction: tfidf, keybert or hybrid."""
    themes_per_example: int = 3
    """Themes attached to each example."""
    theme_temperature: float = 0.5
    """IPF target tempering: 1 keeps theme frequencies as found, 0 makes them uniform."""
    weight_min: float = 0.2
    """Lower bound of IPF weights (relative to a mean of 1)."""
    weight_max: float = 5.0
    """Upper bound of IPF weights (relative to a mean of 1)."""
    ipf_max_iterations: int = 200
    """Maximum raking sweeps."""
    ipf_tolerance: float = 1e-3
    """Stop raking when the largest marginal error falls below this."""
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train / validation / test fractions."""
    seed: int = 13
    """Seed for every random choice of the build."""
    embedder: str | None = None
    """Sentence-transformers model id or path; None means the bundled all-MiniLM-L6-v2."""
    build_memory: bool = True
    """Also build the FAISS + FTS memory index for retrieval."""

    def __post_init__(self) -> None:
        self.split = tuple(float(x) for x in self.split)  # type: ignore[assignment]
        if len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) < 0:
            raise UserError(f"split must be three non-negative fractions summing to 1, got {self.split}")
        _check_range("dedup_similarity_threshold", self.dedup_similarity_threshold, 0.0, 1.0)
        _check_range("qa_quality_score_threshold", self.qa_quality_score_threshold, 0.0, 1.0)
        _check_range("theme_temperature", self.theme_temperature, 0.0, 1.0)
        if self.semantic_method not in ("tfidf", "keybert", "hybrid"):
            raise UserError(f"semantic_method must be tfidf, keybert or hybrid, not {self.semantic_method!r}")
        if self.question_mode not in ("template", "llm"):
            raise UserError(f"question_mode must be template or llm, not {self.question_mode!r}")
        if self.chunk_overlap >= self.chunk_size:
            raise UserError("chunk_overlap must be smaller than chunk_size")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["split"] = list(self.split)
        return out


@dataclass
class ChatConfig(StageConfig):
    """How the chat engine answers."""

    model: str = "base"
    """base (bundled GGUF), a run id with an export, or a path to a .gguf file."""
    retrieval: bool = True
    """Ground answers in the workspace's memory index."""
    top_k: int = 4
    """Retrieved chunks put into the prompt."""
    max_tokens: int = 256
    """Most tokens generated per answer."""
    temperature: float = 0.7
    top_p: float = 0.9
    repeat_penalty: float = 1.1
    n_ctx: int = 2048
    """Context window of the engine."""
    seed: int = 0
    system_prompt: str = "You are a helpful assistant. Answer using the provided sources when they are relevant."

    def __post_init__(self) -> None:
        _check_range("temperature", self.temperature, 0.0, 5.0)
        _check_range("top_p", self.top_p, 0.0, 1.0)
        if self.top_k < 0 or self.max_tokens < 1:
            raise UserError("top_k must be >= 0 and max_tokens >= 1")


@dataclass
class TrainConfig(StageConfig):
    """How a LoRA fine-tune runs (saved as `runs/<id>/config.yaml`)."""

    model: str = "bundled"
    """bundled (SmolLM2-135M-Instruct GGUF, dequantised), an HF id, a local HF folder, or a .gguf path."""
    trust_remote_code: bool = False
    """Allow model repos to run their own code; off unless the user turns it on."""
    max_steps: int = 60
    """Optimizer steps (0 means use num_epochs)."""
    num_epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 384
    """Tokens per example; longer examples are truncated from the left of the context."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    qlora: bool = False
    """4-bit base weights (CUDA with bitsandbytes only)."""
    weighted_sampling: bool = True
    """Draw examples by their IPF weights so rare themes get a fair share."""
    packing: bool = False
    """Pack examples into full sequences (no cross-example attention)."""
    eval_steps: int = 20
    save_steps: int = 20
    logging_steps: int = 5
    save_total_limit: int = 2
    early_stopping_patience: int = 0
    """Evaluations without improvement before stopping (0 disables)."""
    knowledge_test_prompts: list[str] = field(default_factory=list)
    """Prompts answered by base and tuned model after training; empty draws from the test split."""
    knowledge_test_size: int = 5
    seed: int = 13
    run_id: str | None = None
    """Name of the run folder; None makes one from the date and time."""
    resume: bool = False
    """Continue the run `run_id` (or the latest run) from its newest checkpoint."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise UserError("batch_size and grad_accum must be at least 1")
        if self.max_steps < 0 or self.num_epochs <= 0:
            raise UserError("max_steps must be >= 0 and num_epochs > 0")
        if self.learning_rate <= 0:
            raise UserError("learning_rate must be positive")
        if self.lora_r < 1 or self.max_length < 16:
            raise UserError("lora_r must be >= 1 and max_length >= 16")


@dataclass
class ExportConfig(StageConfig):
    """How a run's adapter becomes a merged model, a GGUF and an Ollama Modelfile."""

    quant: str = "q8_0"
    """GGUF type: f16, q8_0 or q4_k_m."""
    gguf_lora: bool = False
    """Also write the adapter as a GGUF LoRA that llama.cpp applies to the base GGUF."""

    def __post_init__(self) -> None:
        if self.quant not in ("f16", "q8_0", "q4_k_m"):
            raise UserError(f"quant must be f16, q8_0 or q4_k_m, not {self.quant!r}")
