"""WebVTT and SRT caption files → cues (start, end, text), for playing a file into a session."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from engines.errors import SignStreamError

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <c.yellow>, <00:01.000>, SSA overrides like {\an8}


class CaptionFileError(SignStreamError):
    code = "bad_caption_file"


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_captions(text: str, name: str = "<captions>") -> list[Cue]:
    """Cues of a WebVTT or SRT text, in file order; tags removed, entities decoded, lines joined."""
    lines = text.lstrip("\ufeff").splitlines()
    vtt = bool(lines) and lines[0].startswith("WEBVTT")
    cues: list[Cue] = []
    i = 1 if vtt else 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block_start = i
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        if vtt and block[0].split(maxsplit=1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        timing = next((k for k, line in enumerate(block[:2]) if "-->" in line), None)
        if timing is None:
            raise CaptionFileError(f"{name}: line {block_start + 1}: a cue without a timing line ('start --> end')")
        match = _TIMING.match(block[timing])
        if match is None:
            raise CaptionFileError(f"{name}: line {block_start + timing + 1}: bad timing {block[timing].strip()!r}")
        g = match.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        if end < start:
            raise CaptionFileError(f"{name}: line {block_start + timing + 1}: the cue ends before it starts")
        words = " ".join(html.unescape(_TAG.sub("", line)).strip() for line in block[timing + 1:])
        if words.strip():
            cues.append(Cue(start, end, " ".join(words.split())))
    return cues


def read_captions(path: str | Path) -> list[Cue]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptionFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CaptionFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_captions(text, str(path))
