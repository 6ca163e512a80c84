"""Fast checks of the app: it builds without launching, its command line behaves, the core stays
free of gradio, and the background-job rules (one training per workspace, event re-attach) hold."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rhizome import jobs
from rhizome.workspace import UserError, append_jsonl, write_json

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RHIZOME_AUTH", "SPACE_ID")}
    return subprocess.run([PY, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_app_builds_as_blocks_without_launching(ws):
    import gradio as gr

    from rhizome.ui import build_app

    demo = build_app(ws.root)
    assert isinstance(demo, gr.Blocks)
    assert not demo.is_running
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    for tab in ("Data", "Themes & IPF", "Train", "Chat", "Export"):
        assert tab in labels
    # uploads and recordings must land inside the workspace
    assert Path(os.environ["GRADIO_TEMP_DIR"]) == ws.root / ".uploads"


def test_app_help_lists_the_options():
    out = _run("app.py", "--help")
    assert out.returncode == 0, out.stderr
    for flag in ("--port", "--host", "--workspace", "--share", "--auth"):
        assert flag in out.stdout


def test_share_without_auth_is_refused(tmp_path):
    out = _run("app.py", "--share", "--workspace", str(tmp_path / "w"))
    assert out.returncode == 2
    assert "--auth" in out.stderr and "refusing" in out.stderr
    bad = _run("app.py", "--auth", "nocolon", "--workspace", str(tmp_path / "w"))
    assert bad.returncode == 2 and "user:password" in bad.stderr


def test_jobs_refuse_a_second_training_in_this_process(ws):
    gate = threading.Event()
    job = jobs.start_job(ws, "train", lambda j: gate.wait(10) and "run-a", run_id="run-a")
    try:
        with pytest.raises(UserError, match="already running"):
            jobs.start_training(ws)
        with pytest.raises(UserError, match="already running"):
            jobs.start_job(ws, "train", lambda j: None)
        assert jobs.active_job(ws).run_id == "run-a"
        assert jobs.training_lock(ws)["run_id"] == "run-a"
        assert jobs.stop_training(ws) == "run-a" and job.stop_event.is_set()
    finally:
        gate.set()
        job.wait(10)
    assert job.status == "stopped" and job.result == "run-a"
    assert jobs.training_lock(ws) is None and jobs.active_job(ws) is None


HOLD_LOCK = """
import sys, time
from rhizome.train.runs import TrainingLock
from rhizome.workspace import Workspace
lock = TrainingLock(Workspace(sys.argv[1])).acquire(sys.argv[2])
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def other_process_training(ws):
    """Another process holding the trainer's own lock, as a CLI `train` would."""
    proc = subprocess.Popen([PY, "-c", HOLD_LOCK, str(ws.root), "cli-run"], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.stdin.close()
    proc.wait(10)


def test_training_in_another_process_is_seen_refused_and_stoppable(ws, other_process_training):
    from rhizome.train import runs

    held = jobs.training_lock(ws)
    assert held["run_id"] == "cli-run" and held["pid"] == other_process_training.pid
    with pytest.raises(UserError, match="cli-run"):
        jobs.start_training(ws)
    assert jobs.run_status(ws, "cli-run") == "running"
    assert jobs.stop_training(ws) == "cli-run"
    assert runs.stop_requested(ws.run_dir("cli-run"))  # the trainer polls this file
    other_process_training.stdin.close()
    other_process_training.wait(10)
    assert jobs.training_lock(ws) is None  # the kernel dropped the flock with the process


def test_job_failure_is_recorded_not_raised(ws):
    def boom(job):
        job.record({"stage": "train", "step": 1, "total": 2})
        raise UserError("dataset/train.jsonl is empty: build the dataset first")

    job = jobs.start_job(ws, "export", boom)
    job.wait(10)
    assert job.status == "failed" and "build the dataset" in job.error
    assert job.events[0]["step"] == 1


def test_a_reloaded_page_reads_a_running_log_incrementally(ws, other_process_training):
    """The Train tab's view: the log so far, then only the lines appended since, never a torn one."""
    import gradio as gr

    from rhizome.ui.common import Context
    from rhizome.ui.train_view import current_run, poll

    ctx = Context(ws)
    from rhizome.train import runs

    log = runs.events_path(ws.run_dir("cli-run"))
    append_jsonl(log, {"kind": "train", "step": 1, "total": 3, "loss": 2.0})
    assert current_run(ctx) == "cli-run"  # a fresh page picks the running run
    progress, _, _, _, _, state = poll(ctx, "cli-run", None)
    assert 'data-step="1"' in progress and "Training" in progress
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "train", "step": 2, "total": 3, "loss": 1.5}) + "\n")
        fh.write('{"kind": "train", "step": 3')  # a line still being written is not read yet
    progress, *_, state = poll(ctx, "cli-run", state)
    assert 'data-step="2"' in progress and [e["step"] for e in state["events"]] == [1, 2]
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(', "total": 3, "loss": 1.2}\n')
    from rhizome.train.memory import MemoryEstimate

    memory = MemoryEstimate("cpu", 134_515_008, 513.1, 28.1, 3510.0, 2016.0, 900.0, 7664.0, 20480.0)
    write_json(ws.run_dir("cli-run") / "status.json", {"state": "finished", "pid": other_process_training.pid,
                                                       "memory": memory.as_dict()})
    other_process_training.stdin.close()
    other_process_training.wait(10)
    progress, *_, state = poll(ctx, "cli-run", state)
    assert 'data-step="3"' in progress and "Finished" in progress
    assert "memory estimate 7.5 GB of 20.0 GB available" in progress  # what the run settled before training
    assert jobs.run_status(ws, "cli-run") == "done"
    unchanged = poll(ctx, "cli-run", state)  # nothing new: the page is not redrawn
    assert list(unchanged[:5]) == [gr.skip()] * 5


def test_train_tab_cli_command_matches_cli_flags(ws):
    from rhizome.config import TrainConfig
    from rhizome.ui.common import Context
    from rhizome.ui.train import cli_command

    cmd = cli_command(Context(ws), TrainConfig(max_steps=5, weighted_sampling=False, lora_r=8,
                                               target_modules=["q_proj", "v_proj"]))
    assert cmd.startswith(f"python -m rhizome train --workspace {ws.root}")
    assert "--max-steps 5" in cmd and "--no-weighted-sampling" in cmd and "--lora-r 8" in cmd
    assert "--target-modules q_proj,v_proj" in cmd
    from rhizome.__main__ import build_parser  # the flags really exist in the CLI
    args = build_parser().parse_args(cmd.split()[3:])
    assert args.max_steps == 5 and args.weighted_sampling is False and args.target_modules == ["q_proj", "v_proj"]


def test_ui_refuses_paths_outside_the_workspace(ws, tmp_path, monkeypatch):
    from rhizome.ui.common import Context

    from rhizome.ui.train import FIELDS, _config

    ctx = Context(ws)
    assert ctx.inside("models/my.gguf") == ws.root / "models" / "my.gguf"
    for bad in ("/etc/passwd", "../outside", str(tmp_path / "elsewhere.gguf")):
        with pytest.raises(UserError, match="outside the workspace"):
            ctx.inside(bad)
    for bad in ("../x", "..", "a/b", ".hidden"):
        with pytest.raises(UserError, match="not a run"):
            ctx.run_id(bad)
    # the Train tab's model box: a path outside the workspace is refused, a relative one is
    # taken inside the workspace (never relative to the app's own folder), an HF id passes
    defaults = {"target_modules": ["q_proj"]}
    values = lambda model: [model if f == "model" else defaults.get(f) for f in FIELDS]  # noqa: E731
    with pytest.raises(UserError, match="outside the workspace"):
        _config(ctx, *values(str(tmp_path / "elsewhere.gguf")))
    monkeypatch.chdir(ROOT)  # "rhizome" exists relative to the app's folder, yet must not be read from there
    assert _config(ctx, *values("rhizome")).model == str(ws.root / "rhizome")
    assert _config(ctx, *values("HuggingFaceTB/SmolLM2-360M-Instruct")).model == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert _config(ctx, *values("bundled")).trust_remote_code is False


def test_space_mode_binds_all_interfaces_with_small_defaults(ws, monkeypatch):
    import importlib.util

    from rhizome.ui import build_app

    spec = importlib.util.spec_from_file_location("rhizome_app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert app.parse_args([]).host == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "someone/rhizome")
    assert app.parse_args([]).host == "0.0.0.0"
    demo = build_app(ws.root)
    steps = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "rz-train-max-steps")
    assert steps.value == 20  # small enough to finish on a shared CPU
