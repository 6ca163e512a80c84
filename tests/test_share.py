"""Sharing safely: per-person workspaces, the file gate, sign-in, a Space-style demo, the API.

The app is launched for real (`python app.py` in a subprocess on 127.0.0.1) and driven with
`gradio_client` and plain HTTP, as a script or a second person would.
"""
from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from rhizome.accounts import Throttle, check_user_name, hash_password, make_checker, parse_auth, verify_password
from rhizome.chat.sessions import check_name
from rhizome.workspace import UserError, Workspace

ROOT = Path(__file__).resolve().parents[1]
USERS = {"alice": "wonder-land-7", "bob": "builder-b0b"}
TRICKS = ["../escape", "../../etc/passwd", "/etc/passwd", "a\x00b", "x" * 300, ".hidden", "a/b", "..", ""]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp: Path, args: list[str], env_extra: dict[str, str], port: int):
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "RHIZOME_AUTH", "GRADIO_TEMP_DIR")}
    env.update(env_extra)
    log = tmp / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"no answer on {url}:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def two_users(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("share")
    port = _free_port()
    args = ["--workspace", str(tmp / "ws"), "--port", str(port)]
    for user, password in USERS.items():
        args += ["--auth", f"{user}:{password}"]
    # without ffmpeg a spoken answer is a file the handler returns (with it, a gradio stream)
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if not (Path(d) / "ffmpeg").exists())
    proc, url = _launch(tmp, args, {"PATH": path}, port)
    try:
        yield url, tmp / "ws"
    finally:
        _stop(proc)


def _session(url: str, user: str | None) -> httpx.Client:
    http = httpx.Client(base_url=url, timeout=60)
    if user is not None:
        r = http.post("login", data={"username": user, "password": USERS[user]})
        assert r.status_code == 200, r.text
    return http


def _client(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=(user, USERS[user]), verbose=False)


# ---- unit level: names, passwords, throttling ------------------------------------------------


@pytest.mark.parametrize("name", TRICKS)
def test_path_tricks_in_user_and_session_names_are_refused(name):
    with pytest.raises(UserError):
        check_user_name(name)
    with pytest.raises(UserError):
        check_name(name if name else "/")
    assert check_name("my notes-1") == "my notes-1"


def test_passwords_hashed_and_failures_slowed(tmp_path):
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored) and not verify_password("S3cret", stored)
    auth_file = tmp_path / "auth"
    auth_file.write_text(f"# people\ncarol:{stored}\n")
    users = parse_auth([str(auth_file), "dave:pw1,erin:pw2"])
    assert sorted(users) == ["carol", "dave", "erin"] and verify_password("pw2", users["erin"])
    with pytest.raises(UserError):
        parse_auth(["../x:pw"])
    throttle = Throttle(base=0.2, cap=1.0)
    check = make_checker(users, throttle)
    # each check on a fresh loop in its own thread: a browser test's loop may be running in this one
    run = lambda coro: ThreadPoolExecutor(1).submit(asyncio.run, coro).result()  # noqa: E731
    assert run(check("carol", "s3cret"))
    for _ in range(3):
        assert not run(check("carol", "wrong"))
    started = time.perf_counter()
    assert not run(check("carol", "wrong"))  # fourth failure: waits 0.2 * 2**2 s first
    assert time.perf_counter() - started >= 0.75


def test_workspace_follows_the_request_into_threads_and_never_defaults(tmp_path):
    import contextvars
    import threading

    import gradio as gr
    from gradio.context import LocalContext

    from rhizome.ui.common import Context
    from rhizome.ui.users import Spaces

    spaces = Spaces(tmp_path / "ws", "users")
    ctx = Context(Workspace(tmp_path / "ws").ensure(), spaces=spaces)
    assert ctx.ws.root.name == ".blank"  # while the page is built: an empty stand-in
    spaces.building = False
    with pytest.raises(UserError):
        ctx.ws  # no request: refused, never the shared root
    seen: dict[str, object] = {}

    def look(name: str) -> None:
        try:
            seen[name] = ctx.ws.root
        except UserError as exc:
            seen[name] = exc
    LocalContext.request.set(gr.Request(username="alice"))
    assert ctx.ws.root == tmp_path / "ws" / "users" / "alice"
    plain = threading.Thread(target=look, args=("plain",))
    copied = threading.Thread(target=contextvars.copy_context().run, args=(look, "copied"))
    for t in (plain, copied):
        t.start()
        t.join()
    LocalContext.request.set(None)
    assert seen["copied"] == tmp_path / "ws" / "users" / "alice"
    assert isinstance(seen["plain"], UserError)


def test_a_returned_file_is_its_requesters_and_goes_with_a_demo_session(tmp_path):
    """`Spaces.own_output` (what every file a handler returns goes through), per request."""
    import gradio as gr
    from gradio.context import LocalContext

    from rhizome.ui.users import Spaces

    def serving(spaces: Spaces, **who) -> None:
        LocalContext.request.set(gr.Request(**who))

    def run(fn, *args):  # each call in a context of its own, as gradio runs each request
        return contextvars.copy_context().run(fn, *args)

    def export(spaces: Spaces, user: str) -> tuple[Path, Path]:
        serving(spaces, username=user)
        gguf = spaces.current().root / "runs" / "r1" / "export" / "model.gguf"
        gguf.parent.mkdir(parents=True, exist_ok=True)
        gguf.write_bytes(b"GGUF" + bytes(4096))  # the same bytes for both: still two owned copies
        return gguf, Path(spaces.own_output(gguf))

    spaces = Spaces(tmp_path / "ws", "users")
    spaces.building = False
    alices, cached = run(export, spaces, "alice")
    assert spaces.uploads in cached.parents and cached.read_bytes() == alices.read_bytes()
    assert spaces.may_read("alice", cached) and not spaces.may_read("bob", cached)
    assert not spaces.may_read(None, cached)
    assert run(lambda: (serving(spaces, username="alice"), spaces.own_output(alices))[1]) == str(cached)  # reused
    _, bobs = run(export, spaces, "bob")
    assert bobs != cached and spaces.may_read("bob", bobs) and not spaces.may_read("bob", cached)
    with pytest.raises(UserError, match="not a file of your workspace"):
        run(lambda: (serving(spaces, username="bob"), spaces.own_output(alices)))

    demo = Spaces(tmp_path / "demo", "demo", idle_s=0)
    demo.building = False

    def speak() -> Path:
        serving(demo, session_hash="abc123")
        wav = demo.current().root / ".uploads" / "speech" / "answer.wav"
        wav.parent.mkdir(parents=True)
        wav.write_bytes(b"RIFF" + bytes(64))
        return Path(demo.own_output(wav))
    spoken = run(speak)
    assert spoken.is_file() and demo.may_read(None, spoken)  # a demo: the unguessable name is the key
    assert demo.sweep() == ["s-abc123"] and not spoken.exists() and not spoken.parent.exists()


def test_shared_machine_trains_one_at_a_time_and_shows_the_queue_position():
    import threading

    from rhizome import slots
    from rhizome.config import TrainConfig

    queue, events, order = slots.Queue(), [], []
    running, release = threading.Event(), threading.Event()

    def first() -> None:
        with queue.turn():
            running.set()
            release.wait(10)
            order.append("first")

    def second() -> None:
        with queue.turn(events.append, poll=0.05):
            order.append("second")
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    running.wait(5)
    threads[1].start()
    deadline = time.time() + 5
    while not events and time.time() < deadline:
        time.sleep(0.02)
    assert events and "position 1" in events[0].message and order == []
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["first", "second"]
    slots.configure(one_training=True, max_train_steps=30)
    try:
        assert slots.cap_training(TrainConfig(max_steps=500)).max_steps == 30
        assert slots.cap_training(TrainConfig(max_steps=0)).max_steps == 30  # epochs-based runs too
        assert slots.cap_training(TrainConfig(max_steps=8)).max_steps == 8
    finally:
        slots.configure()


def test_demo_sessions_are_seeded_separately_and_removed_when_idle(tmp_path):
    import gradio as gr
    from gradio.context import LocalContext

    from rhizome.ui.users import Spaces

    template = Workspace(tmp_path / "template").ensure()
    (template.sources / "sample.md").write_text("the sample\n")
    (template.dataset / "train.jsonl").write_text("{}\n")
    spaces = Spaces(tmp_path / "demo", "demo", idle_s=60,
                    template=lambda folder: __import__("shutil").copytree(template.root, folder))
    spaces.building = False
    roots = []
    for session in ("aaaa1111", "bbbb2222"):
        LocalContext.request.set(gr.Request(session_hash=session))
        roots.append(spaces.current().root)
    LocalContext.request.set(None)
    assert roots[0] != roots[1] and all((r / "sources" / "sample.md").is_file() for r in roots)
    assert spaces.sweep() == []  # not idle yet
    spaces.idle_s = 0
    assert sorted(spaces.sweep(busy=lambda ws: ws.root == roots[1])) == ["s-aaaa1111"]
    assert not roots[0].exists() and roots[1].exists()  # a session with a running job stays


# ---- a real app, two people ------------------------------------------------------------------


def test_wrong_password_refused_without_detail_and_slowed(two_users):
    url, _ = two_users
    http = httpx.Client(base_url=url, timeout=60)
    wrong_pw = http.post("login", data={"username": "alice", "password": "nope"})
    no_user = http.post("login", data={"username": "mallory", "password": "nope"})
    assert wrong_pw.status_code == no_user.status_code == 400
    assert wrong_pw.json() == no_user.json()  # the same words: no hint which part was wrong
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        assert http.post("login", data={"username": "bob", "password": "nope"}).status_code == 400
        timings.append(time.perf_counter() - started)
    assert timings[2] - timings[0] >= 0.9, timings  # 0 s, 0.5 s, 1 s of back-off
    assert http.get("config").status_code == 401


def test_uploads_are_private_to_their_owner(two_users, tmp_path):
    from gradio_client import handle_file

    url, ws_root = two_users
    note = tmp_path / "alice-diary.md"
    note.write_text("# Diary\n\nAlice's private plans for the garden: roses along the north wall.\n")
    alice, bob = _client(url, "alice"), _client(url, "bob")
    report = alice.predict([handle_file(str(note))], api_name="/upload")
    assert report["files"][0]["status"] == "ok", report
    assert [s["name"] for s in alice.predict(api_name="/sources")] == ["alice-diary.md"]
    assert bob.predict(api_name="/sources") == []
    assert not (ws_root / "users" / "bob" / "sources" / "alice-diary.md").exists()
    assert not (ws_root / "sources" / "alice-diary.md").exists()  # nor in the shared root

    # Gradio file URLs: alice's source and a fresh upload of hers, fetched by each party
    as_alice, as_bob, signed_out = _session(url, "alice"), _session(url, "bob"), _session(url, None)
    uploaded = as_alice.post("gradio_api/upload", files={"files": ("secret.md", b"alice only", "text/markdown")})
    assert uploaded.status_code == 200, uploaded.text
    [upload_path] = uploaded.json()
    source_path = ws_root / "users" / "alice" / "sources" / "alice-diary.md"
    for path in (upload_path, str(source_path)):
        assert as_alice.get(f"gradio_api/file={path}").status_code == 200, path
        assert as_bob.get(f"gradio_api/file={path}").status_code in (401, 403), path
        assert signed_out.get(f"gradio_api/file={path}").status_code in (401, 403), path
        assert as_bob.get(f"gradio_api/file/{path}").status_code in (401, 403), path
    # bob cannot ingest alice's upload by naming its path in a raw API call either
    assert "did not land in your workspace" in _call(as_bob, "upload", [[_file_data(upload_path)]])
    assert "alice-diary.md" not in str(bob.predict(api_name="/sources"))


def _file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _call(http: httpx.Client, api_name: str, data: list) -> str:
    """A raw call of a named endpoint over HTTP (no client-side re-upload); the SSE text back."""
    started = http.post(f"gradio_api/call/{api_name}", json={"data": data})
    assert started.status_code == 200, started.text
    return http.get(f"gradio_api/call/{api_name}/{started.json()['event_id']}").text


def test_path_tricks_in_upload_names_stay_inside(two_users):
    url, ws_root = two_users
    as_bob = _session(url, "bob")
    for name in ("../../../escape.md", "/etc/escape.md", "..\\..\\escape.md", "e" * 250 + ".md"):
        r = as_bob.post("gradio_api/upload", files={"files": (name, b"# t\n\nbob's text " * 5, "text/markdown")})
        assert r.status_code == 200, (name, r.text)
        [path] = r.json()
        assert (ws_root / ".uploads").resolve() in Path(path).resolve().parents, path
    bob = _client(url, "bob")
    r = as_bob.post("gradio_api/upload", files={"files": ("../../../escape.md", b"# t\n\nbob's own words " * 5)})
    assert "escape.md" in _call(as_bob, "upload", [[_file_data(r.json()[0])]])
    sources = [s["name"] for s in bob.predict(api_name="/sources")]
    assert sources and all(".." not in s and not s.startswith("/") for s in sources), sources
    assert not list(ws_root.parent.glob("escape.md")) and not (ws_root / "users" / "escape.md").exists()
    with pytest.raises(Exception, match="session name .* may only hold letters"):
        bob.predict("hello", "../../alice/api_sessions/x", api_name="/chat")


def _join(http: httpx.Client, fn_index: int, data: list, session: str) -> httpx.Response:
    return http.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                    "event_data": None, "trigger_id": None})


def _event(http: httpx.Client, fn_index: int, data: list, session: str | None = None) -> list[dict]:
    """Run one event of the page the way the browser does (queue/join, then its SSE stream);
    every message it sent back. `session`: the page's session hash, already joined."""
    if session is None:
        session = uuid.uuid4().hex[:12]
        joined = _join(http, fn_index, data, session)
        assert joined.status_code == 200, joined.text
    messages = []
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}, timeout=300) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                messages.append(json.loads(line[5:]))
                if messages[-1].get("msg") == "process_completed":
                    break
    return messages


def _files_in(value, suffix: str) -> list[str]:
    """The paths of gradio FileData objects (ending in `suffix`) anywhere in `value`."""
    if isinstance(value, dict):
        here = [value["path"]] if str(value.get("path", "")).endswith(suffix) else []
        return here + [p for v in value.values() for p in _files_in(v, suffix)]
    if isinstance(value, list):
        return [p for v in value for p in _files_in(v, suffix)]
    return []


def test_files_a_handler_returns_are_served_to_the_requester_only(two_users):
    """Alice's spoken answer (a WAV the Chat tab's handler returns) is hers: her file URL works,
    Bob's and a signed-out client's are refused, and gradio serves the very file the app put in
    its cache for her (not a fresh copy under a name the app never recorded)."""
    url, ws_root = two_users
    as_alice, as_bob, signed_out = _session(url, "alice"), _session(url, "bob"), _session(url, None)
    config = as_alice.get("config").json()
    by_id = {c["id"]: c for c in config["components"]}
    ids = {c["props"].get("elem_id") or c["props"].get("label"): c["id"] for c in config["components"]}
    ask = next(d for d in config["dependencies"]
               if ids["rz-spoken"] in d["outputs"] and ids["rz-chat-input"] in d["inputs"])
    wanted = {ids["rz-chat-input"]: "Say hello.", ids["Speak the answers"]: True, ids["rz-chat-max-tokens"]: 16,
              ids["Ground answers in my documents (retrieval)"]: False}
    data = [wanted.get(i, by_id[i]["props"].get("value")) for i in ask["inputs"]]
    messages = _event(as_alice, ask["id"], data)
    assert messages[-1].get("success"), messages[-1]
    [wav] = set(_files_in(messages, ".wav"))
    cached = Path(wav)
    assert (ws_root / ".uploads").resolve() in cached.parents  # in gradio's cache, as the app recorded it
    mine = as_alice.get(f"gradio_api/file={wav}")
    assert mine.status_code == 200 and mine.content[:4] == b"RIFF", mine.status_code
    assert as_bob.get(f"gradio_api/file={wav}").status_code == 403
    assert as_bob.get(f"gradio_api/file/{wav}").status_code == 403
    assert signed_out.get(f"gradio_api/file={wav}").status_code in (401, 403)
    # a file in gradio's cache that no one is recorded to own is no one's to download
    stray = cached.parent.parent / ("0" * 64) / "stray.txt"
    stray.parent.mkdir()
    stray.write_text("left in the cache by nobody known")
    assert as_alice.get(f"gradio_api/file={stray}").status_code == 403


def test_a_page_session_is_its_signed_in_owners(two_users):
    """Gradio keys an event's messages, a streamed output (the spoken answer with ffmpeg) and the
    page's heartbeat by the page's session hash alone, and serves streams without sign-in: Bob,
    or a signed-out client, naming Alice's session is refused; Alice gets her answer."""
    url, _ = two_users
    as_alice, as_bob, signed_out = _session(url, "alice"), _session(url, "bob"), _session(url, None)
    sources = next(d for d in as_alice.get("config").json()["dependencies"] if d.get("api_name") == "sources")
    session = uuid.uuid4().hex[:12]
    assert _join(as_alice, sources["id"], [], session).status_code == 200
    stream = f"gradio_api/stream/{session}/0/1/playlist.m3u8"
    assert as_alice.get(stream).status_code == 404  # hers: gradio answers (there is no such stream)
    assert as_bob.get(stream).status_code == 403 and signed_out.get(stream).status_code == 403
    assert as_bob.get("gradio_api/queue/data", params={"session_hash": session}).status_code == 403
    assert as_bob.get(f"gradio_api/heartbeat/{session}").status_code == 403
    assert _join(as_bob, sources["id"], [], session).status_code == 403
    messages = _event(as_alice, sources["id"], [], session=session)
    assert messages[-1].get("success"), messages[-1]


def test_the_data_tab_drops_an_ingested_upload_but_not_anothers(two_users):
    """The Data tab's ingest copies an upload into the person's sources and deletes gradio's
    copy, unless someone else uploaded the same bytes (one path) and has not ingested them yet."""
    url, ws_root = two_users
    as_alice, as_bob = _session(url, "alice"), _session(url, "bob")
    config = as_alice.get("config").json()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    ingest = next(d for d in config["dependencies"]
                  if d["inputs"] == [ids["rz-upload"]] and ids["rz-ingest-summary"] in d["outputs"])
    note = ("garden-plan.md", b"# Plan\n\nBeans along the fence, squash by the compost, mint in a pot.\n" * 3)
    [path] = as_alice.post("gradio_api/upload", files={"files": note}).json()
    assert as_bob.post("gradio_api/upload", files={"files": note}).json() == [path]  # same bytes, same path
    messages = _event(as_alice, ingest["id"], [[{**_file_data(path), "orig_name": note[0]}]])
    assert messages[-1].get("success"), messages[-1]
    assert (ws_root / "users" / "alice" / "sources" / "garden-plan.md").is_file()
    assert Path(path).is_file()  # Bob's upload of the same bytes is still his to ingest
    messages = _event(as_bob, ingest["id"], [[{**_file_data(path), "orig_name": note[0]}]])
    assert messages[-1].get("success"), messages[-1]
    assert (ws_root / "users" / "bob" / "sources" / "garden-plan.md").is_file()
    assert not Path(path).exists()  # no one needs gradio's copy any more


def _load_app():
    spec = importlib.util.spec_from_file_location("rhizome_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_persons_write_never_holds_up_anothers(tmp_path, monkeypatch):
    """Alice's workspace is busy writing (its write slot held): Bob's upload, in his own
    workspace, goes through at once, while Alice's own next upload waits for hers, then runs.
    They upload the same bytes (one path in gradio's upload folder): Bob's ingest must not take
    Alice's upload away from her."""
    from gradio_client import handle_file
    from gradio_client.utils import Status

    from rhizome import slots

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # the app sets it; put back after
    port, ws_root = _free_port(), tmp_path / "ws"
    args = ["--workspace", str(ws_root), "--port", str(port)]
    for user, password in USERS.items():
        args += ["--auth", f"{user}:{password}"]
    app = _load_app()
    demo = app.serve(app.parse_args(args), prevent_thread_lock=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        note = tmp_path / "note.md"
        note.write_text("# A note\n\nTomatoes want sun, water at the roots and a stake by June.\n")
        alice, bob = _client(url, "alice"), _client(url, "bob")
        with slots.workspace_write(Workspace(ws_root / "users" / "alice")):
            waiting = alice.submit([handle_file(str(note))], api_name="/upload")
            deadline = time.time() + 60
            while waiting.status().code != Status.PROCESSING and time.time() < deadline:
                time.sleep(0.1)
            assert waiting.status().code == Status.PROCESSING  # in a gradio worker, waiting for her slot
            report = bob.submit([handle_file(str(note))], api_name="/upload").result(timeout=120)
            assert report["files"][0]["status"] == "ok"
            assert not waiting.done()
        assert waiting.result(timeout=120)["files"][0]["status"] == "ok"
        assert [s["name"] for s in alice.predict(api_name="/sources")] == ["note.md"]
    finally:
        demo.close()


def test_share_without_auth_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "app.py", "--share", "--demo", "--workspace", str(tmp_path / "w")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "refusing" in out.stderr


# ---- a Space: SPACE_ID, 0.0.0.0, $PORT; one temporary workspace per session --------------------


@pytest.mark.slow
def test_space_start_serves_and_sessions_are_separate(tmp_path):
    from gradio_client import Client, handle_file

    real = Workspace(tmp_path / "real").ensure()
    (real.sources / "REAL-PRIVATE.md").write_text("the real workspace's own file\n")
    port = _free_port()
    env = {"SPACE_ID": "someone/rhizome", "GRADIO_SERVER_NAME": "0.0.0.0", "PORT": str(port),
           "RHIZOME_WORKSPACE": str(real.root)}
    proc, url = _launch(tmp_path, [], env, port)
    try:
        assert "Rhizome" in httpx.get(url, timeout=10).text
        one, two = Client(url, verbose=False), Client(url, verbose=False)
        seeded = [s["name"] for s in one.predict(api_name="/sources")]
        assert seeded and "REAL-PRIVATE.md" not in seeded  # the sample, never the real workspace
        note = tmp_path / "visitor-one.md"
        note.write_text("# Visitor one\n\nA note only the first visitor uploaded, about tomatoes.\n")
        one.predict([handle_file(str(note))], api_name="/upload")
        assert "visitor-one.md" in [s["name"] for s in one.predict(api_name="/sources")]
        assert "visitor-one.md" not in [s["name"] for s in two.predict(api_name="/sources")]
        assert not (real.sources / "visitor-one.md").exists()
    finally:
        _stop(proc)
