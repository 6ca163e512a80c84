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
PROMPT_LAYOUTS = ("sources_first", "question_first", "compact")
ANSWER_MODES = ("generate", "extractive", "auto")


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

    def __post_init__(self) -> None:
        if isinstance(self.reflection_tags, str):  # "reflection,decision" from a CLI flag
            self.reflection_tags = self.reflection_tags.split(",")
        self.reflection_tags = [str(t).strip().lstrip("#") for t in self.reflection_tags if str(t).strip("# ")]
        if self.max_zip_bytes <= 0 or self.max_zip_ratio <= 1:
            raise UserError("max_zip_bytes must be positive and max_zip_ratio greater than 1")


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
    chunk_unit: str = "words"
    """Unit of chunk_size and chunk_overlap: words, or tokens of the embedder's tokenizer."""
    question_mode: str = "template"
    """How document chunks get a question: template (fast) or llm (local chat model, cached)."""
    question_model: str | None = None
    """GGUF that writes llm-mode questions; None means the bundled chat model."""
    min_chars: int = 20
    """Texts shorter than this are dropped as too_short."""
    dedup_similarity_threshold: float = 0.95
    """Cosine similarity at or above which two examples are near-duplicates."""
    split_group_similarity: float = 0.9
    """Examples at least this similar stay together in one split (no leakage across splits)."""
    qa_quality_score_threshold: float = 0.46
    """Examples scoring below this quality are dropped as low_quality."""
    semantic_method: str = "hybrid"
    """Theme extraction: tfidf, keybert or hybrid."""
    themes_per_example: int = 3
    """Themes attached to each example."""
    theme_temperature: float = 0.5
    """IPF target tempering: 1 keeps theme frequencies as found, 0 makes them uniform."""
    source_temperature: float = 1.0
    """The same tempering for the source mix (chatgpt, pdf, ...): 1 keeps it as found."""
    max_themes: int = 200
    """Most frequent themes balanced by IPF; rarer ones are pooled as (other)."""
    weight_min: float = 0.2
    """Lower bound of IPF weights (relative to a mean of 1)."""
    weight_max: float = 5.0
    """Upper bound of IPF weights (relative to a mean of 1)."""
    ipf_max_iterations: int = 1000
    """Maximum raking sweeps (raking stops sooner when it converges or the error stalls)."""
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
    include_conversations: bool = False
    """Also learn from every saved chat session that is not private (sessions marked train always are)."""

    def __post_init__(self) -> None:
        self.split = tuple(float(x) for x in self.split)  # type: ignore[assignment]
        if len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) < 0:
            raise UserError(f"split must be three non-negative fractions summing to 1, got {self.split}")
        _check_range("dedup_similarity_threshold", self.dedup_similarity_threshold, 0.0, 1.0)
        _check_range("qa_quality_score_threshold", self.qa_quality_score_threshold, 0.0, 1.0)
        _check_range("theme_temperature", self.theme_temperature, 0.0, 1.0)
        _check_range("source_temperature", self.source_temperature, 0.0, 1.0)
        _check_range("split_group_similarity", self.split_group_similarity, 0.0, 1.0)
        if self.chunk_unit not in ("words", "tokens"):
            raise UserError(f"chunk_unit must be words or tokens, not {self.chunk_unit!r}")
        if not (0 < self.weight_min <= 1.0 <= self.weight_max):
            raise UserError("weights are relative to a mean of 1: need 0 < weight_min <= 1 <= weight_max")
        if self.chunk_size < 8 or self.min_chars < 1 or self.themes_per_example < 1 or self.max_themes < 1:
            raise UserError("chunk_size must be >= 8, min_chars, themes_per_example and max_themes >= 1")
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
    top_k: int = 2
    """Retrieved chunks put into the prompt (2 scored best on the eval's questions, bench/RESULTS.md)."""
    max_tokens: int = 256
    """Most tokens generated per answer."""
    temperature: float = 0.0
    """0 is greedy: it scored above 0.7 on the eval's questions and answers the same way every time."""
    top_p: float = 0.9
    repeat_penalty: float = 1.1
    n_ctx: int = 2048
    """Context window of the engine."""
    seed: int = 0
    system_prompt: str = "You are a helpful assistant. Answer using the provided sources when they are relevant."
    min_p: float = 0.05
    """Drop tokens whose probability is below this fraction of the most likely one."""
    sample_top_k: int = 40
    """Sample among this many most likely tokens (0 = all); temperature 0 is greedy."""
    n_threads: int = 0
    """CPU threads for generation (0 = the physical cores free right now, chosen per answer)."""
    max_loaded_models: int = 2
    """Engines kept loaded at once (1-2); switching model beyond that frees the least recently used."""
    source_chars: int = 300
    """Longest text kept of each source (its sentences nearest the question); 0 keeps whole sources."""
    prompt_layout: str = "compact"
    """Where the sources go in the prompt: sources_first, question_first or compact."""
    answer_mode: str = "auto"
    """generate (the model answers), extractive (quote the best sentences of the sources, cited), or
    auto (extractive when the model file is under small_model_mb, where a model cannot use its sources)."""
    small_model_mb: int = 400
    """answer_mode auto treats a GGUF smaller than this as too small to answer from its sources."""

    def __post_init__(self) -> None:
        if self.prompt_layout not in PROMPT_LAYOUTS:
            raise UserError(f"prompt_layout must be one of {', '.join(PROMPT_LAYOUTS)}, not {self.prompt_layout!r}")
        if self.answer_mode not in ANSWER_MODES:
            raise UserError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, not {self.answer_mode!r}")
        if self.source_chars < 0 or self.small_model_mb < 0:
            raise UserError("source_chars and small_model_mb must be >= 0")
        _check_range("temperature", self.temperature, 0.0, 5.0)
        _check_range("top_p", self.top_p, 0.0, 1.0)
        _check_range("min_p", self.min_p, 0.0, 1.0)
        if self.top_k < 0 or self.max_tokens < 1:
            raise UserError("top_k must be >= 0 and max_tokens >= 1")
        if self.sample_top_k < 0 or self.n_threads < 0:
            raise UserError("sample_top_k and n_threads must be >= 0")
        if not 1 <= self.max_loaded_models <= 2:
            raise UserError("max_loaded_models must be 1 or 2")
        if self.n_ctx < 256:
            raise UserError("n_ctx must be at least 256 tokens")


@dataclass
class TrainConfig(StageConfig):
    """How a LoRA fine-tune runs (saved as `runs/<id>/config.yaml`)."""

    model: str = "bundled"
    """bundled (SmolLM2-135M-Instruct GGUF, dequantised), an HF id, a local HF folder, or a .gguf path."""
    trust_remote_code: bool = False
    """Allow model repos to run their own code; off unless the user turns it on."""
    max_steps: int = 16
    """Optimizer steps (0 means use num_epochs). The default fits the demo in 5 minutes on 2 CPU cores."""
    num_epochs: float = 1.0
    """Passes over the training set when max_steps is 0 (an epoch draws as many examples as the set holds)."""
    batch_size: int = 8
    """Examples per step and process."""
    grad_accum: int = 1
    """Batches accumulated per optimizer step (raise it instead of batch_size when memory is short)."""
    learning_rate: float = 1e-3
    """Peak learning rate of the LoRA weights (1e-3 suits small models and short runs; lower it for 1B+)."""
    warmup_ratio: float = 0.05
    """Fraction of the steps spent warming the learning rate up from 0."""
    lr_scheduler: str = "cosine"
    """Learning-rate schedule after warm-up: cosine, linear or constant."""
    weight_decay: float = 0.0
    max_length: int = 384
    """Tokens per example; longer examples lose their oldest context turns, then prompt tokens from the left."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    qlora: bool = False
    """4-bit base weights (CUDA with bitsandbytes only)."""
    precision: str = "auto"
    """auto (bf16 on GPUs and CPUs that support it, else fp16 on GPUs, fp32 on CPUs), bf16, fp16 or fp32."""
    num_threads: int = 0
    """CPU threads per process (0: all cores shared among the processes of this machine)."""
    grounded_fraction: float = 0.5
    """Share of training examples shown with sources from memory, as the chat prompts, their replies
    citing the source they agree with (keeps the tuned model using and citing its sources; 0: off)."""
    weighted_sampling: bool = True
    """Draw examples by their IPF weights so rare themes get a fair share."""
    packing: bool = False
    """Padding-free batches: each batch's examples in one row, positions restarting per example so none
    attends to another. Best with flash-attention on GPUs; elsewhere the block mask costs more than padding."""
    group_by_length: bool = True
    """With packing off, batch examples of similar length together (padded to the longest of each batch)."""
    eval_steps: int = 8
    """Evaluate on the validation split every this many steps (0 disables evaluation)."""
    eval_max_examples: int = 200
    """Validation examples scored per evaluation (the first ones of the split)."""
    theme_top_k: int = 5
    """Themes whose validation loss is reported separately."""
    save_steps: int = 8
    """Write a resumable checkpoint every this many steps."""
    logging_steps: int = 2
    save_total_limit: int = 2
    """Checkpoints kept besides the newest: the best ones by validation loss."""
    early_stopping_patience: int = 0
    """Evaluations without improvement before stopping (0 disables)."""
    early_stopping_min_delta: float = 1e-4
    """Smallest drop in validation loss that counts as an improvement (smaller ones are float noise)."""
    load_best_at_end: bool = True
    """Save the adapter of the best checkpoint by validation loss when it beats the final one."""
    knowledge_test_prompts: list[str] = field(default_factory=list)
    """Prompts answered by base and tuned model after training; empty draws from the test split."""
    knowledge_test_size: int = 4
    """Prompts in the knowledge test (0 skips it)."""
    knowledge_max_new_tokens: int = 48
    """Most tokens each model generates per knowledge-test prompt."""
    gradient_checkpointing: str = "auto"
    """Recompute activations to save memory: auto (on above 1B parameters), on or off."""
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
        _check_range("warmup_ratio", self.warmup_ratio, 0.0, 0.99)
        _check_range("lora_dropout", self.lora_dropout, 0.0, 1.0)
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise UserError(f"precision must be auto, bf16, fp16 or fp32, not {self.precision!r}")
        if self.lr_scheduler not in ("cosine", "linear", "constant"):
            raise UserError(f"lr_scheduler must be cosine, linear or constant, not {self.lr_scheduler!r}")
        if min(self.eval_steps, self.save_steps, self.num_threads, self.knowledge_test_size) < 0 or self.logging_steps < 1:
            raise UserError("eval_steps, save_steps, num_threads and knowledge_test_size must be >= 0, logging_steps >= 1")
        _check_range("grounded_fraction", self.grounded_fraction, 0.0, 1.0)
        if self.gradient_checkpointing not in ("auto", "on", "off"):
            raise UserError(f"gradient_checkpointing must be auto, on or off, not {self.gradient_checkpointing!r}")
        if not self.target_modules:
            raise UserError("target_modules must name at least one module (e.g. q_proj, v_proj)")


# Sized so a run finishes where it starts: the plain defaults fit a CPU; a GPU takes bigger
# batches and longer examples; a shared demo machine (a Space) gets a short run.
HARDWARE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "mps": {},
    "cuda": dict(max_steps=200, batch_size=16, max_length=1024, eval_steps=50, save_steps=50),
    "small": dict(max_steps=20, batch_size=4, max_length=256, eval_steps=10, save_steps=10, logging_steps=2),
}


def train_defaults(device: str = "cpu", small: bool = False) -> TrainConfig:
    """The training settings for this hardware (`models.detect_hardware().device`): what the CLI
    starts from and the Train tab shows. `small`: a shared demo machine, whatever its device."""
    return TrainConfig().replace(**HARDWARE_DEFAULTS["small" if small else device if device in HARDWARE_DEFAULTS else "cpu"])


def invalid_fields(cls: type[StageConfig], values: dict[str, Any]) -> dict[str, str]:
    """{field: message} for each value that the config refuses on its own (over the defaults),
    so a form can show each error next to its field."""
    errors = {}
    for name, value in values.items():
        try:
            cls(**{name: value})  # type: ignore[call-arg]
        except (UserError, TypeError, ValueError) as exc:
            errors[name] = str(exc)
    return errors

EXPORT_QUANTS = ("f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")


@dataclass
class ExportConfig(StageConfig):
    """How a run's adapter becomes a merged model, a GGUF and an Ollama Modelfile."""

    quant: str = "q8_0"
    """GGUF type: f16 or bf16 (llama.cpp's converter), q8_0, q4_k_m, q5_k_m or q6_k (llama.cpp's quantiser)."""
    gguf_lora: bool = False
    """Also write the adapter as a GGUF LoRA that llama.cpp applies to the base GGUF."""
    system_prompt: str | None = None
    """SYSTEM line of the Ollama Modelfile; None keeps the model's own default (if its template has one)."""
    threads: int = 0
    """Threads for llama.cpp's quantiser (0 = all cores)."""
    verify: bool = True
    """Check the GGUF against the merged model (template, stop tokens, greedy answers) before offering it."""
    verify_prompts: int = 3
    """How many validation prompts the check runs."""
    verify_tokens: int = 64
    """Longest answer the check generates per prompt."""

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise UserError("threads must be >= 0 (0 = all cores)")
        if self.quant not in EXPORT_QUANTS:
            raise UserError(f"quant must be one of {', '.join(EXPORT_QUANTS)}, not {self.quant!r}")
        if self.verify_prompts < 1 or self.verify_tokens < 1:
            raise UserError("verify_prompts and verify_tokens must be >= 1")


@dataclass
class EvalConfig(StageConfig):
    """What an evaluation of a run measures (saved with its results in `runs/<id>/eval/<stamp>/`)."""

    models: list[str] = field(default_factory=list)
    """Models compared: base, a run id (its export), RUN:q8_0 or RUN:lora, a .gguf path; empty = base and the run."""
    retrieval: str = "both"
    """Answer the document questions with retrieval on, off, or both (one row per model and setting)."""
    questions: int = 50
    """Questions asked: the held-out test split's first, then other chunks of the notes, then training examples."""
    perplexity: bool = True
    """Held-out perplexity of the person's replies, base vs the run's adapter (transformers)."""
    perplexity_examples: int = 300
    """Test examples scored for perplexity: a seeded sample when the split holds more (0: all)."""
    seed: int = 0
    """Seed of the question sample and of llama.cpp's sampler: the same seed gives the same numbers."""
    max_tokens: int = 96
    """Most tokens per answer."""
    answer_mode: str = "generate"
    """How the models answer (see the chat's answer_mode); generate measures the models themselves."""
    temperature: float | None = None
    """Sampling temperature; None keeps the chat's default."""
    n_threads: int = 0
    """CPU threads for generation (0 keeps the chat's setting; 1 avoids llama.cpp's spinning threads on a busy machine)."""

    def __post_init__(self) -> None:
        if self.retrieval not in ("on", "off", "both"):
            raise UserError(f"retrieval must be on, off or both, not {self.retrieval!r}")
        if self.answer_mode not in ANSWER_MODES:
            raise UserError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, not {self.answer_mode!r}")
        if self.questions < 1 or self.max_tokens < 1 or self.perplexity_examples < 0:
            raise UserError("questions and max_tokens must be >= 1, perplexity_examples >= 0")
        if self.temperature is not None:
            _check_range("temperature", self.temperature, 0.0, 5.0)
