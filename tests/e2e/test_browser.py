"""End to end in a real browser: upload a ChatGPT export, build, see the theme chart, train a few
steps and watch the progress advance, chat and get an answer with sources, export.

The tests share one page and run in order, like a person working through the tabs. Each saves
a screenshot of its tab under tests/artifacts/.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

SAMPLE_EXPORT = ROOT / "assets" / "sample" / "chatgpt" / "conversations.json"
SAMPLE_NOTES = ROOT / "assets" / "sample" / "notes"


def shot(page, name: str) -> None:
    page.wait_for_timeout(400)  # let plotly and transitions settle
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=re.compile(name)).first.click()


def set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def test_upload_shows_ingest_report(page):
    uploads = [SAMPLE_EXPORT, *sorted(SAMPLE_NOTES.glob("*.md"))]
    assert SAMPLE_EXPORT.is_file(), "the sample ChatGPT export is part of the repo"
    page.locator("#rz-upload input[type=file]").set_input_files([str(p) for p in uploads])
    page.wait_for_selector("#rz-upload >> text=conversations.json")
    page.locator("#rz-ingest").click()
    report = page.locator("#rz-ingest-report")
    # The file name shows in the progress bar too; the status cell only once the table is in.
    page.wait_for_function("() => (document.querySelector('#rz-ingest-report')?.innerText || '').includes('✓ ok')",
                           timeout=60_000)
    assert "conversations.json" in report.inner_text()
    summary = page.locator("#rz-ingest-summary").inner_text()
    assert "records in corpus" in summary.lower()
    shot(page, "1_data_import")


def test_build_then_theme_chart_renders(page):
    page.get_by_role("tab", name="Build dataset").click()
    page.locator("#rz-build-method input").click()  # tfidf themes: the fastest build
    page.get_by_role("option", name="TF-IDF (fastest)").click()
    page.locator("#rz-build").click()
    page.locator("#rz-build-result").get_by_text("Dataset ready").wait_for(timeout=180_000)
    assert re.search(r"\d+\s*train", page.locator("#rz-build-result").inner_text(), re.I)
    shot(page, "2_data_build")
    open_tab(page, "Themes")
    chart = page.locator("#rz-theme-chart .js-plotly-plot")
    chart.wait_for(timeout=30_000)
    page.locator("#rz-theme-chart g.trace.bars").first.wait_for(timeout=30_000)
    assert page.locator("#rz-theme-chart g.trace.bars").count() == 2  # before and after IPF
    shot(page, "3_themes")


def test_curation_decision_is_saved(page):
    """Reject one built example; the decision lands in curation.sqlite and shows in the table."""
    open_tab(page, "Data")
    page.get_by_role("tab", name="Curate examples").click()
    table = page.locator("#rz-curate-table")
    first_cell = table.get_by_role("gridcell").nth(4)  # first example, its prompt
    first_cell.wait_for()
    first_cell.click()
    page.wait_for_function("() => (document.querySelector('#rz-curate-id textarea, #rz-curate-id input')?.value || '').length > 0")
    page.locator("#rz-curate-reject").click()
    page.locator("#rz-curate-feedback").get_by_text("rejected").wait_for()
    page.wait_for_function("() => document.querySelector('#rz-curate-table').innerText.includes('✗ rejected')")
    shot(page, "2b_data_curate")


def _watch_progress(page, steps_seen: set, until, limit: float = 180) -> str:
    """Poll the Train tab's progress bar, noting each step shown, until `until(text)` holds."""
    progress = page.locator("#rz-train-progress .rz-progress")
    deadline = time.time() + limit
    while time.time() < deadline:
        text = progress.inner_text()
        steps_seen.add(int(progress.get_attribute("data-step") or 0))
        if until(text) or "Failed" in text:
            return text
        page.wait_for_timeout(400)
    return progress.inner_text()


def test_training_progress_advances_and_survives_a_reload(page):
    open_tab(page, "Train")
    page.wait_for_selector("#rz-train-max-steps input")
    page.locator("#rz-train-advanced").get_by_text("Sampling, evaluation, checkpoints").click()
    # tiny settings: 3 steps of 2 short examples, one evaluation and one checkpoint at the end
    for elem, value in (("rz-train-max-steps", 3), ("rz-train-batch-size", 2), ("rz-train-max-length", 96),
                        ("rz-train-logging-steps", 1), ("rz-train-eval-steps", 3), ("rz-train-save-steps", 3),
                        ("rz-train-knowledge-test-size", 1)):
        set_number(page, elem, value)
    cli = page.locator("#rz-train-cli")
    page.wait_for_function("() => document.querySelector('#rz-train-cli').innerText.includes('--max-steps 3')")
    assert "python -m rhizome train" in cli.inner_text()
    page.locator("#rz-train-start").click()
    steps_seen: set[int] = set()
    text = _watch_progress(page, steps_seen, lambda t: "Training" in t and max(steps_seen) >= 1 or "Finished" in t)
    run_id = re.search(r"\d{8}-\d{6}", text).group(0)
    # reload mid-run: the new page finds the running job and follows it to the end
    page.reload(wait_until="domcontentloaded")
    open_tab(page, "Train")
    page.wait_for_function(f"() => document.querySelector('#rz-train-progress')?.innerText.includes('{run_id}')")
    text = _watch_progress(page, steps_seen, lambda t: "Finished" in t)
    assert "Finished" in text, text
    assert max(steps_seen) == 3 and len(steps_seen - {0}) >= 2, f"progress did not advance: {sorted(steps_seen)}"
    page.locator("#rz-train-plot .js-plotly-plot").wait_for()
    page.locator("#rz-pipeline").get_by_text("1 LoRA run").wait_for(timeout=20_000)
    shot(page, "4_train")


def test_chat_answers_with_sources(page):
    open_tab(page, "Chat")
    page.locator("#rz-chat-sampling").get_by_text("Sampling").click()
    set_number(page, "rz-chat-max-tokens", 48)  # a short answer keeps the test fast
    page.locator("#rz-chat-input textarea").fill("How do I keep a sourdough starter healthy?")
    page.locator("#rz-chat-send").click()
    page.locator("#rz-sources .rz-source").first.wait_for(timeout=120_000)
    answer = page.locator("#rz-chat-main [data-testid='bot']").last
    answer.wait_for()
    assert len(answer.inner_text().strip()) > 0
    assert page.locator("#rz-sources .rz-source").count() >= 1
    shot(page, "5_chat")


def test_conversation_survives_a_reload(page, app_url):
    """A second turn in the same session; after a page reload both turns and the session are back."""
    bot = "#rz-chat-main [data-testid='bot']"
    page.locator("#rz-chat-input textarea").fill("And how often should I feed it?")
    page.locator("#rz-chat-send").click()
    page.wait_for_function(f"() => document.querySelectorAll(\"{bot}\").length === 2", timeout=120_000)
    page.locator("#rz-chat-status .rz-timing").wait_for(timeout=120_000)
    page.wait_for_function("() => (document.querySelector('#rz-session-pick input')?.value || '')"
                           ".includes('sourdough starter healthy')")  # titled from the first question
    session = page.locator("#rz-session-pick input").input_value()
    page.reload(wait_until="domcontentloaded")
    open_tab(page, "Chat")
    page.wait_for_function(f"() => document.querySelectorAll(\"{bot}\").length === 2", timeout=60_000)
    text = page.locator("#rz-chat-main").inner_text()
    assert "How do I keep a sourdough starter healthy?" in text and "And how often should I feed it?" in text
    assert page.locator("#rz-session-pick input").input_value() == session
    shot(page, "5b_chat_session_reloaded")


@pytest.mark.timeout(240)
def test_export_writes_gguf(page):
    open_tab(page, "Export")
    page.wait_for_function("() => /^\\d{8}-\\d{6}/.test(document.querySelector('#rz-export-run input')?.value || '')")
    page.get_by_text("Q8_0").first.click()
    page.locator("#rz-export").click()
    # the result's notice, not the progress line "exported to …" that comes a moment before it
    page.locator(".rz-ok", has_text="Exported").first.wait_for(timeout=200_000)
    page.wait_for_function("() => (document.querySelector('#rz-export-files')?.innerText || '').includes('.gguf')",
                           timeout=30_000)
    check = page.locator(".rz-ok", has_text="Checked on").first.inner_text()  # the export check, shown
    assert re.search(r"Checked on \d+ prompts .*the F16 GGUF picks the merged model's token \d+%", check), check
    shot(page, "6_export")


def test_tuned_model_hot_swaps_into_chat_side_by_side(page):
    page.get_by_role("button", name=re.compile("Chat with this model")).click()
    page.wait_for_function("() => /\\d{8}-\\d{6}:q8_0/.test(document.querySelector('#rz-chat-model input')?.value || '')")
    page.get_by_text("Also answer with the base model").click()
    page.locator("#rz-chat-base").wait_for()
    page.locator("#rz-chat-input textarea").fill("What should I feed a sourdough starter?")
    page.locator("#rz-chat-send").click()
    # both sides done: one timing line per model (the earlier answer had one)
    page.wait_for_function("() => document.querySelectorAll('#rz-chat-status .rz-timing').length === 2",
                           timeout=120_000)
    for box in ("#rz-chat-main", "#rz-chat-base"):
        assert "What should I feed" in page.locator(box).inner_text()
    assert "q8_0" in page.locator("#rz-chat-status").inner_text()
    shot(page, "7_chat_side_by_side")


@pytest.mark.timeout(300)
def test_eval_tab_compares_base_and_tuned(page):
    """Two document questions, base vs tuned, with and without retrieval: the table's four rows,
    both charts and the answers to read."""
    open_tab(page, "Eval")
    page.wait_for_function("() => /^\\d{8}-\\d{6}/.test(document.querySelector('#rz-eval-run input')?.value || '')")
    set_number(page, "rz-eval-questions", 2)
    page.locator("#rz-eval-go").click()
    page.locator("#rz-eval-status .rz-ok", has_text="Saved in").wait_for(timeout=240_000)
    table = page.locator("#rz-eval-table").inner_text()
    assert table.count("+ retrieval") == 2 and table.count("(no retrieval)") == 2, table
    # drawn from the result (the empty placeholders have no bars): a bar per model row, and
    # better / tie / worse for each tuned row
    for chart, traces in (("#rz-eval-themes", 4), ("#rz-eval-wins", 3)):
        page.locator(f"{chart} g.trace.bars").first.wait_for(timeout=30_000)
        assert page.locator(f"{chart} g.trace.bars").count() == traces, chart
    assert page.locator("#rz-eval-answers").get_by_role("gridcell").count() >= 2 * 4 * 6  # 2 questions x 4 rows
    shot(page, "9_eval")


def test_spoken_question_is_transcribed_and_answered_aloud(page, tmp_path):
    """Talk mode: an uploaded recording goes through the offline STT (Moonshine) into the chat,
    and the answer is spoken a sentence at a time while it is still being generated."""
    from rhizome.chat.speech import synthesize

    wav = synthesize("How do I feed my sourdough starter?", tmp_path / "question.wav").path  # hibari's voice
    open_tab(page, "Chat")  # already open after the tests before; this one also runs alone
    page.get_by_label("Also answer with the base model").uncheck()  # one answer is enough here
    page.get_by_label("Speak the answers").check()
    page.get_by_label("Ground answers in my documents").uncheck()  # voice needs no memory index
    if not page.locator("#rz-chat-max-tokens input").first.is_visible():
        page.locator("#rz-chat-sampling").get_by_text("Sampling").click()
    set_number(page, "rz-chat-max-tokens", 96)  # several sentences: speech must start before the end
    bot = "#rz-chat-main [data-testid='bot']"
    before = page.locator(bot).count()
    mic = page.locator("#rz-mic")
    mic.get_by_role("button", name="Upload file").click()
    mic.locator("input[type=file]").set_input_files(str(wav))
    page.locator("#rz-engines").get_by_text("Last question heard by").wait_for(timeout=60_000)
    engines = page.locator("#rz-engines").inner_text()
    assert "moonshine" in engines or "vosk" in engines  # the active engine and why are shown
    transcript = page.locator("#rz-chat-main [data-testid='user']").last.inner_text().lower()
    assert "sourdough starter" in transcript and "feed" in transcript  # the transcript is the question
    if shutil.which("ffmpeg"):  # streamed: the first sentence is out while the answer is being written
        page.wait_for_function("() => document.querySelector('#rz-engines').innerText.includes("
                               "'Speaking the answer with') && !document.querySelector('#rz-chat-status .rz-timing')",
                               timeout=180_000)
    page.wait_for_function(f"() => document.querySelectorAll(\"{bot}\").length > {before} && "
                           "document.querySelector('#rz-chat-status .rz-timing') !== null", timeout=240_000)
    page.locator("#rz-engines").get_by_text("Last answer spoken by").wait_for(timeout=60_000)
    if shutil.which("ffmpeg"):  # streamed a sentence at a time: HLS into a MediaSource, which plays
        page.wait_for_function("() => { const a = document.querySelector('#rz-spoken audio'); return a && "
                               "a.currentSrc.startsWith('blob:') && a.readyState >= 2 && a.currentTime > 0; }",
                               timeout=60_000)
    else:  # gradio cannot stream audio without ffmpeg: one WAV, and the page says why
        page.locator("#rz-spoken a[download$='.wav']").wait_for(timeout=60_000)
        assert "ffmpeg not found" in page.locator("#rz-engines").inner_text()
    shot(page, "8_chat_voice")
