"""Turn a stage's config dataclass into command-line flags, and flags back into the config.

Each dataclass field becomes `--field-name`, with its type from the default and its help text
from the docstring written under the field, so the CLI and the config never drift apart.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import typing
from functools import lru_cache
from typing import Any

from .config import StageConfig


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def add_config_flags(parser: argparse.ArgumentParser, cls: type[StageConfig], skip: tuple[str, ...] = ()) -> None:
    """One flag per field; defaults stay None so only flags the user gave override the config."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} settings")
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        help_text = f"{docs.get(field.name, '')} (default: {default})".strip()
        kind = _base_type(hints[field.name], default)
        if kind is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind in (list, tuple):
            group.add_argument(flag, dest=field.name, default=None, metavar="A,B", help=help_text,
                               type=lambda s: [x.strip() for x in s.split(",") if x.strip()])
        else:
            group.add_argument(flag, dest=field.name, default=None, type=kind, help=help_text)


def config_from_args(cls: type[StageConfig], args: argparse.Namespace, base: StageConfig | None = None) -> Any:
    """The config with every flag the user gave applied over `base` (or the defaults)."""
    values = base.to_dict() if base is not None else {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    if cls.__name__ == "BuildConfig" and isinstance(values.get("split"), list):
        values["split"] = tuple(float(x) for x in values["split"])
    return cls.from_dict(values)


def _base_type(hint: Any, default: Any) -> type:
    """bool/int/float/str/list from a type hint such as `str | None` or `list[str]`."""
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return origin
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:
        return _base_type(args[0], default)
    if isinstance(hint, type):
        return hint
    return type(default) if default is not None else str
