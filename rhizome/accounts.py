"""Who may sign in, and where each person's workspace lies.

`--auth USER:PASS` (repeatable) and `RHIZOME_AUTH` (a comma-separated list of `user:pass`, or
the path of a file of `user:password-hash` lines made by `python -m rhizome passwd USER`) name
the people; each works in `<workspace>/users/<name>/`. Passwords are kept only as salted scrypt
hashes, compared in constant time; repeated failures for a name or an address are slowed down
(the caller sleeps `Throttle.delay()` before answering), and a refusal never says which part
was wrong. No gradio here.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from pathlib import Path

from .workspace import UserError, Workspace

# scrypt at n=2**14, r=8: ~50 ms and 16 MiB per check: slow to brute-force, fine at sign-in.
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_user_name(name: str) -> str:
    """A user name that is safe as a folder name (no `/`, `..`, NUL, leading dot; 64 chars max)."""
    if not isinstance(name, str) or not USER_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{name!r} is not a valid user name: use letters, digits, '.', '_' or '-' "
                        "(64 at most, not starting with a dot)")
    return name


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash` (base64): what an auth file stores instead of the password."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 * 2 ** 20, **SCRYPT)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` line (constant-time comparison)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=64 * 2 ** 20)
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def parse_auth(specs: list[str] | None) -> dict[str, str]:
    """{user: password hash} from `--auth` values and/or `RHIZOME_AUTH`.

    Each spec is `user:pass`, a comma-separated list of those, or the path of an auth file
    whose lines are `user:scrypt$...` (blank lines and `#` comments skipped).
    """
    users: dict[str, str] = {}
    for spec in specs or []:
        spec = (spec or "").strip()
        if not spec:
            continue
        if ":" not in spec.split(",")[0] and Path(spec).expanduser().is_file():
            _add_file(users, Path(spec).expanduser())
            continue
        for item in spec.split(","):
            user, sep, password = item.strip().partition(":")
            if not sep or not user or not password:
                raise UserError("--auth must look like user:password (several: repeat --auth, or "
                                "RHIZOME_AUTH=alice:pw1,bob:pw2, or RHIZOME_AUTH=path/to/auth-file)")
            _add(users, user, hash_password(password))
    return users


def _add_file(users: dict[str, str], path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not stored.startswith("scrypt$"):
            raise UserError(f"{path}:{number}: expected user:scrypt$... "
                            "(make a line with: python -m rhizome passwd USER)")
        _add(users, user, stored)


def _add(users: dict[str, str], user: str, stored: str) -> None:
    check_user_name(user)
    if user in users:
        raise UserError(f"user {user!r} is named twice in the sign-in list")
    users[user] = stored


def user_workspace(root: str | os.PathLike, user: str) -> Workspace:
    """`<root>/users/<user>/`, created on first use."""
    return Workspace(Path(root) / "users" / check_user_name(user)).ensure()


class Throttle:
    """Slows repeated failed sign-ins: after k failures for a name or an address, wait
    `base * 2**(k-1)` seconds (capped) before answering. A success clears the name's count."""

    def __init__(self, base: float = 0.5, cap: float = 8.0, forget_after: float = 900.0) -> None:
        self.base, self.cap, self.forget_after = base, cap, forget_after
        self._fails: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay(self, *keys: str) -> float:
        """Seconds to wait before answering an attempt by these keys (user name, address)."""
        now = time.time()
        with self._lock:
            counts = [n for k in keys if (n := self._count(k, now))]
        return min(self.cap, self.base * 2 ** (max(counts) - 1)) if counts else 0.0

    def failed(self, *keys: str) -> None:
        now = time.time()
        with self._lock:
            for k in keys:
                self._fails[k] = (self._count(k, now) + 1, now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(user, None)

    def _count(self, key: str, now: float) -> int:
        count, last = self._fails.get(key, (0, 0.0))
        return count if now - last < self.forget_after else 0


def make_checker(users: dict[str, str], throttle: Throttle | None = None):
    """`async check(user, password) -> bool` for gradio's login form: slowed after failures
    (without blocking the server: it awaits), and as slow for an unknown name as for a wrong
    password, so a refusal gives no hint which one was wrong."""
    throttle = throttle or Throttle()
    dummy = hash_password(secrets.token_hex(8))

    async def check(user: str, password: str) -> bool:
        key = f"user:{user}"
        await asyncio.sleep(throttle.delay(key))
        ok = await asyncio.to_thread(verify_password, password or "", users.get(user, dummy))
        ok = ok and user in users
        if ok:
            throttle.succeeded(key)
        else:
            throttle.failed(key)
        return ok
    return check


def main(argv: list[str] | None = None) -> int:
    """`python -m rhizome.accounts USER`: ask a password, print a `user:hash` line for an auth file."""
    import getpass
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rhizome.accounts USER   (prints USER:scrypt$... for RHIZOME_AUTH=file)",
              file=sys.stderr)
        return 2
    try:
        user = check_user_name(args[0])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    password = os.environ.get("RHIZOME_PASSWORD") or getpass.getpass(f"password for {user}: ")
    if not password:
        print("error: the password is empty", file=sys.stderr)
        return 2
    print(f"{user}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
