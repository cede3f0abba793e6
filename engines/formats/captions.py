"""WebVTT and SRT caption files → cues (start, end, text), for playing a file into a session.

Read as players read them: a cue that cannot be played is skipped and reported (its line and the
reason) and the rest of the file plays; only a file with no playable cue at all is refused
(`bad_caption_file`). Quirks of real files that are handled, not refused:

- a byte order mark, CRLF or CR line ends, whitespace-only lines between blocks;
- the WebVTT header block (`Kind:`, `Language:`, `Style:` lines after `WEBVTT`), `NOTE`, `STYLE`
  and `REGION` blocks;
- cue identifiers (SRT numbers from 0 or 1, WebVTT names), kept as the cue's `number`;
- `,` or `.` before the milliseconds in either format, hour-less times (`00:04.500`);
- cue settings after the end time (`align:start position:0%`), ignored;
- a missing end time (`00:05.100 -->`): the cue ends where the next one starts (the last cue:
  `_LAST_CUE_S` after its start);
- a timing line inside a cue's text (no blank line before it): a new cue starts there;
- tags (`<i>`, `<c.yellow>`, karaoke times `<00:01.000>`, SSA `{\\an8}`) removed, entities
  decoded; a WebVTT voice tag `<v Roger Bingham>` becomes the speaker label `Roger Bingham:` when
  the voice changes, which the normalisation stage (engines/textnorm.py) shows as a label.

Skipped, with the reason: a block with no timing line, a timing line whose start or end is not a
time (`00:00.700 --> line:0`), a cue that ends before it starts, a cue with no text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from engines.errors import SignStreamError

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_START = re.compile(rf"^\s*{_TIME}\s*-->")
_END = re.compile(rf"^\s*{_TIME}(?:\s|$)")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]+)>")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <c.yellow>, <00:01.000>, SSA overrides like {\an8}
_LAST_CUE_S = 3.0  # how long a last cue without an end time stays


class CaptionFileError(SignStreamError):
    code = "bad_caption_file"


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str
    number: str = field(default="", compare=False)  # the cue's identifier in the file ("0", "intro"), if any
    line: int = field(default=0, compare=False)  # line of its timing in the file (1-based)


@dataclass(frozen=True)
class SkippedCue:
    """A cue the file holds but no player could play: where it is and why it is skipped."""

    line: int
    reason: str
    number: str = ""


@dataclass(frozen=True)
class CaptionFile:
    cues: list[Cue]
    skipped: list[SkippedCue]


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


@dataclass
class _Raw:
    number: str
    line: int
    start: float
    end: float | None
    lines: list[str]


def _blocks(lines: list[str], first: int) -> list[tuple[int, list[str]]]:
    """Runs of non-blank lines from `first`, with the index of their first line."""
    out, i = [], first
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        start, block = i, []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        out.append((start, block))
    return out


def parse_captions(text: str, name: str = "<captions>") -> CaptionFile:
    """The playable cues of a WebVTT or SRT text, in file order, and the cues skipped (line, reason)."""
    lines = text.lstrip("\ufeff").splitlines()
    vtt = bool(lines) and lines[0].startswith("WEBVTT")
    first = 0
    if vtt:  # the header block runs to the first blank line (Kind:, Language:, Style: …)
        while first < len(lines) and lines[first].strip():
            first += 1
    raws: list[_Raw] = []
    skipped: list[SkippedCue] = []
    for start, block in _blocks(lines, first):
        if vtt and block[0].split(maxsplit=1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        timing = next((k for k, line in enumerate(block[:2]) if "-->" in line), None)
        if timing is None:
            skipped.append(SkippedCue(start + 1, f"no timing line ('start --> end') in {block[0].strip()[:40]!r}"))
            continue
        number = block[0].strip() if timing == 1 else ""
        k = timing
        while k is not None:  # a timing line inside the text starts the next cue
            nxt = next((j for j in range(k + 1, len(block)) if "-->" in block[j] and _START.match(block[j])), None)
            raw = _timing(block[k], start + k + 1, number, block[k + 1:nxt], skipped)
            if raw is not None:
                raws.append(raw)
            k, number = nxt, ""
    cues: list[Cue] = []
    voice = ""
    for n, raw in enumerate(raws):
        end = raw.end
        if end is None:  # open-ended: until the next cue in time
            later = [r.start for r in raws[n + 1:] if r.start > raw.start]
            end = min(later) if later else raw.start + _LAST_CUE_S
        if end < raw.start:
            skipped.append(SkippedCue(raw.line, "the cue ends before it starts", raw.number))
            continue
        words, voice = _text(raw.lines, voice)
        if not words:
            skipped.append(SkippedCue(raw.line, "the cue has no text", raw.number))
            continue
        cues.append(Cue(raw.start, end, words, raw.number, raw.line))
    if not cues:
        why = f" ({len(skipped)} skipped: line {skipped[0].line}: {skipped[0].reason})" if skipped else ""
        raise CaptionFileError(f"{name}: no cue that can be played{why}")
    return CaptionFile(cues, sorted(skipped, key=lambda s: s.line))


def _timing(line: str, lineno: int, number: str, text: list[str], skipped: list[SkippedCue]) -> _Raw | None:
    """A cue from its timing line and text lines, or None (reported in `skipped`)."""
    m = _START.match(line)
    if m is None:
        skipped.append(SkippedCue(lineno, f"bad start time in {line.strip()!r}", number))
        return None
    start = _seconds(*m.groups())
    rest = line[m.end():]
    if not rest.strip():
        return _Raw(number, lineno, start, None, text)
    e = _END.match(rest)
    if e is None:
        skipped.append(SkippedCue(lineno, f"bad end time {rest.split()[0]!r} in {line.strip()!r}", number))
        return None
    return _Raw(number, lineno, start, _seconds(*e.groups()), text)


def _text(lines: list[str], voice: str) -> tuple[str, str]:
    """A cue's text on one line (tags removed, entities decoded) and the voice speaking at its end;
    a voice tag naming a new speaker becomes a speaker label."""
    out = []
    for line in lines:
        def label(m: re.Match[str]) -> str:
            nonlocal voice
            name = " ".join(m.group(1).split())
            if name == voice:
                return ""
            voice = name
            return f"{name}: "

        out.append(html.unescape(_TAG.sub("", _VOICE.sub(label, line))).strip())
    return " ".join(" ".join(out).split()), voice


def read_captions(path: str | Path) -> CaptionFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptionFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise CaptionFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_captions(text, str(path))
