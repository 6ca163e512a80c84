"""Rhizome web app: every stage in the browser. `python app.py --help` for the options.

Serves on 127.0.0.1 by default, one workspace. `--auth user:pass` (repeatable, or RHIZOME_AUTH)
signs people in, each to their own workspace `<workspace>/users/<name>/`; `--share` opens a
public Gradio link and therefore requires it. `--demo` (and a Hugging Face Space, where SPACE_ID
is set; it then binds 0.0.0.0 on $PORT) is a public demo: each browser session gets a temporary
workspace seeded with the built sample, and the machine's limits apply.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    on_space = bool(os.environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(prog="python app.py", description="Rhizome: your material, your model.")
    port = int(os.environ.get("PORT", os.environ.get("GRADIO_SERVER_PORT", 7860)))
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1")
    p.add_argument("--workspace", default=os.environ.get("RHIZOME_WORKSPACE", "workspace"),
                   help="workspace folder (default: ./workspace); with sign-in, each person's is in users/")
    p.add_argument("--host", default=host, help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help="port (default: 7860)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (requires --auth)")
    p.add_argument("--auth", action="append", metavar="USER:PASS",
                   help="a person who may sign in (repeat for several); default $RHIZOME_AUTH: "
                        "user:pass[,user:pass...] or the path of a file of user:hash lines "
                        "(make one with: python -m rhizome.accounts USER)")
    p.add_argument("--demo", action="store_true", default=on_space,
                   help="public demo: a temporary workspace per browser session (default on a Space)")
    p.add_argument("--max-file-size", default=None, help="largest upload accepted (default: 2gb; demo: 50mb)")
    p.add_argument("--max-train-steps", type=int, default=None,
                   help="cap on a run's steps (default: none; demo: 30)")
    p.add_argument("--idle-minutes", type=float, default=30.0, help="demo: remove a session idle this long")
    args = p.parse_args(argv)
    from rhizome.accounts import parse_auth
    from rhizome.workspace import UserError

    try:
        args.users = parse_auth(args.auth or ([os.environ["RHIZOME_AUTH"]] if os.environ.get("RHIZOME_AUTH") else []))
    except UserError as exc:
        p.error(str(exc))
    if args.share and not args.users:
        p.exit(2, "error: --share makes the app public; refusing without a login. "
                  "Add --auth user:password (or set RHIZOME_AUTH=user:password).\n")
    if not args.users and not args.demo and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving one workspace, without sign-in, to anyone who reaches {args.host}; "
              "add --auth user:password to give each person their own", file=sys.stderr)
    args.max_file_size = args.max_file_size or ("50mb" if args.demo else "2gb")
    if args.max_train_steps is None:
        args.max_train_steps = 30 if args.demo else 0
    return args


def make_spaces(args: argparse.Namespace):
    """Who works where: None (one workspace), one per signed-in person, or one per demo session."""
    from pathlib import Path

    from rhizome.ui.users import Spaces, demo_base, seed_from, start_template

    if args.demo:
        base = demo_base()
        return Spaces(base, "demo", template=seed_from(start_template(base / "template")),
                      idle_s=args.idle_minutes * 60)
    if args.users:
        return Spaces(Path(args.workspace), "users")
    return None


def main(argv: list[str] | None = None) -> None:
    serve(parse_args(argv))


def serve(args: argparse.Namespace, **launch: object):
    """Build the app for `args` and launch it; `launch` adds options of gradio's `launch` (a test
    serves it in its own process with `prevent_thread_lock=True`). Returns the Blocks."""
    from starlette.middleware import Middleware

    from rhizome import slots
    from rhizome.accounts import make_checker
    from rhizome.ui import CSS, build_app, theme  # after parsing: --help stays instant
    from rhizome.ui.filegate import FileGate

    spaces = make_spaces(args)
    # a demo never opens the real workspace: its sessions live in a temp folder of their own
    demo = build_app(spaces.root if args.demo else args.workspace, on_space=bool(os.environ.get("SPACE_ID")) or args.demo, spaces=spaces)
    ws_root = demo.rhizome_context.home.root
    if spaces is None:
        allowed, app_kwargs = [str(ws_root / "runs")], {}
    else:  # files under users/<name>/ are served to <name> only (FileGate); demo sessions: none directly
        allowed = [str(spaces.people)] if spaces.mode == "users" else []
        app_kwargs = {"middleware": [Middleware(FileGate, spaces=spaces)]}
    if args.demo:
        slots.configure(one_training=True, max_train_steps=args.max_train_steps)
        spaces.start_sweeper()
    elif args.max_train_steps:
        slots.configure(max_train_steps=args.max_train_steps)
    demo.queue(default_concurrency_limit=2, max_size=64).launch(
        server_name=args.host, server_port=args.port, share=args.share,
        auth=make_checker(args.users) if args.users else None,
        max_file_size=args.max_file_size, allowed_paths=allowed, app_kwargs=app_kwargs,
        theme=theme(), css=CSS, footer_links=["gradio"], show_error=False, quiet=False, **launch)
    return demo


if __name__ == "__main__":
    sys.exit(main())
