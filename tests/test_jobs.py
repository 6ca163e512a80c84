"""Background jobs and progress events: one helper for every stage the app runs, typed events,
and the core deciding what the UI shows (hardware defaults, invalid settings, label preview)."""
import threading
import time

import pytest

from rhizome import jobs
from rhizome.config import TrainConfig, invalid_fields, train_defaults
from rhizome.events import ConsoleProgress, Event, emit
from rhizome.workspace import UserError


def test_a_background_job_streams_its_events_then_its_result():
    gate = threading.Event()

    def work(job):
        for step in (1, 2):
            emit(job.record, "demo", step, 2, message=f"part {step}", loss=1.0 / step)
            gate.wait(5)
        return "finished"

    job = jobs.run_in_background(work, kind="demo")
    seen = []
    for item in job.updates(poll=0.05):
        if item is not None:
            seen.append(item)
            gate.set()
    job.raise_if_failed()
    assert job.status == "done" and job.result == "finished"
    assert [(e.stage, e.step, e.total, e.message, e.get("loss")) for e in seen] == [
        ("demo", 1, 2, "part 1", 1.0), ("demo", 2, 2, "part 2", 0.5)]
    assert seen == job.events


def test_a_failed_job_re_raises_in_the_callers_thread():
    job = jobs.run_in_background(lambda job: (_ for _ in ()).throw(UserError("no dataset yet")))
    assert list(job.updates()) == []
    with pytest.raises(UserError, match="no dataset yet"):
        job.raise_if_failed()
    assert job.status == "failed" and job.error == "no dataset yet"


def test_a_stopped_job_says_so():
    job = jobs.run_in_background(lambda job: job.stop_event.wait(5) and "stopped early")
    job.stop()
    assert job.wait(5) and job.status == "stopped" and job.result == "stopped early"


def test_build_progress_renders_from_typed_parts_not_message_text():
    """The pipeline names its parts in `part`; a long or odd message is only ever shown, never parsed."""
    from rhizome.ui.common import stage_bars

    t = time.time()
    events = [Event("build", 0, 3, part="load", time=t),
              Event("build", 1, 3, part="embed", time=t + 1),
              Event("embed", 10, 40, message="a message that is much longer than forty characters, really",
                    metrics={"texts_per_s": 55.0, "eta_s": 30.0}, time=t + 2)]
    html = stage_bars(events)
    assert "build: embed" in html and 'data-step="1" data-total="3"' in html
    assert 'data-step="10" data-total="40"' in html and "55 texts/s" in html and "30s left" in html
    assert "✓ load" in html
    done = stage_bars(events + [Event("build", 3, 3, message="done", time=t + 3)], finished=True)
    assert "build: done" in done and "✓ embed" in done


def test_console_progress_shows_rate_and_eta(capsys):
    import io

    out = io.StringIO()
    bar = ConsoleProgress(out)
    bar(Event("embed", 64, 256, metrics={"texts_per_s": 71.5, "eta_s": 125.0}))
    bar.close()
    assert "64/256" in out.getvalue() and "texts/s=71.5" in out.getvalue() and "ETA=2m05s" in out.getvalue()


def test_hardware_defaults_belong_to_the_core_and_the_train_tab_uses_them(ws):
    from rhizome.ui.common import Context
    from rhizome.ui.train import defaults_for

    cpu, gpu = train_defaults("cpu"), train_defaults("cuda")
    assert cpu == TrainConfig() and gpu.batch_size > cpu.batch_size and gpu.max_length > cpu.max_length
    assert train_defaults("cuda", small=True).max_steps == 20
    assert defaults_for(Context(ws), "cuda") == gpu
    assert defaults_for(Context(ws, on_space=True), "cpu") == train_defaults("cpu", small=True)


def test_an_invalid_setting_is_named_not_silently_replaced(ws):
    from rhizome.ui.common import Context
    from rhizome.ui.train import FIELDS, _config, field_checks, preview_command

    assert invalid_fields(TrainConfig, {"lora_r": 0, "max_steps": 5}) == {
        "lora_r": "lora_r must be >= 1 and max_length >= 16"}
    ctx = Context(ws)
    values = [{"model": "bundled", "lora_r": 0, "target_modules": ["q_proj"]}.get(f) for f in FIELDS]
    command, note = preview_command(ctx, *values)
    assert command.startswith("# not runnable") and "lora_r must be     assert command.startswith("# not runnable") and "LoRA r" in notegt;= 1" in note
    checks = dict(zip(FIELDS, field_checks(ctx, *values)))
    assert checks["lora_r"]["is_valid"] is False and "lora_r" in checks["lora_r"]["message"]
    assert all(c["is_valid"] for k, c in checks.items() if k != "lora_r")
    with pytest.raises(UserError, match="lora_r must be >= 1"):
        _config(ctx, *values)
