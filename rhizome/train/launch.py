"""Process entry for multi-process training: the same run on every process, gradients averaged.

    accelerate launch --multi_gpu --num_processes 2 -m rhizome.train.launch --workspace WS --config cfg.yaml
    torchrun --nproc_per_node 2 -m rhizome.train.launch --workspace WS

Both start the processes through torch's elastic launcher; without GPUs the processes join a gloo
group and train on CPU (`accelerate launch --cpu` alone starts one process unless MPI is set up).

Each process runs `train_lora`; rank 0 owns the run folder (lock, events, checkpoints, adapter,
knowledge test) and the others follow. A single plain `python -m rhizome.train.launch` also
works (one process). Prints the run id on rank 0; exit status 2 on a user error.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..config import TrainConfig, train_defaults
from ..events import ConsoleProgress
from ..workspace import UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rhizome.train.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default="workspace", help="workspace folder (default ./workspace)")
    parser.add_argument("--config", help="a TrainConfig YAML, e.g. a previous run's config.yaml")
    parser.add_argument("--resume", action="store_true", help="continue the latest run (or --run-id) from its newest checkpoint")
    parser.add_argument("--run-id", help="name of the run folder (or the run to resume)")
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        config = TrainConfig.load_yaml(args.config)
    else:  # the hardware-sized defaults, as `rhizome train` and the Train tab use
        from ..models import detect_hardware

        config = train_defaults(detect_hardware().device)
    changes = {"resume": args.resume or config.resume}
    if args.run_id:
        changes["run_id"] = args.run_id
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
    return config.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    main_process = int(os.environ.get("RANK", "0")) == 0
    progress = ConsoleProgress() if main_process else None
    try:
        from . import train_lora

        run_id = train_lora(args.workspace, build_config(args), progress=progress)
    except UserError as exc:
        if progress:
            progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if progress:
        progress.close()
    if main_process:
        print(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
