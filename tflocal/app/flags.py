"""Command-line flags generated from a typed dataclass config: the one way every command is set.

``add_config_arguments(parser, Cls)`` adds ``--config FILE.yaml``, repeatable ``--set key=value``,
``--quiet`` and one flag per field: ``--batch_size`` / ``--batch-size``, nested dataclasses dotted
(``--optim.lr``, ``--model.readout``). Help comes from the field's attribute docstring (the string
right under ``x: int = 3``; reST double backquotes dropped), the metavar from its type (a ``Literal``'s values as choices), the
default from the class. ``config_from_args(Cls, args)`` builds the config, later winning:
dataclass defaults < YAML < ``--set`` < explicit flags. Values are read by
:func:`tflocal.config.load_config` (bad values and unknown keys are :class:`UserError`), and the
class's ``__post_init__`` checks them. A bool flag alone means true (``--crops``); a list flag
repeats and splits on commas (``--scorer a --scorer b``, ``--depth 1,2``) unless the field's
metadata says ``{"commas": False}``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Iterator
from typing import Any, TypeVar

from tflocal.config import load_config

T = TypeVar("T")
DEST = "cfg:"
"""Prefix of the argparse destinations of generated flags (``cfg:optim.lr``)."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a class body: field name -> its docstring, whitespace collapsed."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class Flag:
    """One generated flag: dotted field name, type, default and docstring."""

    name: str
    type: Any
    default: Any
    doc: str
    commas: bool = True


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def iter_flags(cls: type, prefix: str = "", defaults: Any = None) -> Iterator[Flag]:
    """Every leaf field of ``cls``, nested dataclasses flattened with dots."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_flags(tp, f"{prefix}{f.name}.", default)
        else:
            commas = f.metadata.get("commas", True)
            yield Flag(prefix + f.name, tp, default, docs.get(f.name, ""), commas)


def _items(tp: Any) -> tuple[bool, Any]:
    """(is a list, its item type)."""
    if typing.get_origin(tp) in (list, tuple):
        args = typing.get_args(tp)
        return True, args[0] if args else str
    return False, tp


def _metavar(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    if origin in (typing.Union, types.UnionType):
        return "|".join(_metavar(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is dict or tp is dict:
        return "YAML_MAPPING"
    return {bool: "BOOL", int: "INT", float: "FLOAT", str: "STR"}.get(tp, "VALUE")


class _Items(argparse.Action):
    """A repeatable list flag: each use adds its value (split on commas when ``const`` is true)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items += [v.strip() for v in values.split(",") if v.strip()] if self.const else [values]
        setattr(namespace, self.dest, items)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    aliases: dict[str, tuple[str, ...]] | None = None,
    epilog: str | None = None,
) -> None:
    """``--config``, ``--set``, ``--quiet`` and one flag per field of ``cls`` (see the module doc).
    aliases: field name -> extra option strings (``{"scorers": ("--scorer",)}``); epilog: the
    command's examples, shown as written under ``--help``."""
    aliases = aliases or {}
    if epilog:
        parser.epilog = epilog
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML recipe; --set and flags override it")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, dotted for sections (optim.lr=1e-4); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    group = parser.add_argument_group(f"{cls.__name__} fields (also keys of --config and --set)")
    for flag in iter_flags(cls):
        names = list(dict.fromkeys([f"--{flag.name.replace('_', '-')}", f"--{flag.name}"]))
        names += aliases.get(flag.name, ())
        shown = "required" if flag.default is dataclasses.MISSING else repr(flag.default)
        doc = f"{flag.doc} (default: {shown})".strip().replace("``", "").replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": DEST + flag.name, "default": argparse.SUPPRESS, "help": doc}
        is_list, item = _items(flag.type)
        if is_list:
            kwargs.update(action=_Items, const=flag.commas, metavar=_metavar(item))
        elif flag.type is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        else:
            kwargs.update(metavar=_metavar(flag.type))
        group.add_argument(*names, **kwargs)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The generated flags given on the command line: dotted field name -> raw value."""
    return {k[len(DEST) :]: v for k, v in vars(args).items() if k.startswith(DEST)}


def config_from_args(cls: type[T], args: argparse.Namespace, **fields: Any) -> T:
    """The config of ``cls``: defaults < ``args.config`` YAML < ``args.set`` < flags < ``fields``.
    ``--quiet`` sets a ``progress`` field to false when the class has one."""
    given = flag_values(args)
    if getattr(args, "quiet", False) and "progress" in {f.name for f in dataclasses.fields(cls)}:
        given["progress"] = False
    return load_config(cls, getattr(args, "config", None), getattr(args, "set", []), **{**given, **fields})
