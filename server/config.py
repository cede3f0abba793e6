"""The one config loader: `config.toml` → typed, validated dataclasses.

Every section is a dataclass; every key has a type. Unknown keys and wrong types are errors that
name the key and the file. A missing key takes the dataclass default, so a deployer's file only
needs what it changes. The `[corpus]` table of the same file is training's (training/corpus.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import fail
from engines.typed_config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_toml

TRAINING_TABLES = ("corpus",)  # tables of config.toml that training reads, not the server


@dataclass
class ServerSection:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class EngineSection:
    path: str = "engines/default"
    backend: str = "onnxruntime"
    notation: dict[str, str] = field(default_factory=dict)  # sign language → notation lexicon file


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
class LiveSection:
    """The live pipeline: motion timeline and backlog policy (docs/server.md)."""

    default_language: str = "ase"
    lookahead_s: float = 0.5
    transition_s: float = 0.2
    rest_transition_s: float = 0.4
    hold_s: float = 0.3
    speedup_after_s: float = 3.0
    max_speedup: float = 1.5
    text_after_s: float = 10.0
    word_seconds: float = 1.2
    letter_seconds: float = 0.55
    outbox_frames: int = 50
    shutdown_grace_s: float = 5.0


@dataclass
class SegmenterSection:
    """When caption text becomes a translation unit."""

    pause_s: float = 0.4
    max_wait_s: float = 2.5
    remembered_captions: int = 32
    max_unit_words: int = 6

    def __post_init__(self) -> None:
        if self.max_unit_words < 1:
            raise ValueError(f"'segmenter.max_unit_words' must be at least 1, got {self.max_unit_words}")


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
    caption_char_rate: float = 2000.0
    idle_timeout_s: float = 300.0
    hello_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    outbox_bytes: int = 1_000_000
    metrics_token: str = ""


@dataclass
class WebrtcSection:
    """/offer: the avatar as a WebRTC video track plus a data channel (docs/webrtc.md)."""

    codec: str = "vp8"
    ice_servers: list[str] = field(default_factory=list)
    loopback_only: bool = True
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.codec not in ("vp8", "h264"):
            raise ValueError(f"'webrtc.codec' must be \"vp8\" or \"h264\", got {self.codec!r}")


@dataclass
class ClusterSection:
    """Named channels shared by several servers through Redis (docs/cluster.md). Empty `redis`: one
    process, as without a cluster."""

    redis: str = ""  # e.g. redis://127.0.0.1:6379/0
    lease_ttl_s: float = 3.0  # a channel's owner renews its lease every third of this; dead, it is taken after it
    process: str = ""  # this server's name in the cluster (empty: host:pid)
    prefix: str = "signstream"  # of every Redis key and topic, so clusters can share one Redis
    janus: str = ""  # Janus HTTP API URL (e.g. http://127.0.0.1:8188/janus): channel video through it; empty: off

    def __post_init__(self) -> None:
        if self.lease_ttl_s < 0.3:
            raise ValueError(f"'cluster.lease_ttl_s' must be at least 0.3, got {self.lease_ttl_s}")


@dataclass
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    engine: EngineSection = field(default_factory=EngineSection)
    avatar: AvatarSection = field(default_factory=AvatarSection)
    video: VideoSection = field(default_factory=VideoSection)
    live: LiveSection = field(default_factory=LiveSection)
    segmenter: SegmenterSection = field(default_factory=SegmenterSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    webrtc: WebrtcSection = field(default_factory=WebrtcSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the repository root unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else REPO_ROOT / p


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a config file (the repository's `config.toml` by default)."""
    return load_toml(Config, Path(path) if path is not None else DEFAULT_CONFIG, skip=TRAINING_TABLES)


def load_config_or_fail(path: str | Path | None = None) -> Config:
    """`load_config` for a CLI command: a bad file ends the command with its coded error."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(exc)
