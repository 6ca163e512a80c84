"""Gradio's file URLs, per person: an ASGI middleware in front of gradio's file route.

In `users` mode a file under `users/<name>/` is served only to <name>, and an upload only to
whoever uploaded it (403 otherwise); the uploader is recorded from gradio's own `/upload`
response and its sign-in cookie. Added with `launch(app_kwargs={"middleware": [...]})`, so it
runs inside gradio's own middlewares and sees plain (uncompressed) responses.

Gradio's per-page routes are keyed by the page's session hash alone: an event's messages
(`queue/data`), a streamed output such as the spoken answer (`stream/<session>/...`, which
gradio serves even without sign-in) and the page's heartbeat. In `users` mode a session hash
belongs to the signed-in person who first uses it, and those routes refuse everyone else.
"""
from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs
from pathlib import Path
from typing import Any

from .users import Spaces

def _file_target(path: str) -> Path | None:
    """The local file a gradio file URL names (`.../file=/abs/path` or `.../file/abs/path`)."""
    for marker in ("/file=", "/gradio_api/file/"):
        at = path.find(marker)
        if at != -1:
            rest = path[at + len(marker):]
            if rest.startswith(("http://", "https://")) or "\x00" in rest:
                return None
            try:
                return Path(rest).expanduser().resolve()
            except (OSError, ValueError, RuntimeError):
                return Path("/nonexistent")
    return None


def _page_session(scope: dict) -> str | None:
    """The session hash a per-page route names (None for other routes)."""
    path, method = scope.get("path", ""), scope.get("method")
    for marker in ("/gradio_api/stream/", "/gradio_api/heartbeat/"):
        at = path.find(marker)
        if at != -1 and method == "GET":
            parts = path[at + len(marker):].split("/")
            # stream/<session>/<run>/<component>/<file>; POST stream/<event_id> is not per page
            if marker.endswith("heartbeat/") or len(parts) >= 4:
                return parts[0]
    if method == "GET" and path.rstrip("/").endswith(("/gradio_api/queue/data", "/gradio_api/deep_link")):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return (query.get("session_hash") or [""])[0]
    return None


def _signed_in(scope: dict) -> str | None:
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens:
        return None
    cookies = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                cookies.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header signs nobody in
                return None
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if name in cookies and cookies[name].value in tokens:
            return tokens[cookies[name].value]
    return None


class FileGate:
    """ASGI middleware: refuses another person's files on gradio's file route (403) and
    records who uploaded what on gradio's upload route."""

    def __init__(self, app: Any, spaces: Spaces) -> None:
        self.app, self.spaces = app, spaces

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.spaces.mode == "single":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if self.spaces.mode == "users":
            session = _page_session(scope)
            if session is not None and not self.spaces.claim_session(session, _signed_in(scope)):
                return await _refuse(send)
            if scope.get("method") == "POST" and path.rstrip("/").endswith("/gradio_api/queue/join"):
                return await self._join(scope, receive, send)
        target = _file_target(path)
        if target is not None:
            if not self.spaces.may_read(_signed_in(scope), target):
                return await _refuse(send)
            return await self.app(scope, receive, send)
        if scope.get("method") == "POST" and path.rstrip("/").endswith("/upload"):
            return await self._upload(scope, receive, send)
        await self.app(scope, receive, send)

    async def _join(self, scope: dict, receive: Any, send: Any) -> None:
        """An event joins the queue for a page session: refused if that session is someone else's."""
        chunks, message = [], {"more_body": True}
        while message.get("more_body"):
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        try:
            session = json.loads(body).get("session_hash")
        except (ValueError, AttributeError):
            session = None
        if isinstance(session, str) and not self.spaces.claim_session(session, _signed_in(scope)):
            return await _refuse(send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, replay, send)

    async def _upload(self, scope: dict, receive: Any, send: Any) -> None:
        user, body, start = _signed_in(scope), [], {}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            data = b"".join(body)
            if start.get("status") == 200:
                try:
                    for p in json.loads(data):
                        self.spaces.record_upload(p, user)
                except (ValueError, TypeError):
                    pass
            await send(start)
            await send({"type": "http.response.body", "body": data})
        await self.app(scope, receive, capture)


async def _refuse(send: Any) -> None:
    body = b'{"detail":"File not allowed."}'
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
