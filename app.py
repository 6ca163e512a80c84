"""Rhizome web app: every stage in the browser. `python app.py --help` for the options.

Serves on 127.0.0.1 by default. `--share` opens a public Gradio link and therefore requires
`--auth user:pass` (or RHIZOME_AUTH). On a Hugging Face Space (SPACE_ID set) it binds 0.0.0.0
with small defaults, so it runs there as is.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    on_space = bool(os.environ.get("SPACE_ID"))
    p = argparse.ArgumentParser(prog="python app.py", description="Rhizome: your material, your model.")
    port = int(os.environ.get("PORT", os.environ.get("GRADIO_SERVER_PORT", 7860)))
    p.add_argument("--workspace", default=os.environ.get("RHIZOME_WORKSPACE", "workspace"),
                   help="workspace folder (default: ./workspace)")
    p.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help="port (default: 7860)")
    p.add_argument("--share", action="store_true", help="create a public gradio.live link (requires --auth)")
    p.add_argument("--auth", default=os.environ.get("RHIZOME_AUTH"), metavar="USER:PASS",
                   help="require this login (default: $RHIZOME_AUTH)")
    p.add_argument("--max-file-size", default="2gb", help="largest upload accepted (default: 2gb)")
    args = p.parse_args(argv)
    if args.auth is not None and (":" not in args.auth or not all(args.auth.split(":", 1))):
        p.error("--auth must look like user:password")
    if args.share and not args.auth:
        p.exit(2, "error: --share makes the app public; refusing without a login. "
                  "Add --auth user:password (or set RHIZOME_AUTH=user:password).\n")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from rhizome.ui import CSS, build_app, theme  # after parsing: --help stays instant

    demo = build_app(args.workspace)
    ws_root = demo.rhizome_context.ws.root
    demo.queue(default_concurrency_limit=2, max_size=64).launch(
        server_name=args.host, server_port=args.port, share=args.share,
        auth=tuple(args.auth.split(":", 1)) if args.auth else None,
        max_file_size=args.max_file_size, allowed_paths=[str(ws_root / "runs")],
        theme=theme(), css=CSS, footer_links=["gradio"], show_error=False, quiet=False)


if __name__ == "__main__":
    sys.exit(main())
