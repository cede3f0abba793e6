"""Typed TOML: a TOML file → nested dataclasses, checked.

The one loader behind every config (the server's `config.toml`, training configs): unknown keys
and wrong types are errors that name the key and the file; a missing key takes the dataclass
default, so a file only needs what it changes. `config.toml` is shared: the server reads its
tables and skips `[corpus]`, which training reads on its own (`table="corpus"`).
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TypeVar

from engines.errors import SignStreamError

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"  # the deployer's file; config paths are relative to REPO_ROOT


class ConfigError(SignStreamError):
    code = "bad_config"


def load_toml(cls: type[T], path: str | Path, table: str | None = None, skip: tuple[str, ...] = ()) -> T:
    """Read `path` and build a `cls` dataclass from it, checking every key and type.

    table: build `cls` from that one table only (absent: all defaults), leaving the others to
    their own readers. skip: top-level tables another reader owns, left unchecked here.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if table is not None:
        raw = raw.get(table, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: '{table}' must be a table [{table}]")
    try:
        return build(cls, {k: v for k, v in raw.items() if k not in skip}, path,
                     prefix=f"{table}." if table is not None else "")
    except ValueError as exc:  # a section's own validation in __post_init__
        raise ConfigError(f"{path}: {exc}") from None


def build(cls: type[T], raw: dict, path: Path, prefix: str = "") -> T:
    """Build a dataclass from a parsed table; `path` and `prefix` only name things in errors."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        raise ConfigError(f"{path}: unknown key {names} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{key}' must be a table [{key}]")
            values[name] = build(hint, value, path, prefix=f"{key}.")
        else:
            values[name] = _check(value, hint, key, path)
    return cls(**values)


def _check(value, hint, key: str, path: Path):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg, key, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: '{key}' must be {_name(hint)}, got {type(value).__name__} {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: '{key}' must be a list, got {type(value).__name__} {value!r}")
        return [_check(v, args[0], f"{key}[{i}]", path) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' must be a table, got {type(value).__name__} {value!r}")
        return {k: _check(v, args[1], f"{key}.{k}", path) for k, v in value.items()}
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{path}: '{key}' must be empty")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: '{key}' must be {_name(hint)}, got {type(value).__name__} {value!r}")
    return value


def _name(hint) -> str:
    return getattr(hint, "__name__", str(hint))
