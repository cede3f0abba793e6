"""Broadcast overlay: a caption file → the avatar signing its cues at their times, as a video with
a transparent background (.webm VP9 or .mov ProRes 4444, with alpha), plus a JSON report of what
was signed, fingerspelled or left as text, so a broadcaster sees what the viewer did not get signed.

Nothing of the live path is re-implemented: the cues play through a real `Session` (segmenter,
the shared Scheduler behind an `EngineLoop`, motion timeline with rest pose and transitions, the
backlog policy: speed up, then show as text) on a simulated clock. Frame i is at i / fps seconds;
each cue is fed as a final caption (line `cue-N`, as `signstream captions` sends it) on the first
frame at or after its start, and before each frame the engine is pumped until the session holds
its lookahead, where a live server's engine task would be. So the overlay is, frame for frame,
what a viewer would have seen had the file been played into the server in real time, without the
network's message rate limit; and the same on every run.

Units shown as text are not burnt into the picture (the overlay is the avatar; the captions are
on air already): they are listed in the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.engine import Scheduler
from engines.errors import SignStreamError
from server.avatar.errors import RenderError
from engines.formats.captions import CaptionFileError, Cue, SkippedCue, read_captions
from server.config import Config
from server.engine_loop import EngineLoop
from server.metrics import Metrics
from server.protocol import Caption, Hello, Message, PoseFrame, ServerMessage
from server.session import Session

OVERLAY_SUFFIXES = (".webm", ".mov")  # the video formats that carry alpha
# Signing that runs on this long past the last cue, plus this long a word, means the loop is stuck.
_STUCK_S, _STUCK_WORD_S = 60.0, 10.0


class UnknownLanguageError(SignStreamError):
    code = "unknown_language"  # the protocol's code for the same refusal


@dataclass
class _Span:
    """The output frames showing one unit or one segment of it."""

    first: int | None = None
    last: int | None = None

    def add(self, index: int) -> None:
        self.first = index if self.first is None else self.first
        self.last = index


@dataclass
class _UnitRecord:
    unit: int
    text: str
    segments: list[dict[str, Any]]  # as the unit / unit_status messages carry them
    status: str = ""
    reason: str = ""
    span: _Span = field(default_factory=_Span)
    spans: dict[int, _Span] = field(default_factory=dict)  # by segment index
    speed: float = 1.0  # fastest playback while it was shown


@dataclass
class _CueRecord:
    cue: Cue
    units: list[_UnitRecord] = field(default_factory=list)
    refused: dict[str, str] | None = None  # the session's error reply, if the caption was refused


class CuePlayer:
    """Plays cues through a live Session on a simulated clock; `frames()` yields its pose frames,
    then `report()` tells what each cue became."""

    def __init__(self, cfg: Config, cues: list[Cue], language: str, scheduler: Scheduler, name: str = "<captions>",
                 skipped: list[SkippedCue] | None = None) -> None:
        if not cues:
            raise CaptionFileError(f"{name}: no cues to sign")
        if language not in scheduler.languages:
            raise UnknownLanguageError(f"no sign language {language!r} (known: {', '.join(sorted(scheduler.languages))})")
        self.fps = float(cfg.video.fps)
        self.language = language
        self.cues = [_CueRecord(c) for c in cues]
        self.skipped = list(skipped or [])  # cues of the file that could not be played (engines/formats/captions.py)
        # The first frame at or after each cue's start; cues are fed in time order, whatever the file's.
        self.starts = [math.ceil(c.start * self.fps - 1e-6) for c in cues]
        self._order = sorted(range(len(cues)), key=lambda i: self.starts[i])
        self.frame_count = 0
        self._units: dict[int, _UnitRecord] = {}
        self._feeding: _CueRecord | None = None
        self._frame: PoseFrame | None = None
        self._stray: list[dict[str, str]] = []  # error replies outside any cue (none expected)
        self.engine = EngineLoop(scheduler, Metrics())
        self.session = Session(1, cfg, self.engine, Metrics(), self, authed=True)  # the overlay is its outlet
        self.session.feed(Hello(language=language), 0.0)

    def put(self, msg: ServerMessage) -> None:
        """What the session sends its client: pose frames, unit, unit_status, error."""
        if isinstance(msg, PoseFrame):
            self._frame = msg
            return
        assert isinstance(msg, Message)
        f = msg.fields
        if msg.type == "unit":
            record = _UnitRecord(f["unit"], f["text"], f["segments"])
            self._units[record.unit] = record
            self.cues[int(f["caption"].removeprefix("cue-")) - 1].units.append(record)
        elif msg.type == "unit_status":
            record = self._units[f["unit"]]
            record.status, record.reason, record.segments = f["status"], f["reason"], f["segments"]
        elif msg.type == "error":
            error = {"code": f["code"], "message": f["message"]}
            if self._feeding is not None:
                self._feeding.refused = error
            else:
                self._stray.append(error)

    def end(self, code: int) -> None:
        """A file has no connection to close: the session ends with its last frame."""

    def frames(self) -> Iterator[PoseFrame]:
        """One pose frame per output frame, until the last cue's end has passed, every unit has
        its status and the avatar is back at rest."""
        cover = math.ceil(max(r.cue.end for r in self.cues) * self.fps - 1e-6)
        words = sum(len(r.cue.text.split()) for r in self.cues)
        stuck = cover + int((_STUCK_S + _STUCK_WORD_S * words) * self.fps)
        fed = index = 0
        rested = 0  # consecutive rest frames: two, so the retargeter's 3-tap smoothing ends at rest too
        while True:
            now = index / self.fps
            while fed < len(self.cues) and self.starts[self._order[fed]] <= index:
                n = self._order[fed]
                self._feeding = self.cues[n]
                self.session.feed(Caption(f"cue-{n + 1}", self._feeding.cue.text, final=True), now)
                self._feeding = None
                fed += 1
            self.engine.pump()
            self.session.tick(now)
            frame = self._frame
            assert frame is not None and frame.frame == index, "the session sends one frame per tick"
            self._record(frame)
            yield frame
            index += 1
            self.frame_count = index
            rested = rested + 1 if frame.kind == "rest" else 0
            if fed == len(self.cues) and index >= cover and not self.session.units and rested >= 2:
                return
            if index >= stuck:
                raise RenderError(f"signing did not end {stuck / self.fps:.0f} s into the captions")

    def _record(self, frame: PoseFrame) -> None:
        record = self._units.get(frame.unit)
        if record is None:
            return
        record.span.add(frame.frame)
        record.speed = max(record.speed, self.session.timeline.speed)
        if frame.segment >= 0:
            record.spans.setdefault(frame.segment, _Span()).add(frame.frame)

    def report(self) -> dict[str, Any]:
        """Per cue (numbered as the file numbers it): its units, each with its status and, per word,
        the path that produced it, what the viewer saw (sign, fingerspelling, text; nothing for a
        failed unit) and its frames; and the file's cues that were skipped (line, reason)."""
        shown_count: dict[str, int] = {"sign": 0, "fingerspelling": 0, "text": 0, "nothing": 0}
        not_signed: list[dict[str, Any]] = []
        cues = []
        for n, c in enumerate(self.cues, 1):
            number = _cue_number(c.cue, n)
            units = []
            for u in c.units:
                segments = []
                for i, seg in enumerate(u.segments):
                    span = u.spans.get(i)
                    if span is not None:
                        shown, reason = seg["kind"], ""
                    else:  # never on screen: a text word, a unit the backlog policy skipped, a failure
                        shown = "nothing" if u.status == "failed" else "text"
                        reason = seg["reason"] or u.reason
                    shown_count[shown] += 1
                    if shown in ("text", "nothing"):
                        not_signed.append({"cue": number, "word": seg["word"], "shown": shown, "reason": reason})
                    segments.append({"word": seg["word"], "path": seg["path"], "kind": seg["kind"], "gloss": seg["gloss"],
                                     "shown": shown, "reason": reason, "first_frame": span.first if span else None,
                                     "last_frame": span.last if span else None})
                units.append({"unit": u.unit, "text": u.text, "status": u.status, "reason": u.reason,
                              "first_frame": u.span.first, "last_frame": u.span.last, "max_speed": round(u.speed, 3),
                              "segments": segments})
            cues.append({"cue": number, **asdict(c.cue), "first_frame": self.starts[n - 1],
                         "refused": c.refused, "units": units})
            if c.refused is not None:
                not_signed.append({"cue": number, "word": c.cue.text, "shown": "nothing",
                                   "reason": f"{c.refused['code']}: {c.refused['message']}"})
        return {"language": self.language, "fps": self.fps, "frames": self.frame_count,
                "duration_s": self.frame_count / self.fps, "words": shown_count, "not_signed": not_signed,
                "errors": self._stray, "skipped": [asdict(s) for s in self.skipped], "cues": cues}


def _cue_number(cue: Cue, position: int) -> int | str:
    """A cue as the file numbers it: its SRT/WebVTT number (0 when the file starts at 0), its
    WebVTT name, or its position from 1 when the file gives none."""
    if cue.number.isdigit():
        return int(cue.number)
    return cue.number or position


def render_overlay(cfg: Config, captions: Path, output: Path, language: str | None = None,
                   avatar_path: str | None = None) -> dict[str, Any]:
    """Render a WebVTT/SRT file as an alpha overlay video at `output` (.webm or .mov); returns the
    report. The video is written whole or not at all."""
    from engines.loader import open_scheduler
    from server.avatar.painter import AvatarPainter
    from server.avatar.video import check_output, write_video

    if output.suffix.lower() not in OVERLAY_SUFFIXES:
        raise RenderError(f"{output}: an overlay is a video with alpha: use {' or '.join(OVERLAY_SUFFIXES)}")
    check_output(output, rgba=True)
    file = read_captions(captions)
    player = CuePlayer(cfg, file.cues, language or cfg.live.default_language,
                       open_scheduler(cfg.engine, float(cfg.video.fps)), str(captions), file.skipped)
    transparent = (*cfg.video.background[:3], 0.0)  # the overlay's background is always see-through
    with AvatarPainter.open(cfg, avatar_path, transparent) as painter:
        poses = ((f.points, f.confidence, f.face) for f in player.frames())  # the track, as live
        written = write_video(painter.paint_all(poses), output, player.fps, rgba=True)
    report = player.report()
    assert written == report["frames"], (written, report["frames"])
    v = cfg.video
    return {"captions": str(captions), "video": str(output), "width": v.width, "height": v.height, **report}


def write_report(report: dict[str, Any], path: Path) -> None:
    from server.avatar.video import replacing

    with replacing(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
