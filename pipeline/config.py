"""The one user-error type and the one TOML-table-to-dataclass converter, shared by every layer.

Dependency-free on purpose: `jobs/` turns a UsageError into one line and exit status 2, and `train/` and
`tokenizer/` raise it without importing anything heavy.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """A mistake the user can fix (bad argument, config key, missing input): one line, exit status 2."""


def read_toml(path: str) -> dict[str, Any]:
    """A TOML config file, or a UsageError saying why not: the one place a config file is read."""
    if not os.path.isfile(path):
        raise UsageError(f"no such config file: {path}")
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{path}: invalid TOML: {e}") from None


def _accepts(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) for a TOML value against a field's type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return True, None
        for arm in typing.get_args(tp):
            if arm is not type(None):
                ok, conv = _accepts(arm, value)
                if ok:
                    return True, conv
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        args = typing.get_args(tp) or (Any, ...)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any length, one type
            converted = [_accepts(args[0], v) for v in value]
        elif len(args) == len(value):  # tuple[int, float]: one type per position
            converted = [_accepts(a, v) for a, v in zip(args, value, strict=True)]
        else:
            return False, value
        return all(ok for ok, _ in converted), tuple(v for _, v in converted)
    if origin is dict or tp is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    return True, value  # a type this converter does not know: the dataclass checks it


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "").replace(" | None", "")


def from_table(cls: type[T], table: Mapping[str, Any], section: str, base: T | None = None) -> T:
    """Build config dataclass `cls` from a TOML table (on top of `base`), checking names and types.

    An unknown key or a value of the wrong type is a UsageError naming it: a typo must never silently run
    with a default. A dataclass may validate further in __post_init__ by raising ValueError.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise UsageError(f"[{section}] has unknown key(s) {', '.join(unknown)}; known: {', '.join(names)}")
    values = {}
    for key, value in table.items():
        if dataclasses.is_dataclass(hints[key]):  # a nested table: [section.key]
            if not isinstance(value, Mapping):
                raise UsageError(f"[{section}] {key} must be a table, got {type(value).__name__} {value!r}")
            inner = getattr(base, key) if base is not None else None
            values[key] = from_table(hints[key], value, f"{section}.{key}", inner)
            continue
        ok, converted = _accepts(hints[key], value)
        if not ok:
            raise UsageError(
                f"[{section}] {key} must be {_type_name(hints[key])}, got {type(value).__name__} {value!r}"
            )
        values[key] = converted
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]
    except (TypeError, ValueError) as e:
        raise UsageError(f"[{section}] {e}") from None


def to_table(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain, JSON-ready table (tuples as lists): what fingerprints hash."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = to_table(value)
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
