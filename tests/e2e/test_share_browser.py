"""Two people in two browsers, signed in to one shared app: each sees only their own material.

The app runs with two `--auth` users; each browser context signs in through Gradio's login
form, uploads a note of its own in the Data tab, and after a reload sees its own file in the
ingest report and never the other person's.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2"}


@pytest.fixture(scope="module")
def shared_url(browser, launch_app, tmp_path_factory):
    auth = [arg for user, password in USERS.items() for arg in ("--auth", f"{user}:{password}")]
    with launch_app(tmp_path_factory.mktemp("e2e-share") / "ws", "app_share_server.log", *auth) as url:
        yield url


def sign_in(browser, url: str, user: str):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url, wait_until="domcontentloaded")
    page.locator("input[type=text], input:not([type])").first.fill(user)
    page.locator("input[type=password]").first.fill(USERS[user])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#rz-pipeline", timeout=60_000)
    return context, page


def upload_note(page, path) -> None:
    page.locator("#rz-upload input[type=file]").set_input_files([str(path)])
    page.wait_for_selector(f"#rz-upload >> text={path.name}")
    page.locator("#rz-ingest").click()
    # the file name shows in the progress bar first; the status cell once it is ingested
    page.wait_for_function("() => (document.querySelector('#rz-ingest-report')?.innerText || '').includes('✓ ok')",
                           timeout=60_000)
    assert path.name in page.locator("#rz-ingest-report").inner_text()


def test_each_person_sees_only_their_own_sources(browser, shared_url, tmp_path):
    pages = {}
    for user in USERS:
        note = tmp_path / f"{user}-private-note.md"
        note.write_text(f"# {user}'s note\n\nThings only {user} should ever read: the garden, the sea.\n")
        context, page = sign_in(browser, shared_url, user)
        upload_note(page, note)
        pages[user] = (context, page)
    try:
        for user, (context, page) in pages.items():
            page.reload(wait_until="domcontentloaded")
            page.wait_for_selector("#rz-pipeline", timeout=60_000)
            report = page.locator("#rz-ingest-report")
            report.filter(has_text=f"{user}-private-note.md").wait_for(timeout=30_000)
            other = next(u for u in USERS if u != user)
            assert f"{other}-private-note.md" not in (report.text_content() or "")  # hidden cells too
            assert "1 file" in page.locator("#rz-pipeline").inner_text()
            page.screenshot(path=str(ARTIFACTS / f"share_{user}.png"), full_page=True)
    finally:
        for context, _ in pages.values():
            context.close()
