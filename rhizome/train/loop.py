"""The training loop of a run: build the trainer from an opened `Run`, train, save, report."""
from __future__ import annotations

import math
import threading
from typing import Any

from datasets import Dataset
from transformers import EarlyStoppingCallback
from transformers.trainer_callback import PrinterCallback
from trl import SFTConfig

from ..events import ProgressFn, emit
from ..models import detect_hardware
from ..workspace import Workspace, read_json, write_json
from . import runs
from .callbacks import CheckpointStateCallback, EventsCallback, StopCallback, ThreadsCallback
from .data import IndexedCollator, SplitData, load_training_data
from .diversity import DiversityCallback, ThemeTracker
from .history import append_event, make_event
from .knowledge import run_knowledge_test, save_knowledge_test, select_prompts
from .memory import CHECKPOINTING_ABOVE, plan_memory
from .model import choose_precision, load_model, lora_config
from .processes import set_threads
from .runs import Run, finish_run
from .sampler import ThemeWeightedSampler
from .trainer import RhizomeTrainer


def execute(ws: Workspace, run: Run, progress: ProgressFn | None, stop_event: threading.Event | None) -> None:
    config, procs = run.config, run.procs
    hw = detect_hardware()
    threads = set_threads(config, hw, procs)
    precision = choose_precision(config, hw)
    setup = _check_memory(run, hw.device, precision, progress)
    emit(progress, "train", 0, 0, message=f"loading {config.model} ({hw.device}, {precision}, {threads} threads/process)")
    model, tokenizer = load_model(config, hw, precision)
    train, validation, test = load_training_data(ws, tokenizer, config.max_length, config.grounded_fraction,
                                                 config.seed)
    validation = _cap(validation, config.eval_max_examples if config.eval_steps else 0)
    if procs.main:
        write_json(run.dir / "data_report.json", _data_report(train, validation))
    trainer, stop = _build_trainer(run, model, tokenizer, train, validation, stop_event, progress, precision, setup)
    base = _start(trainer, run)
    trainer.train(resume_from_checkpoint=str(run.checkpoint) if run.checkpoint else None)
    final, adapter_step = _final_adapter(trainer, run)
    trainer.save_model(str(run.dir / "adapter"))
    if not procs.main:
        return
    finish_run(run, trainer, base, final, stop.stopped, adapter_step, progress, setup)
    if not stop.stopped and config.knowledge_test_size > 0:
        _knowledge_test(trainer, tokenizer, test, run, progress)
    runs.write_status(run.dir, "stopped" if stop.stopped else "finished", step=trainer.state.global_step)


def _check_memory(run: Run, device: str, precision: str, progress: ProgressFn | None) -> dict[str, Any]:
    """Refuse a run whose memory estimate exceeds what is available (before the slow model load);
    the estimate goes to the progress stream and status.json (the Train tab shows it)."""
    estimate = plan_memory(run.config, device, precision, run.procs.local_world)
    if estimate is None:
        return {}
    setup = {"memory": estimate.as_dict()}
    if run.procs.main:
        runs.write_status(run.dir, "running", **setup)
    emit(progress, "train", 0, 0, message=estimate.describe())
    return setup


def _cap(data: SplitData, limit: int) -> SplitData:
    return SplitData(data.rows[:limit], data.examples[:limit], data.drops)


def _data_report(train: SplitData, validation: SplitData) -> dict[str, Any]:
    def describe(data: SplitData) -> dict[str, Any]:
        lengths = data.lengths
        return {"examples": len(data.rows), "dropped": dict(data.drops), "tokens": sum(lengths),
                "grounded": sum(1 for e in data.examples if e.get("grounded")),
                "max_tokens": max(lengths, default=0),
                "trained_tokens": sum(sum(1 for x in r["labels"] if x != -100) for r in data.rows)}

    return {"train": describe(train), "validation": describe(validation)}


def _max_steps(config, n_train: int, world: int) -> int:
    if config.max_steps:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum * world
    return max(1, math.ceil(config.num_epochs * n_train / per_step))


def _training_args(run: Run, precision: str, max_steps: int, evaluate: bool) -> SFTConfig:
    config = run.config
    eval_steps = config.eval_steps if evaluate else 0
    return SFTConfig(
        output_dir=str(runs.checkpoints_dir(run.dir)), seed=config.seed,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, max_steps=max_steps,
        learning_rate=config.learning_rate, warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler,
        logging_steps=config.logging_steps, logging_first_step=True,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps or None,
        metric_for_best_model="eval_loss" if eval_steps else None, greater_is_better=False,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=None,  # rotation is ours: newest + best by validation loss
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=detect_hardware().device == "cpu",
        gradient_checkpointing=False,  # turned on by `use_checkpointing` (auto: above 1B parameters)
        max_length=None, packing=False, padding_free=False,  # our collator packs; examples are pre-fitted
        dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="no",
    )


def use_checkpointing(setting: str, model) -> bool:
    """on / off as asked; auto turns it on for models above 1B parameters."""
    if setting != "auto":
        return setting == "on"
    return sum(p.numel() for p in model.parameters()) > CHECKPOINTING_ABOVE



def _build_trainer(run: Run, model, tokenizer, train: SplitData, validation: SplitData, stop_event, progress,
                   precision: str, setup: dict[str, Any]):
    config, procs = run.config, run.procs
    evaluate = bool(config.eval_steps and validation.rows)
    args = _training_args(run, precision, _max_steps(config, len(train.rows), procs.world), evaluate)
    if use_checkpointing(config.gradient_checkpointing, model):
        args.gradient_checkpointing, args.gradient_checkpointing_kwargs = True, {"use_reentrant": False}
    sampler = ThemeWeightedSampler(train.weights, train.lengths, config.batch_size, seed=config.seed,
                                   weighted=config.weighted_sampling,
                                   group_by_length=config.group_by_length and not config.packing)
    tracker = ThemeTracker(train.themes)
    stop = StopCallback(stop_event, run.dir)
    callbacks = [DiversityCallback(tracker), stop, CheckpointStateCallback(run.dir, sampler, tracker, config.save_total_limit)]
    if not config.num_threads and procs.world == 1 and detect_hardware().device == "cpu":
        callbacks.append(ThreadsCallback())
    if evaluate and config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience,
                                               early_stopping_threshold=config.early_stopping_min_delta))
    peft_config, note = lora_config(config, model)
    if note:  # the defaults were mapped to this model's fused projections: say so where the run is read
        setup["target_modules"] = sorted(peft_config.target_modules)
        emit(progress, "train", 0, 0, message=note)
        if procs.main:
            runs.write_status(run.dir, "running", target_modules=setup["target_modules"], target_note=note)
    collator = IndexedCollator(pad_token_id=tokenizer.pad_token_id, padding_free=config.packing,
                               varlen_kernels=getattr(model.config, "_attn_implementation", "") == "flash_attention_2")
    trainer = RhizomeTrainer(
        model=model, args=args, data_collator=collator, train_dataset=Dataset.from_list(train.rows),
        eval_dataset=Dataset.from_list(validation.rows) if evaluate else None, processing_class=tokenizer,
        peft_config=peft_config, callbacks=callbacks,
        sampler=sampler, tracker=tracker, eval_data=validation if evaluate else None, theme_top_k=config.theme_top_k,
    )
    # The event log reads the trainer's token count, so it joins once the trainer exists (last, as before).
    trainer.add_callback(EventsCallback(run.dir, progress, lambda: trainer.tokens_seen, procs.world))
    trainer.remove_callback(PrinterCallback)  # our events replace its raw dict prints
    if run.checkpoint is not None:
        state = runs.read_checkpoint_state(run.checkpoint)
        sampler.load_state_dict(state.get("sampler") or {})
        tracker.load_state_dict(state.get("diversity") or {})
    return trainer, stop


def _start(trainer: RhizomeTrainer, run: Run) -> dict[str, float]:
    """Base-model validation metrics (the LoRA starts as a no-op), measured once per run."""
    summary_path = run.dir / "base_eval.json"
    if run.checkpoint is not None and summary_path.is_file():
        return read_json(summary_path)
    base = trainer.measure("base") if trainer.eval_data is not None else {}
    if run.procs.main and base:
        write_json(summary_path, base)
        append_event(runs.events_path(run.dir), make_event(
            kind="eval", step=0, total=trainer.args.max_steps, epoch=0.0,
            eval_loss=base["base_loss"], perplexity=base["base_perplexity"],
            theme_loss={k.split("/", 1)[1]: v for k, v in base.items() if k.startswith("base_theme/")} or None))
    return base


def _final_adapter(trainer: RhizomeTrainer, run: Run) -> tuple[dict[str, float], int]:
    """Final validation metrics; swaps in the best checkpoint's adapter when it scored better."""
    final = trainer.measure("eval")
    step = trainer.state.global_step
    best = runs.best_checkpoint(run.dir) if run.config.load_best_at_end and final else None
    if best is not None and best[1] < final["eval_loss"] - 1e-6:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(trainer.model, load_file(str(best[0] / "adapter_model.safetensors")))
        final, step = trainer.measure("eval"), int(best[0].name.split("-")[-1])
    return final, step


def _knowledge_test(trainer, tokenizer, test: SplitData, run: Run, progress) -> None:
    """Base vs tuned answers; a failure here is recorded, not fatal: the adapter is already saved."""
    config = run.config
    items = select_prompts(test.examples, config.knowledge_test_prompts, config.knowledge_test_size)
    if not items:
        return
    emit(progress, "knowledge_test", 0, len(items), message="base vs tuned answers")
    try:
        result = run_knowledge_test(trainer.model, tokenizer, items, config.knowledge_max_new_tokens)
    except Exception as exc:  # noqa: BLE001 - reported in the run folder and the progress stream
        write_json(run.dir / "knowledge_test.json", {"error": f"{exc.__class__.__name__}: {exc}"})
        emit(progress, "knowledge_test", 0, len(items), message=f"knowledge test failed: {exc}")
        return
    save_knowledge_test(result, run.dir)
    summary = read_json(run.dir / "summary.json", default={}) or {}
    write_json(run.dir / "summary.json", {**summary, "knowledge_test": result["summary"]})
    emit(progress, "knowledge_test", len(items), len(items), **{
        f"{side}_similarity": result["summary"][side].get("mean_similarity") for side in ("base", "tuned")})
