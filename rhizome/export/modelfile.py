"""An Ollama `Modelfile` for an exported GGUF, derived from the model's own chat template.

Ollama speaks Go templates, not Jinja. Rather than recognising a few families, the model's
tokenizer renders small conversations whose contents are unique markers; what surrounds the
markers is the text the template puts before a system prompt, between a user turn and the
answer, after an answer, and so on. Those pieces become an Ollama template; the special tokens
that end an answer become its `stop` parameters, and a system prompt the template inserts on its
own (SmolLM2, Qwen2.5) becomes `SYSTEM`. The Go template is then rendered back (`render_go`,
the subset of Go's text/template it uses) on one- and two-turn conversations, with and without a
system prompt, and must equal `apply_chat_template` exactly; otherwise no TEMPLATE is written and
Ollama falls back to the Jinja template embedded in the GGUF.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..workspace import write_text

S, U1, A1, U2 = "QsysQ7", "Qu1Q7", "Qa1Q7", "Qu2Q7"
LAST = 'eq (len (slice $.Messages $i)) 1'


@dataclass
class Derived:
    """What the Modelfile says about the chat format, and whether it reproduces the template."""

    template: str | None
    stops: list[str]
    system: str | None
    exact: bool
    reason: str = ""


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _between(text: str, *markers: str) -> list[str] | None:
    """The pieces of `text` before, between and after the markers (None if one is missing or out of order)."""
    pieces, rest = [], text
    for marker in markers:
        if rest.count(marker) != 1:
            return None
        head, rest = rest.split(marker)
        pieces.append(head)
    return pieces + [rest]


def go_template(pre: str, ua: str, au: str, tail: str, system: tuple[str, str] | None) -> str:
    """The Ollama template that reassembles the pieces for any alternation of user/assistant turns."""
    start = f"{{{{ if .System }}}}{system[0]}{{{{ .System }}}}{system[1]}{{{{ else }}}}{pre}{{{{ end }}}}" if system else pre
    return (f"{start}{{{{ range $i, $m := .Messages }}}}{{{{ if eq .Role \"user\" }}}}{{{{ .Content }}}}"
            f"{{{{ if {LAST} }}}}{tail}{{{{ else }}}}{ua}{{{{ end }}}}"
            f"{{{{ else if eq .Role \"assistant\" }}}}{{{{ .Content }}}}{au}{{{{ end }}}}{{{{ end }}}}")


def derive(tokenizer: Any) -> Derived:
    """Template, stops and default system prompt from the tokenizer's chat template."""
    two = [{"role": "user", "content": U1}, {"role": "assistant", "content": A1}, {"role": "user", "content": U2}]
    try:
        pieces = _between(_render(tokenizer, two), U1, A1, U2)
    except Exception as exc:  # no template, or one that needs roles we do not use
        return Derived(None, _eos(tokenizer), None, False, f"the chat template cannot be rendered ({exc})")
    if pieces is None:
        return Derived(None, _eos(tokenizer), None, False, "the chat template does not show the messages verbatim")
    pre, ua, au, tail = pieces
    pre = _strip_bos(tokenizer, pre)  # llama.cpp/Ollama add BOS themselves (the GGUF says whether)
    system = _system_pieces(tokenizer, two)
    default = None
    if system and pre.startswith(system[0]) and pre.endswith(system[1]) and len(pre) > len(system[0]) + len(system[1]):
        default = pre[len(system[0]): len(pre) - len(system[1])]
    template = go_template(pre, ua, au, tail, system)
    stops = _stops(tokenizer, au)
    exact, reason = check_template(template, tokenizer, system is not None)
    if not exact and system:  # a template that puts the system prompt elsewhere: offer it without
        template = go_template(pre, ua, au, tail, None)
        exact, reason = check_template(template, tokenizer, False)
        default = None
    return Derived(template if exact else None, stops, default, exact, reason)


def _system_pieces(tokenizer: Any, two: list[dict[str, str]]) -> tuple[str, str] | None:
    try:
        pieces = _between(_render(tokenizer, [{"role": "system", "content": S}, *two]), S, U1)
    except Exception:  # templates that refuse a system turn
        return None
    return (_strip_bos(tokenizer, pieces[0]), pieces[1]) if pieces else None


def _strip_bos(tokenizer: Any, text: str) -> str:
    """The template's leading BOS, when the tokenizer adds one itself (llama.cpp and Ollama do
    the same from the GGUF), so the prompt does not start with two."""
    bos = tokenizer.bos_token
    if not bos or not text.startswith(bos):
        return text
    ids = tokenizer("a")["input_ids"]
    return text[len(bos):] if ids and ids[0] == tokenizer.bos_token_id else text


def _eos(tokenizer: Any) -> list[str]:
    return [tokenizer.eos_token] if tokenizer.eos_token else []


def _stops(tokenizer: Any, after_answer: str) -> list[str]:
    """Special tokens that follow an answer (end of turn, next turn's header) and the EOS token."""
    special = sorted(set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values()
                                                          if t.special}, key=len, reverse=True)
    found = []
    for match in re.finditer("|".join(re.escape(t) for t in special if t), after_answer) if special else []:
        if match.group(0) not in found:
            found.append(match.group(0))
    return found + [t for t in _eos(tokenizer) if t not in found]


def check_template(template: str, tokenizer: Any, with_system: bool) -> tuple[bool, str]:
    """Render one- and two-turn conversations both ways; the Go rendering must equal the Jinja one."""
    one = [{"role": "user", "content": "What is a rhizome?"}]
    two = one + [{"role": "assistant", "content": "A root that spreads sideways."},
                 {"role": "user", "content": "And a tuber?"}]
    cases = [(None, one), (None, two)] + ([("Be brief.", one), ("Be brief.", two)] if with_system else [])
    for system, messages in cases:
        full = ([{"role": "system", "content": system}] if system else []) + messages
        want = _strip_bos(tokenizer, _render(tokenizer, full))
        got = render_go(template, system, messages)
        if got != want:
            return False, f"the derived template renders {got[:80]!r}... where the model's renders {want[:80]!r}..."
    return True, ""


_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


def render_go(template: str, system: str | None, messages: list[dict[str, str]]) -> str:
    """Render the subset of Go's text/template that `go_template` emits (if/else if/else/range,
    .System, .Role, .Content, `eq`, and the `len (slice $.Messages $i)` last-message test)."""
    tokens, pos = [], 0
    for match in _ACTION.finditer(template):
        tokens.append(("text", template[pos: match.start()]))
        tokens.append(("action", match.group(1)))
        pos = match.end()
    tokens.append(("text", template[pos:]))
    nodes, _end, closer = _parse(tokens)
    if closer is not None:
        raise ValueError(f"unexpected {{{{ {closer} }}}} in Go template")
    out: list[str] = []
    _run(nodes, {"System": system or "", "Messages": messages}, None, out)
    return "".join(out)


def _value(expr: str, root: dict[str, Any], item: tuple[int, dict[str, str]] | None) -> Any:
    expr = expr.strip()
    if expr.startswith('"'):
        return expr.strip('"')
    if expr == LAST:
        return item is not None and item[0] == len(root["Messages"]) - 1
    if expr.startswith("eq "):
        left, right = re.match(r'eq (\S+) (".*?"|\d+)$', expr).groups()
        return str(_value(left, root, item)) == right.strip('"')
    if expr == ".System":
        return root["System"]
    if expr in (".Role", ".Content") and item is not None:
        return item[1][expr[1:].lower()]
    raise ValueError(f"unsupported Go template expression {expr!r}")


def _parse(tokens: list, i: int = 0) -> tuple[list, int, str | None]:
    """Nodes up to the next else/end at this level: (nodes, index of that action, its text)."""
    nodes: list = []
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "text":
            nodes.append(("text", text))
        elif text.startswith("if "):
            branches, cond = [], text[3:]
            while True:
                body, i, closer = _parse(tokens, i + 1)
                branches.append((cond, body))
                if closer is None:
                    raise ValueError("unterminated if in Go template")
                if closer == "end":
                    break
                cond = closer[len("else if "):] if closer.startswith("else if ") else "true"
            nodes.append(("if", branches))
        elif text.startswith("range "):
            body, i, closer = _parse(tokens, i + 1)
            if closer != "end":
                raise ValueError("unterminated range in Go template")
            nodes.append(("range", body))
        elif text == "end" or text.startswith("else"):
            return nodes, i, text
        else:
            nodes.append(("expr", text))
        i += 1
    return nodes, i, None


def _run(nodes: list, root: dict[str, Any], item: Any, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            out.append(str(_value(node[1], root, item)))
        elif node[0] == "range":
            for index, message in enumerate(root["Messages"]):
                _run(node[1], root, (index, message), out)
        else:
            for cond, body in node[1]:
                if cond == "true" or _value(cond, root, item):
                    _run(body, root, item, out)
                    break


def modelfile_text(gguf_name: str, derived: Derived, system: str | None = None, comment: str = "") -> str:
    """The Modelfile content for a GGUF sitting next to it."""
    lines = [f"# {comment}" if comment else "# Ollama Modelfile written by Rhizome",
             "# usage: ollama create my-model -f Modelfile && ollama run my-model", f"FROM ./{gguf_name}", ""]
    if derived.template:
        lines += ["# TEMPLATE derived from the model's chat template; it renders conversations exactly as it does",
                  f'TEMPLATE """{derived.template}"""', ""]
    else:
        lines += [f"# no TEMPLATE: {derived.reason}; Ollama uses the template embedded in the GGUF", ""]
    lines += [f'PARAMETER stop "{stop}"' for stop in derived.stops]
    system = system or derived.system
    if system:
        lines += ["", f'SYSTEM """{system}"""']
    return "\n".join(lines) + "\n"


def write_modelfile(out: Path, gguf_path: Path, system: str | None = None, merged_dir: Path | None = None,
                    comment: str = "") -> Path:
    """Write `out` for the GGUF (referenced relative to the Modelfile's folder), from the merged
    model's tokenizer; returns the path."""
    from transformers import AutoTokenizer

    derived = derive(AutoTokenizer.from_pretrained(str(merged_dir)))
    write_text(out, modelfile_text(Path(gguf_path).name, derived, system, comment))
    return Path(out)
