"""Typed dataclass configs read from YAML, validated early.

``load_config(Cls, path=None, overrides=["a.b=3", ...], **fields)`` builds a dataclass from a
YAML file, then ``--set key=value`` overrides, then keyword fields (the command-line flags made
by :mod:`tflocal.app.flags`). Unknown keys are errors that name the key and list the choices;
values are coerced to the field's type (a ``Literal`` to its values' type; the class's
``__post_init__`` checks the choice). Nested dataclasses are addressed with dots
(``optim.lr=1e-4``); a partial section is read over the field's default. Keys renamed on a class
(``RENAMED = {"old": "new"}``) are still read, with a one-line note.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tflocal.errors import UserError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:  # choices are checked by the class's __post_init__
        return _coerce(value, type(typing.get_args(tp)[0]), key)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        for a in args:
            try:
                return _coerce(value, a, key)
            except (UserError, ValueError, TypeError):
                continue
        raise UserError(f"config key '{key}': cannot read {value!r} as {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = (
                [v for v in value.split(",") if v != ""]
                if not value.startswith("[")
                else yaml.safe_load(value)
            )
        out = [_coerce(v, inner, key) if inner is not Any and inner is not Ellipsis else v for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise UserError(f"config key '{key}': expected true/false, got {value!r}")
    if tp in (int, float):
        try:
            v = yaml.safe_load(value) if isinstance(value, str) else value
            if tp is int and isinstance(v, float) and not v.is_integer():
                raise ValueError
            if tp is float and not math.isfinite(float(v)):
                raise UserError(f"config key '{key}': {value!r} is not a finite number: give a real value")
            return tp(v)
        except (ValueError, TypeError) as err:
            raise UserError(f"config key '{key}': expected {tp.__name__}, got {value!r}") from err
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/yes/off/on as a boolean
            return "yes" if value else "no"
        return str(value)
    return value


def _section_defaults(cls: type) -> dict[str, dict[str, Any]]:
    """Defaults of the nested dataclass fields, as mappings: a partial mapping for a section is
    read over the field's own default (``QuickstartConfig.model``), not its class's."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            if dataclasses.is_dataclass(value):
                out[f.name] = to_dict(value)
    return out


def _renamed(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Old key names still read (``RENAMED = {"old": "new"}`` on the class), with a note."""
    renamed = getattr(cls, "RENAMED", {})
    data = dict(data)
    for old, new in renamed.items():
        if old in data:
            print(
                f"tflocal: config key '{prefix}{old}' is now '{prefix}{new}'; read as such", file=sys.stderr
            )
            value = data.pop(old)
            data[new] = value
    return data


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys."""
    types_ = _field_types(cls)
    data = _renamed(cls, data, prefix)
    for name, default in _section_defaults(cls).items():
        if isinstance(data.get(name), dict):
            data[name] = _merge(default, data[name])
    unknown = [k for k in data if k not in types_]
    if unknown:
        raise UserError(
            f"unknown config key '{prefix}{unknown[0]}'; choices: {', '.join(prefix + k for k in types_)}"
        )
    kwargs = {k: _coerce(v, types_[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise UserError(f"config {cls.__name__}: {err}") from err


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` (``optim.lr``) of a nested mapping in place."""
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"config key {key!r}: '{p}' is not a section")
    node[parts[-1]] = value


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``a.b=value`` override to a nested mapping in place."""
    if "=" not in item:
        raise UserError(f"override {item!r} is not of the form key=value")
    key, value = item.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError as err:
        raise UserError(
            f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', None) or err}); "
            "quote it or fix the brackets"
        ) from None
    set_key(data, key, parsed)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping at the top level")
    return data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None, **fields: Any
) -> T:
    """YAML file, then ``key=value`` overrides, then explicit fields (those not None; a dotted
    name such as ``"optim.lr"`` sets a nested field)."""
    data: dict[str, Any] = _renamed(cls, read_yaml(path), "") if path else {}
    for item in overrides or []:
        apply_override(data, item)
    for k, v in fields.items():
        if v is not None:
            set_key(data, k, v)
    return from_dict(cls, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain data (for checkpoints and cache attributes)."""
    return dataclasses.asdict(cfg)
