"""What every tab shares: the context object, error handling, small HTML pieces, the theme.

Handlers stay thin: widget values -> a config -> one core call -> formatting. `guard` turns a
`UserError` from the core into a `gr.Error` with its one-line message, and any other failure
into a short message (the traceback goes to the server log, never to the page).
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from .. import jobs, slots
from ..events import Event
from ..workspace import UserError, Workspace, read_json

log = logging.getLogger("rhizome.ui")
ASSETS = Path(__file__).resolve().parents[2] / "assets"


@dataclass
class Context:
    """What the tabs need to know about where and how the app runs."""

    home: Workspace
    """The workspace of a single-user app; with sign-in or a demo, see `ws`."""
    on_space: bool = False
    """Running on a Hugging Face Space (CPU): smaller defaults so jobs finish."""
    device: str = "cpu"
    """The training device found when the page loaded (cpu | cuda | mps): it sizes the defaults."""
    samples: Path = field(default_factory=lambda: ASSETS / "sample")
    spaces: Any = None
    """`rhizome.ui.users.Spaces` when several people share the app (sign-in or a demo)."""

    @property
    def ws(self) -> Workspace:
        """The workspace of the request being handled: the signed-in person's (or the demo
        session's) when the app is shared, else `home`. Never another person's: without a
        request (e.g. a thread not started through `contextvars.copy_context`) it raises."""
        return self.home if self.spaces is None else self.spaces.current()

    def run_id(self, value: str) -> str:
        """A run name from the page, refused unless it is a plain folder name under runs/."""
        if not value or "/" in value or "\\" in value or value.startswith(".") or not self.ws.contains(self.ws.run_dir(value)):
            raise UserError(f"{value!r} is not a run of this workspace")
        return value

    def inside(self, value: str | os.PathLike) -> Path:
        """A user-typed path resolved against the workspace; refused when it points outside it."""
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.ws.root / path
        if not self.ws.contains(path):
            raise UserError(f"{value} is outside the workspace; put it under {self.ws.root} (e.g. in models/)")
        return path.resolve()


def owned_output(ctx: Context, path: str | os.PathLike) -> str:
    """Every file a handler returns goes out through this: when the app is shared the file is
    put into gradio's cache as the requester's own (`Spaces.own_output`), and gradio's file
    route serves it to them only; a single-user app returns the path for gradio to copy."""
    return str(path) if ctx.spaces is None else ctx.spaces.own_output(path)


def discard_uploads(ctx: Context, paths: list[str]) -> None:
    """Ingest copied each upload into sources/, so gradio's upload folder (`<hash>/name`) goes,
    unless someone else uploaded the same bytes and still needs it (a shared app)."""
    import shutil

    spaces = ctx.spaces
    upload_root = ctx.ws.root / ".uploads" if spaces is None else spaces.uploads
    for path in paths:
        folder = Path(path).resolve().parent
        if folder != upload_root and upload_root in folder.parents and (
                spaces is None or spaces.release_upload(path, spaces.key())):
            shutil.rmtree(folder, ignore_errors=True)


def guard(fn: Callable) -> Callable:
    """Wrap a handler so the user sees one clear line, never a traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _as_gr_error(exc) from None
        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_gr_error(exc) from None
    return call


def _as_gr_error(exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UserError):
        return gr.Error(str(exc), title="Please check")
    log.exception("unexpected error in a UI handler")
    return gr.Error(f"Unexpected {type(exc).__name__}: {exc}. Details are in the server log.", title="Something went wrong")


def run_streaming(call: Callable[[Callable[[Event], None]], Any], poll: float = 0.4, writes: Workspace | None = None
                  ) -> Iterator[tuple[list[Event], Any, bool]]:
    """Run `call(progress)` as a background job; yield (events so far, result, finished) as it works.

    The work survives a closed page (the job goes on and writes its files); the page just
    stops hearing about it. It yields the CPU to a chat answer (`cpu.background_work`).
    `writes`: the workspace the work writes; the job holds its write slot while it runs (so a
    closed page does not free the slot early). A failure is re-raised here, where `guard` formats it.
    """
    def work(job: jobs.Job) -> Any:
        if writes is None:
            return call(job.record)
        with slots.workspace_write(writes, job.record):
            return call(job.record)

    job = jobs.run_in_background(work, kind="stage", yields=True)
    for _ in job.updates(poll):
        yield job.events, None, False
    job.raise_if_failed()
    yield job.events, job.result, True


def stage_bars(events: list[Event], finished: bool = False) -> str:
    """An overall bar for a pipeline, one small bar for the part at work, a chip per finished part.

    A pipeline (the build) announces each part it enters with `Event.part`; events of other
    stages (e.g. `embed` inside the build, or an export's own steps) report their own step/total.
    """
    parts: dict[str, dict[str, Any]] = {}
    top: Event | None = None
    for event in events:
        name, step, total = event.stage, event.step, event.total
        if event.part is not None or (top is not None and event.stage == top.stage):
            top = event
            if event.part is None:
                continue  # the pipeline's closing event
            name, step, total = event.part, 0, 0
        st = parts.setdefault(name, {"start": event.time, "step": 0, "total": 0})
        if total:
            st["step"], st["total"] = step, total
        st["end"] = event.time
        detail = _detail(event) if event is not top else ""
        if detail:
            st["message"] = detail
    names = list(parts)
    chips, current = [], ""
    for i, name in enumerate(names):
        st = parts[name]
        end = parts[names[i + 1]]["start"] if i + 1 < len(names) else st["end"]
        if finished or i < len(names) - 1:
            took = f"{end - st['start']:.1f}s" if end > st["start"] else ""
            chips.append(f'<span class="rz-chip">✓ {esc(name.replace("_", " "))} <i>{took}</i></span>')
        else:
            current = progress_bar(min(st["step"], st["total"]), st["total"], name.replace("_", " "),
                                   st.get("message", "working…"))
    head = ""
    if top is not None:
        step = top.total if finished else top.step
        head = progress_bar(step, top.total, f"{top.stage}: {'done' if finished else names[-1] if names else '…'}")
    return head + current + '<div class="rz-chips">' + "".join(chips) + "</div>"


def _detail(event: Event) -> str:
    """The line under a stage's bar: its message, and for an embedding pass its rate and ETA."""
    bits = [event.message] if event.message else []
    if event.get("texts_per_s") is not None:
        bits.append(f"{event.get('texts_per_s'):,.0f} texts/s")
    if event.get("eta_s") is not None and event.step < event.total:
        bits.append(f"about {fmt_seconds(event.get('eta_s'))} left")
    return " · ".join(bits)


# ---- small HTML pieces ----------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cards(items: list[tuple[str, Any]] | list[tuple[str, Any, str]]) -> str:
    """A row of stat cards: (label, value[, hint])."""
    parts = []
    for item in items:
        label, value, hint = (tuple(item) + ("",))[:3]
        parts.append(f'<div class="rz-card"><div class="rz-card-value">{esc(value)}</div>'
                     f'<div class="rz-card-label">{esc(label)}</div>'
                     + (f'<div class="rz-card-hint">{esc(hint)}</div>' if hint else "") + "</div>")
    return f'<div class="rz-cards">{"".join(parts)}</div>'


def notice(text: str, kind: str = "info") -> str:
    """A coloured one-line box: info | ok | warn | error."""
    return f'<div class="rz-notice rz-{kind}">{text}</div>'


def progress_bar(step: int, total: int, label: str = "", detail: str = "") -> str:
    pct = 0 if not total else max(0, min(100, round(100 * step / total)))
    return (f'<div class="rz-progress" data-step="{step}" data-total="{total}">'
            f'<div class="rz-progress-head"><span>{esc(label)}</span><span>{step}/{total} · {pct}%</span></div>'
            f'<div class="rz-progress-track"><div class="rz-progress-fill" style="width:{pct}%"></div></div>'
            f'<div class="rz-progress-detail">{esc(detail)}</div></div>')


def fmt_num(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None else str(value)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ---- the pipeline strip under the header ---------------------------------------------------


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def pipeline_counts(ws: Workspace) -> dict[str, int]:
    """How far this workspace has come: one number per stage."""
    meta = read_json(ws.dataset / "dataset_metadata.json", default={}) or {}
    runs = ws.list_runs()
    return {
        "sources": sum(1 for p in ws.sources.rglob("*") if p.is_file()) if ws.sources.is_dir() else 0,
        "records": _count_lines(ws.corpus),
        "examples": sum(_count_lines(ws.split_path(s)) for s in ("train", "validation", "test")) if meta else 0,
        "runs": len(runs),
        "exports": sum(1 for r in runs if any(ws.run_dir(r).glob("export/*.gguf"))),
    }


def pipeline_html(ws: Workspace) -> str:
    counts = pipeline_counts(ws)
    steps = [("Sources", counts["sources"], "file"), ("Corpus", counts["records"], "record"),
             ("Dataset", counts["examples"], "example"), ("Runs", counts["runs"], "LoRA run"),
             ("Exports", counts["exports"], "GGUF")]
    chips = []
    for name, value, unit in steps:
        state = "done" if value else "todo"
        unit = unit if value == 1 or unit == "GGUF" else unit + "s"
        chips.append(f'<div class="rz-step rz-{state}"><b>{name}</b><span>{value:,} {unit}</span></div>')
    return '<div class="rz-pipeline">' + '<div class="rz-arrow">→</div>'.join(chips) + "</div>"


# A small rhizome: a stem with roots branching out (inline SVG: no emoji font or network needed).
LOGO = ('<svg width="40" height="40" viewBox="0 0 40 40" fill="none" stroke="#a7f3d0" stroke-width="2.4" '
        'stroke-linecap="round"><path d="M20 4v14"/><path d="M20 10c-4-4-9-3-10-1 3 2 7 3 10 1z" fill="#34d399" '
        'stroke="#34d399"/><path d="M20 8c3-4 8-4 10-2-2 3-7 4-10 2z" fill="#6ee7b7" stroke="#6ee7b7"/>'
        '<path d="M4 22h32"/><path d="M20 22v14M20 28l-7 6M20 28l7 6M11 22l-5 7M29 22l5 7M13 22l2 8M27 22l-2 8"/></svg>')


def header_html(ctx: Context, hardware: str = "detecting hardware…") -> str:
    where = "Hugging Face Space (CPU, small defaults)" if ctx.on_space else "local"
    return (
        f'<div class="rz-header"><div class="rz-brand"><span class="rz-logo">{LOGO}</span>'
        '<div><h1>Rhizome</h1><p>Your own material → a clean dataset → your own fine-tuned model → '
        'a voice chat grounded in your documents. Everything runs offline on this machine.</p></div></div>'
        f'<div class="rz-badges"><span class="rz-badge" title="workspace folder">workspace · {esc(ctx.ws.root)}</span>'
        f'<span class="rz-badge" id="rz-hardware">{esc(hardware)}</span>'
        f'<span class="rz-badge">{esc(where)}</span></div></div>'
    )


def theme() -> gr.themes.Base:
    """System fonts only: the page must not fetch web fonts (the app works offline)."""
    system = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    return gr.themes.Soft(primary_hue="emerald", secondary_hue="teal", neutral_hue="slate",
                          font=system, font_mono=mono).set(
        block_radius="10px", button_large_radius="8px", button_small_radius="6px")


CSS = (Path(__file__).with_name("style.css")).read_text(encoding="utf-8")
