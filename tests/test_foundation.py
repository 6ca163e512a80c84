"""The shared foundation: records, workspace writes, configs, and the gradio-free core."""
import json
import subprocess
import sys

import pytest

from rhizome.config import BuildConfig, TrainConfig
from rhizome.records import Example, Message, Record, stable_id
from rhizome.workspace import UserError, read_jsonl, write_jsonl


# Every module of the core, found by walking the package (a new module is covered without a
# change here); only the UI (`rhizome.ui`) may import gradio.
# (Files, not pkgutil.walk_packages: walking imports each package it descends into, the UI too.)
IMPORT_ALL_BUT_UI = """
import importlib, pathlib, sys
import rhizome
root = pathlib.Path(rhizome.__file__).parent
names = [".".join(("rhizome", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
         for p in sorted(root.rglob("*.py")) if p.relative_to(root).parts[0] != "ui"]
for name in names:
    importlib.import_module(name)
print(len(names), "gradio" in sys.modules)
"""
@pytest.mark.slow
def test_no_core_module_imports_gradio():
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL_BUT_UI], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    count, imported = out.stdout.split()
    assert int(count) > 60 and imported == "False"


def test_record_round_trip_and_stable_id():
    rec = Record(id=stable_id("a", 1), source="jsonl", kind="conversation", title="t",
                 messages=[Message("user", "hi"), Message("assistant", "hello")], origin={"file": "x.jsonl", "index": 0})
    assert Record.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    assert stable_id("a", 1) == stable_id("a", 1) != stable_id("a", 2)
    with pytest.raises(ValueError):
        Record(id="x", source="text", kind="document")


def test_example_round_trip():
    ex = Example(id="e", messages=[Message("user", "q"), Message("assistant", "a")], themes=["bread"], weight=1.5)
    assert Example.from_dict(ex.to_dict(detailed=True)) == ex
    assert ex.response_text() == "a" and ex.prompt_text() == "q"


def test_jsonl_write_is_atomic_and_readable(tmp_path):
    path = tmp_path / "d" / "rows.jsonl"
    assert write_jsonl(path, ({"i": i} for i in range(3))) == 3
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]

    def failing_rows():
        yield {"i": 9}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, failing_rows())
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2]  # the old file survives whole
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]  # no temp file left


def test_config_yaml_round_trip_and_validation(tmp_path):
    cfg = TrainConfig(max_steps=7, lora_r=4, target_modules=["q_proj"])
    cfg.save_yaml(tmp_path / "c.yaml")
    assert TrainConfig.load_yaml(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("max_stepz: 3\n")
    with pytest.raises(UserError, match="max_stepz"):
        TrainConfig.load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="split"):
        BuildConfig(split=(0.5, 0.5, 0.5))
