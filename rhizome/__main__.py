"""The command line: `python -m rhizome ingest | build | train | export | chat | sessions | eval | demo`.

Each command turns flags into the stage's config, makes one core call and prints the result.
Exit status: 0 success, 2 user error (bad input, missing file, bad flag), 1 unexpected failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from .cli_options import add_config_flags, config_from_args
from .config import BuildConfig, ChatConfig, EvalConfig, ExportConfig, IngestConfig, TrainConfig, train_defaults
from .events import ConsoleProgress
from .models import GEMMA
from .workspace import UserError, Workspace

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "sample"


def cmd_ingest(args: argparse.Namespace, ws: Workspace) -> int:
    from .ingest import ingest_paths

    report = _with_progress(lambda p: ingest_paths(ws, args.paths, config_from_args(IngestConfig, args), progress=p))
    for entry in report["files"]:
        counts = ", ".join(f"{k}={v}" for k, v in (entry.get("counts") or {}).items())
        reason = f" — {entry['reason']}" if entry.get("reason") else ""
        print(f"{entry['status']:<8} {entry['file']} [{entry.get('format', '?')}] {counts}{reason}")
    print(f"{report['records_added']} new records, {report['records_total']} in {ws.corpus}")
    return 0


def cmd_build(args: argparse.Namespace, ws: Workspace) -> int:
    from .curate import build_dataset

    meta = _with_progress(lambda p: build_dataset(ws, config_from_args(BuildConfig, args), progress=p))
    counts = meta.get("counts", {})
    print("split sizes: " + ", ".join(f"{k}={v}" for k, v in counts.items() if isinstance(v, int)))
    print(f"dataset in {ws.dataset}")
    return 0


def cmd_train(args: argparse.Namespace, ws: Workspace) -> int:
    from .train import train_lora

    if args.config:
        base = TrainConfig.load_yaml(args.config)
    else:  # the same hardware-sized defaults the Train tab shows
        from .models import detect_hardware

        base = train_defaults(detect_hardware().device)
    config = config_from_args(TrainConfig, args, base)
    if config.model == GEMMA:
        from .models import gemma_terms_path

        print(f"Gemma 3 270M is provided under the Gemma Terms of Use: {gemma_terms_path()}", file=sys.stderr)
    run_id = _with_progress(lambda p: train_lora(ws, config, progress=p))
    print(f"run id: {run_id}")
    print(f"run folder: {ws.run_dir(run_id)}")
    return 0


def cmd_export(args: argparse.Namespace, ws: Workspace) -> int:
    from .export import export_run

    config = config_from_args(ExportConfig, args)
    paths = _with_progress(lambda p: export_run(ws, args.run, config, progress=p))
    for name, path in paths.items():
        print(f"{name:<10} {path}")
    return 0


def cmd_chat(args: argparse.Namespace, ws: Workspace) -> int:
    from .chat import answer

    question, heard, spoken = args.question, None, None
    if args.audio:
        from .chat.speech import transcribe

        heard = transcribe(args.audio, ws=ws)
        print(f"[stt: {heard.engine}] {heard.note}".rstrip(), file=sys.stderr)
        question = heard.text
    if not question:
        raise UserError("give a question, or --audio FILE with a spoken one"
                        + (" (nothing was heard in the recording)" if heard else ""))
    config = config_from_args(ChatConfig, args)
    if args.session and (args.private or args.persona is not None):
        from .chat.history import update_session

        update_session(ws, args.session, persona=args.persona, private=args.private or None)
    elif args.private or args.persona is not None:
        raise UserError("--private and --persona belong to a session: add --session NAME")
    stream = None if args.json else (lambda tok: print(tok, end="", flush=True))
    result = answer(ws, question, config, on_token=stream, session=args.session)
    if not args.json:
        print()
        if args.session and not result.saved:
            print(f"(session {args.session!r} was deleted while answering: this answer was not saved)", file=sys.stderr)
        for i, source in enumerate(result.sources, 1):
            print(f"[{i}] {source.get('citation') or source.get('title')}")
    if args.speak:
        from .chat.speech import synthesize

        spoken = synthesize(result.answer, args.speak, ws=ws)
        print(f"[tts: {spoken.engine}] {spoken.note} -> {spoken.path}".rstrip(), file=sys.stderr)
    if args.json:  # the speech engines ride along with the answer
        voice = {"transcript": heard.text, "stt_engine": heard.engine, "stt_note": heard.note} if heard else {}
        voice |= {"tts_engine": spoken.engine, "tts_note": spoken.note, "speech_path": str(spoken.path)} if spoken else {}
        print(json.dumps({**result.to_dict(), **voice}, ensure_ascii=False, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace, ws: Workspace) -> int:
    from .evaluate import evaluate_run
    from .evaluate.report import summary_table

    config = config_from_args(EvalConfig, args)
    result = _with_progress(lambda p: evaluate_run(ws, args.run, config, progress=p))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    table = summary_table(result)
    keys = ["model", "score", "term_recall", "similarity", "source_hit_rate", "hit_and_cited_rate", "style", "words"]
    cols = [table[0].index(k) for k in keys] + [len(table[0]) - 1]
    for line in table:
        print("  ".join(_fmt_cell(line[c]).ljust(24 if c == 0 else 10) for c in cols))
    ppl = result.get("perplexity")
    if ppl:
        print(f"held-out perplexity: base {ppl['base']['perplexity']}, tuned {ppl['tuned']['perplexity']} "
              f"(reduction {ppl['reduction']})")
    print(f"eval {result['stamp']} in {result['folder']} ({result['timings']['total_s']} s)")
    return 0


def _fmt_cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def cmd_sessions(args: argparse.Namespace, ws: Workspace) -> int:
    """List sessions, or show / delete / rename / set one."""
    from .chat.history import delete_session, update_session
    from .chat.sessions import SessionStore

    store = SessionStore(ws)
    action, names = args.action, args.names
    if action == "list":
        for s in store.list():
            flags = "".join(f" [{f}]" for f, on in (("private", s.private), ("train", s.train)) if on)
            print(f"{s.name:<24} {time.strftime('%Y-%m-%d %H:%M', time.localtime(s.updated))}  "
                  f"{s.turns:>3} turns  {s.title}{flags}")
        return 0
    need = {"show": 1, "delete": 1, "rename": 2, "set": 1}[action]
    if len(names) != need:
        raise UserError(f"`sessions {action}` takes {need} name{'s' if need > 1 else ''}")
    if action == "show":
        session = store.require(names[0])
        if args.json:
            print(json.dumps({**session.to_dict(), "messages": store.messages(session.name)}, ensure_ascii=False, indent=2))
            return 0
        print(f"# {session.name}: {session.title}" + (f"\npersona: {session.persona}" if session.persona else ""))
        for m in store.messages(session.name):
            print(f"\n[{m['role']}] {m['content']}")
        return 0
    if action == "delete":
        gone = delete_session(ws, names[0])
        print(f"deleted session {gone.name!r} ({gone.turns} turns) and its memory")
    elif action == "rename":
        print(f"renamed to {store.rename(names[0], names[1]).name!r}")
    else:
        s = update_session(ws, store.require(names[0]).name, args.persona, args.private, args.train)
        print(f"{s.name}: private={s.private} train={s.train} persona={s.persona!r}")
    return 0


def cmd_demo(args: argparse.Namespace, ws: Workspace) -> int:
    """Every stage on the bundled sample data with small settings."""
    from .chat import answer
    from .curate import build_dataset
    from .export import export_run
    from .ingest import ingest_paths
    from .train import train_lora

    started = time.time()
    print(f"== ingest {ASSETS}")
    report = _with_progress(lambda p: ingest_paths(ws, [ASSETS], progress=p))
    print(f"   {report['records_total']} records")
    print("== build")
    meta = _with_progress(lambda p: build_dataset(ws, BuildConfig(), progress=p))
    print(f"   splits: {meta.get('counts')}")
    print("== train")
    run_id = _with_progress(lambda p: train_lora(ws, TrainConfig(max_steps=args.steps), progress=p))
    print(f"   run {run_id}")
    print("== export")
    paths = _with_progress(lambda p: export_run(ws, run_id, ExportConfig(quant="q8_0"), progress=p))
    print(f"   {paths.get('gguf')}")
    print("== chat")
    result = answer(ws, args.question, ChatConfig(model=run_id, max_tokens=64))
    print(f"   Q: {args.question}\n   A: {result.answer.strip()}")
    for source in result.sources[:3]:
        print(f"   source: {source.get('citation') or source.get('title')}")
    print(f"demo finished in {time.time() - started:.0f} s; workspace {ws.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS, help="workspace folder (default: ./workspace)")
    parser = argparse.ArgumentParser(prog="python -m rhizome", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", parents=[common], help="read files, folders or .zip exports into corpus.jsonl")
    p.add_argument("paths", nargs="+", help="files, folders or zip archives (format is sniffed)")
    add_config_flags(p, IngestConfig)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("build", parents=[common], help="clean, dedup, score, theme, weight and split into dataset/")
    add_config_flags(p, BuildConfig)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("train", parents=[common], help="LoRA fine-tune on dataset/ into runs/<id>/")
    p.add_argument("--config", help="a run's config.yaml to rerun exactly (flags override it)")
    add_config_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", parents=[common], help="merge a run's adapter, write GGUF and an Ollama Modelfile")
    p.add_argument("--run", required=True, help="run id (see runs/)")
    add_config_flags(p, ExportConfig)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("chat", parents=[common], help="answer one question with cited sources")
    p.add_argument("question", nargs="?", default="", help="the question (or use --audio)")
    p.add_argument("--json", action="store_true", help='print {"answer", "sources", "model", "timings"}')
    p.add_argument("--audio", help="a spoken question (WAV); transcribed offline")
    p.add_argument("--speak", metavar="OUT.wav", help="also speak the answer into this WAV file")
    p.add_argument("--session", help="continue (or start) this named conversation; it is saved")
    p.add_argument("--private", action="store_true", help="with --session: never add it to the memory")
    p.add_argument("--persona", help="with --session: its system prompt, saved with it")
    add_config_flags(p, ChatConfig)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("eval", parents=[common], help="base vs tuned on the held-out material, with and without retrieval")
    p.add_argument("--run", required=True, help="run id (see runs/); its export answers as the tuned model")
    p.add_argument("--json", action="store_true", help="print the whole result (rows, answers, scores) as JSON")
    add_config_flags(p, EvalConfig)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("sessions", parents=[common], help="list, show, delete, rename or set chat sessions")
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "delete", "rename", "set"])
    p.add_argument("names", nargs="*", help="the session (rename: old and new name)")
    p.add_argument("--json", action="store_true", help="show: print the session as JSON")
    p.add_argument("--persona", help="set: the session's system prompt ('' clears it)")
    p.add_argument("--private", action=argparse.BooleanOptionalAction, default=None,
                   help="set: never add this session to the memory")
    p.add_argument("--train", action=argparse.BooleanOptionalAction, default=None,
                   help="set: include this session in the next build's training data")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("demo", parents=[common], help="run every stage on the bundled sample data")
    p.add_argument("--steps", type=int, default=TrainConfig.max_steps, help="training steps")
    p.add_argument("--question", default="How do I keep a sourdough starter healthy?", help="question asked at the end")
    p.set_defaults(func=cmd_demo)
    return parser


def _with_progress(call):
    bar = ConsoleProgress()
    try:
        return call(bar)
    finally:
        bar.close()


def main(argv: list[str] | None = None) -> int:
    # Our own progress bar speaks for every stage; library bars would interleave with it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    args = build_parser().parse_args(argv)
    ws = Workspace(getattr(args, "workspace", None) or "workspace").ensure()
    try:
        return args.func(args, ws)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: one line, the traceback only on request
        print(f"unexpected failure: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        if os.environ.get("RHIZOME_DEBUG"):
            traceback.print_exc()
        else:
            print("(set RHIZOME_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
