"""Where an evaluation is kept and how it reads: `runs/<id>/eval/<stamp>/results.json` + `summary.md`.

Each eval gets its own timestamped folder, so a run's evals accumulate and any two can be
compared (`compare_evals`: the change of every headline number, row by row). The summary is
Markdown: the side-by-side table, the win/loss counts, perplexity per theme, the score per
theme, and the comparison with the previous eval of the same run when there is one.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..workspace import UserError, Workspace, read_json, write_json, write_text

HEADLINE = ("score", "term_recall", "similarity", "source_hit_rate", "hit_and_cited_rate", "style",
            "words", "empty_rate", "refusal_rate", "seconds")


def eval_root(ws: Workspace, run_id: str) -> Path:
    return ws.run_dir(run_id) / "eval"


def list_evals(ws: Workspace, run_id: str) -> list[str]:
    """The run's eval stamps, newest first (only complete ones: results.json written)."""
    root = eval_root(ws, run_id)
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if (p / "results.json").is_file()), reverse=True)


def load_eval(ws: Workspace, run_id: str, stamp: str) -> dict[str, Any]:
    path = eval_root(ws, run_id) / stamp / "results.json"
    data = read_json(path, default=None)
    if data is None:
        raise UserError(f"no eval {stamp!r} for run {run_id} (looked for {path})")
    return data


def latest_eval(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    stamps = list_evals(ws, run_id)
    return load_eval(ws, run_id, stamps[0]) if stamps else None


def row_name(row: dict[str, Any]) -> str:
    return f"{row['label']} {'+ retrieval' if row['retrieval'] else '(no retrieval)'}"


def _new_stamp(root: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    n, name = 1, stamp
    while (root / name).exists():  # two evals in one second keep both
        n += 1
        name = f"{stamp}-{n}"
    return name


def save_eval(ws: Workspace, run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Write results.json and summary.md in a new stamped folder; adds `stamp`, `folder`, `previous`."""
    root = eval_root(ws, run_id)
    previous = list_evals(ws, run_id)
    stamp = _new_stamp(root)
    folder = root / stamp
    folder.mkdir(parents=True, exist_ok=True)
    result = {**result, "stamp": stamp, "folder": str(folder), "previous": previous[0] if previous else None}
    if previous:
        result["compared"] = compare_evals(load_eval(ws, run_id, previous[0]), result)
    write_text(folder / "summary.md", render_markdown(result))
    write_json(folder / "results.json", result)  # last: its presence marks the eval complete
    return result


def compare_evals(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """For each row in both evals: each headline number before, after and the change."""
    before = {row_name(r): r.get("summary", {}) for r in old.get("rows", [])}
    out = []
    for row in new.get("rows", []):
        name = row_name(row)
        if name not in before:
            continue
        changes = {}
        for key in HEADLINE:
            a, b = before[name].get(key), row.get("summary", {}).get(key)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                changes[key] = {"before": a, "after": b, "change": round(b - a, 4)}
        out.append({"row": name, "changes": changes})
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def summary_table(result: dict[str, Any]) -> list[list[Any]]:
    """Header + one line per row: the side-by-side table (also shown in the Eval tab)."""
    table = [["model", *HEADLINE, "wins / losses / ties vs base"]]
    for row in result["rows"]:
        s, wl = row.get("summary", {}), row.get("vs_base")
        table.append([row_name(row), *[s.get(k) for k in HEADLINE],
                      f"{wl['wins']} / {wl['losses']} / {wl['ties']}" if wl else ""])
    return table


def _md_table(table: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(c) for c in table[0]) + " |", "|" + "---|" * len(table[0])]
    return lines + ["| " + " | ".join(_cell(c) for c in line) + " |" for line in table[1:]]


def _perplexity_lines(ppl: dict[str, Any] | None) -> list[str]:
    if not ppl:
        return ["Perplexity not measured."]
    sampled = f" of {ppl['of']}" if ppl.get("of", ppl["examples"]) != ppl["examples"] else ""
    lines = [f"Held-out perplexity of the person's replies ({ppl['examples']}{sampled} test examples, assistant "
             f"tokens only): "
             f"base {_cell(ppl['base']['perplexity'])}, tuned {_cell(ppl['tuned']['perplexity'])}, "
             f"reduction {_cell(ppl['reduction'])}.", ""]
    groups = [("kind", "per_kind"), ("theme", "per_theme")]
    for title, key in groups:
        table = [[title, "examples", "base", "tuned"]]
        for name, base in ppl["base"][key].items():
            table.append([name, base["examples"], base["perplexity"], ppl["tuned"][key][name]["perplexity"]])
        lines += _md_table(table) + [""]
    return lines


def _theme_lines(result: dict[str, Any]) -> list[str]:
    rows = result["rows"]
    themes = sorted({t for r in rows for t in r.get("per_theme", {})})
    table = [["theme", *[row_name(r) for r in rows]]]
    table += [[t, *[r.get("per_theme", {}).get(t) for r in rows]] for t in themes]
    return _md_table(table)


def _style_lines(result: dict[str, Any]) -> list[str]:
    table = [["model", "answers", "style (similarity to the person's replies)", "similarity to the real reply",
              "words", "empty", "refusals"]]
    for row in result["rows"]:
        if row.get("style"):
            s = row["style"]
            table.append([row_name(row), s.get("n"), s.get("style"), s.get("similarity"), s.get("words"),
                          s.get("empty_rate"), s.get("refusal_rate")])
    return _md_table(table) if len(table) > 1 else ["No conversation prompts among the questions."]


def render_markdown(result: dict[str, Any]) -> str:
    cfg = result.get("config", {})
    held = sum(q.get("held_out", False) for q in result["questions"])
    lines = [f"# Eval of run {result['run_id']} ({result.get('stamp', '')})", "",
             f"{len(result['questions'])} questions about the person's notes and conversations ({held} held out), "
             f"seed {cfg.get('seed')}, answer mode {cfg.get('answer_mode')}, {result['timings'].get('total_s')} s.", "",
             "## Questions", "", *_md_table(summary_table(result)), "",
             "score = mean of key-term recall and embedding similarity to the reference; source_hit_rate = the "
             "question's note was among the sources; hit_and_cited_rate = and the answer cites it.", "",
             "## Held-out perplexity", "", *_perplexity_lines(result.get("perplexity")), "",
             "## Score per theme", "", *_theme_lines(result), "", "## Style", "", *_style_lines(result), ""]
    if result.get("compared"):
        lines += [f"## Compared with the previous eval ({result['previous']})", ""]
        table = [["row", "number", "before", "after", "change"]]
        for entry in result["compared"]:
            for key, c in entry["changes"].items():
                table.append([entry["row"], key, c["before"], c["after"], c["change"]])
        lines += _md_table(table) + [""]
    return "\n".join(lines)
