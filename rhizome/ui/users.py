"""Whose workspace a request works in, and which files a request may download.

Three modes:
- `single`: no sign-in, one workspace (the local default, as before);
- `users`: several `--auth` people, each in `<workspace>/users/<name>/`;
- `demo`: a public demo (a Space or `--demo`): each browser session gets a temporary
  workspace seeded with the built sample, removed after it has been idle for a while.

`Spaces.current()` answers "which workspace?" for the request being handled. Gradio puts the
request of the event it is running into `gradio.context.LocalContext.request` (a contextvar set
around each call of a handler, and around each step of a streaming one), so `Context.ws` can
resolve per request without any handler being changed. A thread that a handler starts must run
in a copy of the handler's context (`contextvars.copy_context().run`); without a request the
answer is an error, never somebody else's workspace.

`filegate.FileGate` guards gradio's file route with `Spaces.may_read`. A file a handler returns
(an export's GGUF, a spoken answer's WAV) goes through `Spaces.own_output`, which puts it into
gradio's cache under a name of its own and records whose request it answered; gradio serves an
already-cached path as it is, and the gate gives it to that owner only.
"""
from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..workspace import UserError, Workspace

log = logging.getLogger("rhizome.ui")
MODES = ("single", "users", "demo")
# Every chat event (Chat tab and /chat API) of every person shares one queue. llama.cpp answers
# one at a time on a CPU, so two slots: one generating, one retrieving or speaking; the rest wait
# in gradio's queue, which shows each person their place, and no one's page blocks another's.
CHAT_QUEUE = {"concurrency_id": "chat", "concurrency_limit": 2}
# The stages that write a workspace (ingest, build, export, the API's /upload and /build) take
# turns per workspace (`slots.workspace_write`), so one person's build never holds up another's.
# Gradio's queue caps how many people's run at once (each yields the CPU to chat answers).
WRITE_QUEUE = {"concurrency_id": "workspace-write", "concurrency_limit": 4}


class UserWorkspace(Workspace):
    """A person's workspace; `contains` also accepts the uploads they made (which gradio keeps in
    its one shared upload folder until the Data tab copies them into `sources/`)."""

    def __init__(self, root: str | Path, owns: Callable[[Path], bool]) -> None:
        super().__init__(root)
        object.__setattr__(self, "_owns", owns)

    def contains(self, path: Any) -> bool:
        return super().contains(path) or self._owns(Path(path).expanduser().resolve())


class Spaces:
    """Maps a request to its workspace (see the module docstring) and remembers upload owners."""

    def __init__(self, root: str | Path, mode: str = "single", uploads: str | Path | None = None,
                 template: Callable[[Path], None] | None = None, idle_s: float = 1800.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.root, self.idle_s = mode, Path(root).expanduser().resolve(), idle_s
        self.uploads = Path(uploads).resolve() if uploads else self.root / ".uploads"
        self.people = self.root / ("sessions" if mode == "demo" else "users")
        self.template = template  # demo: fills a new session's folder (copies the prepared sample)
        self.building = True  # while the page is built there is no request: an empty workspace answers
        self._spaces: dict[str, UserWorkspace] = {}
        self._used: dict[str, float] = {}
        self._owners: dict[Path, set[str]] = {}  # uploads: who uploaded each
        self._unclaimed: dict[Path, int] = {}  # a demo's anonymous uploads not yet used by a session
        self._outputs: dict[Path, str] = {}  # files handlers returned, in gradio's cache
        self._public: set[Path] = set()  # what gradio cached while the page was built
        self._sessions: dict[str, str] = {}  # gradio page session hash -> who uses it (users mode)
        self._secret = secrets.token_bytes(32)  # output folder names nobody can guess
        self._lock = threading.Lock()  # opening a workspace
        self._owners_lock = threading.Lock()

    # ---- which workspace ------------------------------------------------------------------

    def current(self) -> Workspace:
        key = self.key()
        if key is None:
            if self.building:
                return Workspace(self.root / ".blank").ensure()
            raise UserError("this action has no signed-in session; please reload the page")
        self._used[key] = time.time()
        space = self._spaces.get(key)
        if space is None:
            with self._lock:
                space = self._spaces.get(key) or self._open(key)
        return space

    def key(self) -> str | None:
        """The signed-in user (users mode) or the browser session (demo mode) of this request."""
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
        if request is None:
            return None
        if self.mode == "users":
            return getattr(request, "username", None) or None
        session = getattr(request, "session_hash", None)
        return f"s-{session}" if session and session.replace("-", "").replace("_", "").isalnum() else None

    def _open(self, key: str) -> UserWorkspace:
        from ..accounts import check_user_name

        folder = self.people / check_user_name(key)
        fresh = not folder.exists()
        space = UserWorkspace(folder, owns=lambda p, k=key: self.claim(p, k))
        if fresh and self.template is not None:
            self.template(folder)
        space.ensure()
        self._spaces[key] = space
        return space

    # ---- who may read which file -------------------------------------------------------------

    def record_upload(self, path: str | Path, user: str | None) -> None:
        """`user` uploaded `path` (None: an anonymous upload, in a demo). Gradio names an upload
        by its content, so two people who upload the same bytes share one path: each owns it."""
        path = Path(path).resolve()
        with self._owners_lock:
            self._owners.setdefault(path, set())
            if user is None:
                self._unclaimed[path] = self._unclaimed.get(path, 0) + 1
            else:
                self._owners[path].add(user)

    def claim(self, path: Path, key: str) -> bool:
        """Whether `key` owns the upload `path`. An anonymous upload (a demo without sign-in:
        gradio's upload route knows no session) belongs to the first session that uses it."""
        with self._owners_lock:
            owners = self._owners.get(path)
            if owners is None:
                return False
            if key not in owners and self.mode == "demo" and self._unclaimed.get(path, 0) > 0:
                self._unclaimed[path] -= 1
                owners.add(key)
            return key in owners

    def release_upload(self, path: str | Path, key: str | None) -> bool:
        """`key` is done with its upload `path` (ingested); True when no one else still holds it,
        so gradio's copy may be deleted."""
        path = Path(path).resolve()
        with self._owners_lock:
            owners = self._owners.get(path)
            if owners is None:
                return True
            owners.discard(key)
            if owners or self._unclaimed.get(path, 0):
                return False
            del self._owners[path]
            self._unclaimed.pop(path, None)
            return True

    def claim_session(self, session: str, user: str | None) -> bool:
        """Whether signed-in `user` may use gradio's page session `session` (users mode): the
        first person to use a session hash owns it; signed-out clients own none."""
        if self.mode != "users":
            return True
        if user is None:
            return False
        with self._owners_lock:
            return self._sessions.setdefault(session, user) == user

    def may_read(self, user: str | None, target: Path) -> bool:
        """Whether a signed-in `user` may download `target` through gradio's file route.

        In `users` mode gradio's cache (the upload folder) is closed by default: an upload is
        its uploader's, a returned file its requester's, and only what gradio cached while the
        page was built (component values) is everyone's. A demo's file route knows no session,
        so there a cached file's unguessable folder name is what keeps it private.
        """
        if self.mode == "single":
            return True
        if _inside(target, self.people):
            return self.mode == "users" and user is not None and _inside(target, self.people / user)
        if self.mode != "users":
            return True
        if target in self._outputs:
            return user is not None and self._outputs[target] == user
        if target in self._owners:
            return user is not None and user in self._owners[target]
        if _inside(target, self.uploads):
            return target in self._public
        return True  # outside the workspace and the cache: gradio's own rules decide

    def mark_public(self, paths: Any) -> None:
        """Files gradio cached while building the page (the same for everyone)."""
        self._public.update(Path(p).resolve() for p in paths)

    def own_output(self, path: str | Path) -> str:
        """`path` (a file a handler returns) as a file in gradio's cache owned by this request's
        person (users mode) or session (demo). Gradio serves a path already in its cache as is,
        so the path returned here is the one the page downloads, and `may_read` guards it.

        The folder is a keyed hash of the owner and the file's identity: the same file handed to
        the same person again reuses its copy, and no one can derive another person's folder.
        The copy is a hard link where the file system allows it (a GGUF is large).
        """
        key = self.key()
        if key is None:
            raise UserError("this action has no signed-in session; please reload the page")
        source = Path(path).resolve()
        if not self.current().contains(source):  # a handler's bug must not hand out someone else's file
            raise UserError(f"{source.name} is not a file of your workspace")
        stat = source.stat()
        ident = f"{key}\0{source}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        folder = self.uploads / hmac.new(self._secret, ident, hashlib.sha256).hexdigest()
        target = folder / source.name
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source, target)
        with self._owners_lock:
            self._outputs[target] = key
        return str(target)

    # ---- demo: temporary workspaces ----------------------------------------------------------

    def sweep(self, busy: Callable[[Workspace], bool] = lambda ws: False) -> list[str]:
        """Remove demo workspaces idle for longer than `idle_s` (unless `busy`); returns their keys."""
        if self.mode != "demo":
            return []
        now, gone = time.time(), []
        for key, last in list(self._used.items()):
            space = self._spaces.get(key)
            if now - last < self.idle_s or space is None or busy(space):
                continue
            with self._lock:
                self._spaces.pop(key, None)
                self._used.pop(key, None)
            shutil.rmtree(space.root, ignore_errors=True)
            self._drop_outputs(key)
            gone.append(key)
        return gone

    def _drop_outputs(self, key: str) -> None:
        with self._owners_lock:
            mine = [p for p, owner in self._outputs.items() if owner == key]
            for path in mine:
                del self._outputs[path]
        for path in mine:
            shutil.rmtree(path.parent, ignore_errors=True)

    def start_sweeper(self, every: float = 60.0) -> threading.Thread:
        from ..jobs import active_job

        def loop() -> None:
            while True:
                time.sleep(every)
                try:
                    self.sweep(busy=lambda ws: active_job(ws, "train") is not None)
                except Exception:  # the sweeper must outlive one bad folder
                    log.exception("demo sweeper")
        thread = threading.Thread(target=loop, daemon=True, name="rhizome-demo-sweeper")
        thread.start()
        return thread


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes `source`'s content at once (never half written): a hard link, or a copy
    renamed into place where links are not possible (another file system)."""
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    try:
        os.link(source, staging)
    except OSError:
        shutil.copy2(source, staging)
    try:
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def in_request_context(fn: Callable, *args: Any) -> Callable[[], Any]:
    """`fn(*args)` bound to a copy of the current context: a thread started by a handler then
    still knows whose request it serves."""
    ctx = contextvars.copy_context()
    return lambda: ctx.run(fn, *args)


def start_template(folder: Path, samples: Path | None = None) -> Callable[[], Path]:
    """Prepare the demo's sample workspace (ingested and built) once, in the background.

    Returns `ready()`, which waits for it and gives its folder. RHIZOME_DEMO_TEMPLATE may name
    an already built workspace to copy instead (e.g. one baked into a Space image).
    """
    import os

    given = os.environ.get("RHIZOME_DEMO_TEMPLATE")
    if given:
        return lambda: Path(given)
    done, box = threading.Event(), {}

    def build() -> None:
        from ..curate import build_dataset
        from ..ingest import ingest_paths
        from .common import ASSETS

        try:
            ws = Workspace(folder).ensure()
            ingest_paths(ws, [samples or ASSETS / "sample"])
            build_dataset(ws)
        except Exception as exc:  # a session then starts empty, and says why in the log
            log.exception("preparing the demo's sample workspace failed")
            box["error"] = exc
        finally:
            done.set()
    threading.Thread(target=build, daemon=True, name="rhizome-demo-template").start()

    def ready() -> Path:
        done.wait(900)
        return folder
    return ready


def seed_from(template: Callable[[], Path]) -> Callable[[Path], None]:
    """A demo session's start: a copy of the prepared sample workspace (not rebuilt per visitor)."""
    def seed(folder: Path) -> None:
        source = template()
        if source.is_dir() and (source / "dataset").is_dir():
            shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".uploads", ".train.lock", "runs"),
                            dirs_exist_ok=True)
    return seed


def demo_base() -> Path:
    """Where demo sessions live: a fresh temp folder, never the real workspace."""
    return Path(tempfile.mkdtemp(prefix="rhizome-demo-"))
