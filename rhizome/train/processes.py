"""Processes and threads of a run: this process's place in a multi-process launch (accelerate or
torchrun), sharing rank 0's decisions with the others, and the intra-op threads torch may use.
Light on purpose: torch and accelerate load inside the functions that need them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig
from ..models import Hardware


@dataclass(frozen=True)
class Processes:
    """This process's place in a (possibly single-process) launch."""

    rank: int = 0
    world: int = 1
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_processes() -> Processes:
    """Join the process group when launched by accelerate/torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes()
    import torch
    from accelerate import PartialState

    # Creates the process group: NCCL on GPUs, gloo on CPUs. The state is shared, so Trainer's
    # own PartialState(cpu=True) later finds the same group.
    state = PartialState(cpu=not torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Processes(state.process_index, state.num_processes, max(local, 1))


def broadcast(value: Any, procs: Processes) -> Any:
    """Rank 0's value on every rank."""
    if procs.world <= 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def set_threads(config: TrainConfig, hw: Hardware, procs: Processes) -> int:
    """Intra-op threads: the configured number, else the cores other processes leave free,
    shared among this machine's training processes."""
    import torch

    from ..cpu import pool_threads

    threads = config.num_threads or max(1, min(hw.cpu_threads, pool_threads()) // procs.local_world)
    torch.set_num_threads(threads)
    return threads
