"""Training across processes: a run killed with SIGKILL resumes and finishes; two CPU processes
train one run together over DDP/gloo (launched by `accelerate launch`)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rhizome.config import TrainConfig
from rhizome.workspace import Workspace, read_json, write_jsonl

pytestmark = pytest.mark.slow  # every test here trains in one or more real processes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def write_workspace(root: Path, n: int = 12) -> Workspace:
    ws = Workspace(root).ensure()
    themes = ["bees", "bread", "rust"]

    def rows(count: int, offset: int = 0) -> list[dict]:
        return [{"id": f"ex{offset + i}", "themes": [themes[i % 3]], "weight": 1.0 + i % 3, "quality": 1.0,
                 "source": "jsonl",
                 "messages": [{"role": "user", "content": f"Tell me about {themes[i % 3]}, part {i}."},
                              {"role": "assistant", "content": f"Rooted answer: {themes[i % 3]} need patience.\nNext step: try {i}."}]}
                for i in range(count)]

    write_jsonl(ws.split_path("train"), rows(n))
    write_jsonl(ws.split_path("validation"), rows(3, 100))
    write_jsonl(ws.split_path("test"), rows(2, 200))
    return ws


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_run_killed_with_sigkill_resumes_and_finishes(tmp_path):
    from rhizome.train import train_lora

    ws = write_workspace(tmp_path / "ws")
    config = TrainConfig(max_steps=6, batch_size=2, max_length=128, eval_steps=2, save_steps=2, logging_steps=1,
                         knowledge_test_size=0, num_threads=1, run_id="killed")
    cfg_path = tmp_path / "cfg.yaml"
    config.save_yaml(cfg_path)
    proc = subprocess.Popen([sys.executable, "-m", "rhizome.train.launch", "--workspace", str(ws.root),
                             "--config", str(cfg_path)], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = ws.run_dir("killed") / "checkpoints" / "checkpoint-2" / "rhizome_state.json"
    deadline = time.time() + 240
    while not first.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert first.is_file(), "the first checkpoint never appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert read_json(ws.run_dir("killed") / "summary.json") is None  # it really died mid-way

    run_id = train_lora(ws, TrainConfig(resume=True))  # the latest run, from its newest checkpoint
    assert run_id == "killed"
    run = ws.run_dir(run_id)
    summary = read_json(run / "summary.json")
    assert summary["state"] == "finished" and summary["steps"] == 6
    assert read_json(run / "checkpoints" / "checkpoint-6" / "trainer_state.json")["global_step"] == 6
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in events if e["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # replayed steps were trimmed, none repeated
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_two_cpu_processes_train_one_run_over_ddp(tmp_path):
    ws = write_workspace(tmp_path / "ws", n=16)
    cfg = tmp_path / "cfg.yaml"
    TrainConfig(max_steps=2, batch_size=2, max_length=128, eval_steps=2, save_steps=2, logging_steps=1,
                knowledge_test_size=0).save_yaml(cfg)
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "-m", "rhizome.train.launch", "--workspace", str(ws.root), "--config", str(cfg)]
    done = subprocess.run(cmd, cwd=ROOT, env={**env(), "CUDA_VISIBLE_DEVICES": ""}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = ws.list_runs()
    assert len(runs) == 1 and done.stdout.strip().splitlines()[-1] == runs[0]
    run = ws.run_dir(runs[0])
    summary = read_json(run / "summary.json")
    assert summary["processes"] == 2 and summary["steps"] == 2 and math.isfinite(summary["eval_loss"])
    losses = [json.loads(line)["loss"] for line in (run / "events.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "train"]
    assert losses and all(math.isfinite(x) for x in losses)
    adapters = [p for p in run.rglob("adapter_model.safetensors") if "checkpoints" not in p.parts]
    assert adapters == [run / "adapter" / "adapter_model.safetensors"]  # one adapter, written by rank 0
    assert not list(run.rglob("rng_state.pth"))  # per-rank RNG files: rng_state_0.pth, rng_state_1.pth
    assert sorted(p.name for p in run.glob("checkpoints/checkpoint-2/rng_state_*.pth")) == [
        "rng_state_0.pth", "rng_state_1.pth"]


OOM_SCRIPT = """
import os, resource, sys
os.environ["RHIZOME_MEMORY_LIMIT_MB"] = "1000000"  # past the estimate's refusal: a real allocation must fail
import torch, transformers, trl, peft  # imported first: the cap is on training memory only
from rhizome.config import TrainConfig
from rhizome.workspace import UserError
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 3 * 1024**3, size + 3 * 1024**3))
from rhizome.train import train_lora
try:
    train_lora(sys.argv[1], TrainConfig(max_steps=1, batch_size=512, max_length=128, eval_steps=0,
                                        save_steps=0, knowledge_test_size=0, num_threads=1))
except UserError as exc:
    print("USER ERROR:", exc)
"""


def test_out_of_memory_batch_becomes_a_user_error(tmp_path):
    """A real allocation failure (address space capped 3 GiB above the loaded libraries)."""
    ws = write_workspace(tmp_path / "ws", n=24)
    done = subprocess.run([sys.executable, "-c", OOM_SCRIPT, str(ws.root)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    message = done.stdout.strip().splitlines()[-1]
    assert message.startswith("USER ERROR: out of memory with batch_size=512") and "lower batch_size" in message
    status = read_json(ws.run_dir(ws.list_runs()[0]) / "status.json")
    assert status["state"] == "failed"
