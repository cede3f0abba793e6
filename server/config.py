"""The one config loader: `config.toml` → typed, validated dataclasses.

Every section is a dataclass; every key has a type. Unknown keys and wrong types are errors that
name the key and the file. A missing key takes the dataclass default, so a deployer's file only
needs what it changes.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from engines.errors import SignStreamError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.toml"


class ConfigError(SignStreamError):
    code = "bad_config"


@dataclass
class ServerSection:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class EngineSection:
    path: str = "engines/default"
    backend: str = "onnxruntime"


@dataclass
class AvatarSection:
    path: str = "server/avatar/assets/signer.glb"
    bone_map: dict[str, str] = field(default_factory=dict)
    skinning: str = "rigid"
    min_confidence: float = 0.3
    hold_seconds: float = 0.25
    ease_seconds: float = 0.5
    smoothing: bool = True
    finger_limits: bool = True


@dataclass
class VideoSection:
    fps: int = 25
    width: int = 512
    height: int = 512
    background: list[float] = field(default_factory=lambda: [0.93, 0.94, 0.96, 1.0])
    antialias: int = 0


@dataclass
class CorpusSection:
    out: str = "data/corpus"
    languages: list[str] = field(default_factory=list)
    words_per_lang: int = 1000
    seed: int = 0
    fps: float = 25.0


@dataclass
class LiveSection:
    """The live pipeline: motion timeline and backlog policy (see the README, "The live server")."""

    default_language: str = "ase"
    lookahead_s: float = 0.5
    transition_s: float = 0.2
    rest_transition_s: float = 0.4
    hold_s: float = 0.3
    speedup_after_s: float = 3.0
    max_speedup: float = 1.5
    text_after_s: float = 10.0
    word_seconds: float = 1.2
    outbox_frames: int = 50
    shutdown_grace_s: float = 5.0


@dataclass
class SegmenterSection:
    """When caption text becomes a translation unit."""

    pause_s: float = 0.4
    max_wait_s: float = 2.5
    remembered_captions: int = 32


@dataclass
class LimitsSection:
    """Security and limits for /ws and /offer."""

    token: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    max_sessions: int = 256
    max_message_bytes: int = 65536
    max_caption_chars: int = 2000
    message_rate: float = 20.0
    message_burst: int = 40
    idle_timeout_s: float = 300.0


@dataclass
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    engine: EngineSection = field(default_factory=EngineSection)
    avatar: AvatarSection = field(default_factory=AvatarSection)
    video: VideoSection = field(default_factory=VideoSection)
    corpus: CorpusSection = field(default_factory=CorpusSection)
    live: LiveSection = field(default_factory=LiveSection)
    segmenter: SegmenterSection = field(default_factory=SegmenterSection)
    limits: LimitsSection = field(default_factory=LimitsSection)

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the repository root unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else REPO_ROOT / p


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file (the repository's `config.toml` by default)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _build(Config, raw, path, prefix="")


def _build(cls: type, raw: dict, path: Path, prefix: str):
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
            values[name] = _build(hint, value, path, prefix=f"{key}.")
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
