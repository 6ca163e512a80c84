"""The CLI contract: --help everywhere, exit 2 on user errors, and `demo` end to end."""
import json
import subprocess
import sys

import pytest

COMMANDS = ["ingest", "build", "train", "export", "chat", "eval", "demo"]


def run_cli(*args, cwd=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "rhizome", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0 and "--workspace" in out.stdout


def test_flags_carry_config_docs():
    out = run_cli("build", "--help")
    assert "--dedup-similarity-threshold" in out.stdout and "near-duplicates" in out.stdout


def test_bad_flag_and_missing_input_exit_2(tmp_path):
    assert run_cli("build", "--no-such-flag").returncode == 2
    out = run_cli("ingest", "--workspace", str(tmp_path / "ws"), str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("build", "--workspace", str(tmp_path / "ws"), "--theme-temperature", "3")
    assert out.returncode == 2 and "theme_temperature" in out.stderr
@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    ws = tmp_path / "demo"
    out = run_cli("demo", "--workspace", str(ws), "--steps", "4")
    assert out.returncode == 0, out.stderr[-3000:]
    assert (ws / "corpus.jsonl").is_file() and (ws / "ingest_report.json").is_file()
    for split in ("train", "validation", "test"):
        assert (ws / "dataset" / f"{split}.jsonl").stat().st_size > 0
    meta = json.loads((ws / "dataset" / "dataset_metadata.json").read_text())
    assert meta["counts"]["train"] > 0
    assert any((ws / "memory").iterdir())
    (run,) = [p for p in (ws / "runs").iterdir() if p.is_dir()]
    assert (run / "config.yaml").is_file() and (run / "events.jsonl").is_file()
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert list((run / "export").glob("*.gguf"))
    assert "A:" in out.stdout
    # chat --json against the trained run answers with sources
    chat = run_cli("chat", "--workspace", str(ws), "--json", "--model", run.name, "--max-tokens", "24",
                   "How do I feed my sourdough starter?")
    assert chat.returncode == 0, chat.stderr[-2000:]
    payload = json.loads(chat.stdout)
    assert payload["answer"].strip() and payload["sources"] and payload["model"]
