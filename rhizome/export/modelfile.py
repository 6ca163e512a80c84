"""An Ollama `Modelfile` for an exported GGUF: `ollama create NAME -f Modelfile` then `ollama run NAME`.

Ollama speaks Go templates, not the Jinja chat template stored in the GGUF, so the template
family is recognised from the Jinja text (ChatML, Llama 3, Llama 2/Mistral `[INST]`) and written
in Ollama's form, with the stop tokens that end a turn in that family. A template Rhizome does
not recognise is left out: Ollama then falls back to the template embedded in the GGUF.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..workspace import write_text

CHATML = '''{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
'''
LLAMA3 = '''{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

'''
INST = '''{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}[INST] {{ if and (eq $i 0) $.System }}{{ $.System }}

{{ end }}{{ .Content }} [/INST]{{- else if eq .Role "assistant" }} {{ .Content }}</s>{{- end }}{{- end }}'''

# family -> (marker in the Jinja template, Ollama template, stop tokens, system block pattern)
FAMILIES: dict[str, tuple[str, str, list[str], str]] = {
    "chatml": ("<|im_start|>", CHATML, ["<|im_start|>", "<|im_end|>"], r"<\|im_start\|>system\n(.*?)<\|im_end\|>"),
    "llama3": ("<|start_header_id|>", LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>"),
    "inst": ("[INST]", INST, ["[INST]", "[/INST]"], r"^$"),
}


def template_family(chat_template: str | None) -> str | None:
    for family, (marker, *_rest) in FAMILIES.items():
        if chat_template and marker in chat_template:
            return family
    return None


def default_system(chat_template: str, family: str) -> str | None:
    """The system prompt the Jinja template inserts when the conversation has none (SmolLM2 does)."""
    import jinja2.sandbox

    try:
        rendered = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(chat_template).render(
            messages=[{"role": "user", "content": "Q"}], add_generation_prompt=True, bos_token="", eos_token=""
        )
    except Exception:  # a template that needs more context than we give it: no default then
        return None
    match = re.search(FAMILIES[family][3], rendered, flags=re.S)
    return match.group(1).strip() if match and match.group(1).strip() else None


def modelfile_text(gguf_name: str, chat_template: str | None, eos_token: str | None,
                   system: str | None = None, comment: str = "") -> str:
    """The Modelfile content for a GGUF sitting next to it."""
    lines = [f"# {comment}" if comment else "# Ollama Modelfile written by Rhizome",
             "# usage: ollama create my-model -f Modelfile && ollama run my-model", f"FROM ./{gguf_name}", ""]
    family = template_family(chat_template)
    stops = []
    if family:
        _marker, template, stops, _pattern = FAMILIES[family]
        lines += [f'TEMPLATE """{template}"""', ""]
        system = system or default_system(chat_template or "", family)
    else:
        lines += ["# chat template not recognised: Ollama uses the one embedded in the GGUF", ""]
    if eos_token and eos_token not in stops:
        stops = stops + [eos_token]
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    if system:
        lines += ["", f'SYSTEM """{system}"""']
    return "\n".join(lines) + "\n"


def gguf_chat_metadata(gguf_path: Path) -> tuple[str | None, str | None]:
    """Chat template and end-of-sequence token text stored in a GGUF."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    fields: dict[str, Any] = reader.fields
    template = fields["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in fields else None
    eos = None
    if "tokenizer.ggml.eos_token_id" in fields and "tokenizer.ggml.tokens" in fields:
        eos = fields["tokenizer.ggml.tokens"].contents(int(fields["tokenizer.ggml.eos_token_id"].contents()))
    return template, eos


def write_modelfile(out: Path, gguf_path: Path, system: str | None = None, comment: str = "") -> Path:
    """Write `out` for the GGUF (referenced relative to the Modelfile's folder)."""
    template, eos = gguf_chat_metadata(gguf_path)
    write_text(out, modelfile_text(Path(gguf_path).name, template, eos, system, comment))
    return Path(out)
