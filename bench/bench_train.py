"""Training throughput of `train_lora` vs a naive baseline, FLOP/s vs a measured matmul peak, and
the default demo training (wall time, validation perplexity drop vs the base model).

    .venv/bin/python bench/bench_train.py                  # everything, on the bundled sample data
    .venv/bin/python bench/bench_train.py --skip-demo --rounds 2 --steps 4
    .venv/bin/python bench/bench_train.py --workspace WS   # an already built workspace

Baseline: plain transformers Trainer + peft LoRA, fp32, every batch padded to max_length, random
sampling, full-vocabulary logits; same model, tokenised examples, batch size and steps. Ours:
`train_lora` with evaluation, checkpoints and the knowledge test off, once as configured by
default (bf16 autocast where the CPU has native bf16) and, on such CPUs, once forced to fp32
(ablation). The machine may be shared, so the sides alternate in rounds and the median of the
per-round ratios is reported. Tokens are real (non-padding) tokens; "step time" is forward +
backward summed over steps, the same for both.
Results: bench/out/train_results.json (append the table to bench/RESULTS.md by hand).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rhizome.config import TrainConfig  # noqa: E402
from rhizome.workspace import Workspace, read_json  # noqa: E402


def build_sample_workspace(root: Path) -> Workspace:
    """The bundled sample data through the real ingest and build stages."""
    from rhizome.curate import build_dataset
    from rhizome.ingest import ingest_paths

    ws = Workspace(root).ensure()
    if not ws.split_path("train").is_file():
        ingest_paths(ws, [ROOT / "assets" / "sample"])
        build_dataset(ws)
    return ws


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matmul on this CPU with the current thread count."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def useful_flops(model_cfg, tokens: int, trained: int, mean_len: float) -> float:
    """FLOPs a LoRA step must do for real tokens: frozen linears forward + input-gradient backward
    (4 x params x tokens), the LM head on trained positions, and causal attention."""
    d, layers, ff = model_cfg.hidden_size, model_cfg.num_hidden_layers, model_cfg.intermediate_size
    kv = model_cfg.num_key_value_heads * (d // model_cfg.num_attention_heads)
    linear = layers * (2 * d * d + 2 * d * kv + 3 * d * ff)
    head = d * model_cfg.vocab_size
    attention = layers * 2 * 2 * d * (mean_len / 2) * 2  # QK^T and AV, forward + backward, half context
    return 4 * linear * tokens + 4 * head * trained + attention * tokens


def run_naive(ws: Workspace, steps: int, batch: int, max_length: int) -> dict:
    """Trainer + peft, fp32, padded to max_length; timing of forward+backward like ours."""
    from peft import LoraConfig, get_peft_model
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from rhizome.models import load_causal_lm
    from rhizome.train.data import encode_split, read_split

    model, tok = load_causal_lm("bundled")
    rows = encode_split(tok, read_split(ws, "train"), max_length).rows
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))

    def pad_to_max(examples):
        ids = torch.full((len(examples), max_length), tok.pad_token_id)
        labels = torch.full((len(examples), max_length), -100)
        mask = torch.zeros((len(examples), max_length), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    class Timed(Trainer):
        seconds, tokens, trained = 0.0, 0, 0

        def training_step(self, model, inputs, num_items_in_batch=None):
            t = time.perf_counter()
            Timed.tokens += int(inputs["attention_mask"].sum())
            Timed.trained += int((inputs["labels"][:, 1:] != -100).sum())
            out = super().training_step(model, inputs, num_items_in_batch)
            Timed.seconds += time.perf_counter() - t
            return out

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=4e-4, logging_steps=steps, save_strategy="no", report_to="none",
                             use_cpu=True, remove_unused_columns=False, disable_tqdm=True, seed=13)
    trainer = Timed(model=model, args=args, train_dataset=Dataset.from_list(rows), data_collator=pad_to_max)
    wall = time.perf_counter()
    trainer.train()
    return {"tokens": Timed.tokens, "trained": Timed.trained, "seconds": Timed.seconds,
            "train_wall": time.perf_counter() - wall, "padded_tokens": steps * batch * max_length}


def run_ours(ws: Workspace, steps: int, batch: int, max_length: int, precision: str = "auto") -> dict:
    from rhizome.train import train_lora

    config = TrainConfig(max_steps=steps, batch_size=batch, max_length=max_length, eval_steps=0, save_steps=0,
                         logging_steps=steps, knowledge_test_size=0, precision=precision)
    wall = time.perf_counter()
    run_id = train_lora(ws, config)
    wall = time.perf_counter() - wall
    summary = read_json(ws.run_dir(run_id) / "summary.json")
    return {"tokens": summary["tokens_trained"], "trained": summary["labelled_tokens"],
            "seconds": summary["train_seconds"], "call_wall": wall}


def compare(ws: Workspace, rounds: int, steps: int, batch: int, max_length: int, ablate_fp32: bool) -> dict:
    from transformers import AutoConfig
    from rhizome.models import resolve_train_model

    model_cfg = AutoConfig.from_pretrained(resolve_train_model("bundled"))
    results = []
    for r in range(rounds):
        naive = run_naive(ws, steps, batch, max_length)
        ours = run_ours(ws, steps, batch, max_length)
        # Ablation where the default trains in bf16: the same run forced to fp32.
        ours_fp32 = run_ours(ws, steps, batch, max_length, precision="fp32") if ablate_fp32 else ours
        for side in (naive, ours, ours_fp32):
            side["tokens_per_s"] = side["tokens"] / side["seconds"]
            side["cpu_load"] = os.getloadavg()[0]
            mean_len = side["tokens"] / (steps * batch)
            side["useful_flop_per_s"] = useful_flops(model_cfg, side["tokens"], side["trained"], mean_len) / side["seconds"]
        results.append({"naive": naive, "ours": ours, "ours_fp32": ours_fp32,
                        "speedup": ours["tokens_per_s"] / naive["tokens_per_s"],
                        "speedup_fp32": ours_fp32["tokens_per_s"] / naive["tokens_per_s"]})
        print(f"round {r + 1}: naive {naive['tokens_per_s']:.0f} tok/s, ours {ours['tokens_per_s']:.0f} tok/s "
              f"(x{results[-1]['speedup']:.2f}), ours fp32 {ours_fp32['tokens_per_s']:.0f} tok/s "
              f"(x{results[-1]['speedup_fp32']:.2f}) (load {os.getloadavg()[0]:.1f})", flush=True)
    return {"rounds": results, "median_speedup": statistics.median(r["speedup"] for r in results),
            "median_speedup_fp32": statistics.median(r["speedup_fp32"] for r in results)}


def run_demo(ws: Workspace) -> dict:
    """The default TrainConfig end to end (model load, base eval, training, plots, knowledge test)."""
    from rhizome.train import train_lora

    load = os.getloadavg()[0]
    wall = time.perf_counter()
    run_id = train_lora(ws, TrainConfig())
    wall = time.perf_counter() - wall
    summary = read_json(ws.run_dir(run_id) / "summary.json")
    return {"run_id": run_id, "wall_s": round(wall, 1), "load_before": load, "load_after": os.getloadavg()[0],
            **{k: summary.get(k) for k in ("steps", "base_perplexity", "perplexity", "perplexity_drop",
                                           "train_seconds", "tokens_per_s", "adapter_step")},
            "knowledge_test": read_json(ws.run_dir(run_id) / "knowledge_test.json", {}).get("summary")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", help="a built workspace (default: build the sample data in a temp folder)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "train_results.json"))
    args = parser.parse_args()
    from rhizome.models import detect_hardware
    from rhizome.train.model import choose_precision, cpu_supports_bf16

    torch.set_num_threads(detect_hardware().cpu_threads)
    ws = Workspace(args.workspace) if args.workspace else build_sample_workspace(Path(tempfile.mkdtemp()) / "ws")
    bf16 = cpu_supports_bf16()
    out = {"date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(), "cpu_bf16": bf16,
           "precision": choose_precision(TrainConfig(), detect_hardware()),
           "peak_fp32_flop_s": matmul_peak(torch.float32),
           # Without native bf16 units torch's bf16 matmul is a slow fallback: no peak worth measuring.
           "peak_bf16_flop_s": matmul_peak(torch.bfloat16) if bf16 else None}
    print(f"matmul peak: fp32 {out['peak_fp32_flop_s'] / 1e9:.0f} GFLOP/s"
          + (f", bf16 {out['peak_bf16_flop_s'] / 1e9:.0f} GFLOP/s" if bf16 else " (no native bf16 on this CPU)"), flush=True)
    if not args.skip_compare:
        out["compare"] = compare(ws, args.rounds, args.steps, args.batch_size, args.max_length, ablate_fp32=bf16)
        peak = out["peak_bf16_flop_s"] if out["precision"] == "bf16" else out["peak_fp32_flop_s"]
        ours = statistics.median(r["ours"]["useful_flop_per_s"] for r in out["compare"]["rounds"])
        naive = statistics.median(r["naive"]["useful_flop_per_s"] for r in out["compare"]["rounds"])
        out["mfu_ours"], out["mfu_naive_vs_fp32_peak"] = ours / peak, naive / out["peak_fp32_flop_s"]
        print(f"median speedup x{out['compare']['median_speedup']:.2f}; ours {ours / 1e9:.1f} GFLOP/s = "
              f"{out['mfu_ours']:.1%} of the {out['precision']} peak; naive {out['mfu_naive_vs_fp32_peak']:.1%} of fp32 peak")
    if not args.skip_demo:
        out["demo"] = run_demo(ws)
        print(f"demo: {out['demo']['wall_s']} s, perplexity {out['demo']['base_perplexity']:.2f} -> "
              f"{out['demo']['perplexity']:.2f} (drop {out['demo']['perplexity_drop']:.1%})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
