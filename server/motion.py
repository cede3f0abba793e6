"""The motion timeline of one session: the rest pose, transitions, playback speed, the frame order.

The engine pushes frames into a session's timeline as fast as it produces them (ahead of time);
the session's frame clock pulls one output frame per period with `next()`. Between units the
timeline eases from the last frame into the next unit; when there is nothing to sign it holds
the last frame briefly, then eases back to the rest pose. Playback can run faster than real time
(backlog policy): `speed` frames of the buffer are consumed per output frame, interpolated.

Events (unit status messages) ride on the frame after which they happen, so a unit's status
leaves right after its last frame, and statuses keep the order of the units.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from engines import nonmanual
from engines.rest import rest_pose
from engines.textnorm import spoken_language
from engines.sequence import PoseSequence, concatenate
from engines.skeleton import NUM_JOINTS
from engines.frame import PoseFrame
from server.protocol import Message

def ease(a: np.ndarray, ca: np.ndarray, b: np.ndarray, cb: np.ndarray, seconds: float, fps: float) -> PoseSequence:
    """The in-between frames easing from pose a to pose b (the sequence module's transition)."""
    if round(seconds * fps) <= 0:
        return PoseSequence(np.zeros((0, NUM_JOINTS, 3)), np.zeros((0, NUM_JOINTS)), fps)
    joined = concatenate([PoseSequence(a[None], ca[None], fps), PoseSequence(b[None], cb[None], fps)], fps, seconds)
    return joined.slice(1, len(joined) - 1)


def _held(points: np.ndarray, confidence: np.ndarray, unit: int = 0, kind: str = "transition",
          face: np.ndarray | None = None) -> PoseFrame:
    """A frame the timeline makes (rest, transition, hold); in the buffer `face` holds the
    non-manual grammar values (engines/nonmanual.py; None: neutral), the life is added on output."""
    return PoseFrame(unit, -1, 0, 0.0, kind, points, confidence, face)


class Timeline:
    def __init__(self, fps: float, transition_s: float, rest_transition_s: float, hold_s: float) -> None:
        self.fps = fps
        self.transition_s = transition_s
        self.rest_transition_s = rest_transition_s
        self.hold_frames = int(round(hold_s * fps))
        rest, conf = rest_pose()
        self._rest = _held(rest, conf, kind="rest")
        self.last = self._rest  # the last frame given out
        self.buffer: deque[PoseFrame] = deque()
        self.speed = 1.0
        self.index = 0
        self._phase = 0.0
        self._dry = 0  # output frames since the buffer ran dry
        self._returning: deque[PoseFrame] = deque()
        # The non-manual track: each unit's word cues and sign lengths, where in a segment push is.
        self._cues: dict[int, tuple[list[nonmanual.WordCues], list[int]]] = {}
        self._at: tuple[int, int, int] = (0, -1, 0)  # unit, segment, frames pushed into it
        self.life = nonmanual.Life(fps)

    def cue_unit(self, unit: int, text: str, language: str, segments: Sequence[Any]) -> None:
        """The non-manual cues of a unit's words (engines/nonmanual.py rules), once, before its
        frames. `segments`: the engine's Segments (word, path, frames); DSGS notation signs are mouthed."""
        if unit in self._cues:
            return
        for old in [u for u in self._cues if u < unit]:  # units played or dropped: forget them
            del self._cues[old]
        words = [s.word for s in segments]
        mouthed = [language == "sgg" and s.path == "notation" for s in segments]
        self._cues[unit] = (nonmanual.plan(text, spoken_language(language), words, mouthed),
                            [int(s.frames) for s in segments])

    def _grammar(self, unit: int, segment: int, progress: float | None) -> np.ndarray | None:
        u, s, k = self._at
        k = k + 1 if (u, s) == (unit, segment) else 0
        self._at = (unit, segment, k)
        cues, lengths = self._cues.get(unit, ([], []))
        if not 0 <= segment < len(cues):
            return None
        n = lengths[segment] if segment < len(lengths) and lengths[segment] > 0 else 15
        if progress is not None and progress > 0:  # the engine's counter, (k + 1) / n: the sign's length
            n = int(round((k + 1) / min(progress, 1.0)))
        return nonmanual.word_values(cues[segment], k, max(n, k + 1), self.fps, k)

    @property
    def queued(self) -> int:
        return len(self.buffer)

    @property
    def starting(self) -> bool:
        """A unit is buffered and the last frame given out belonged to no unit or to the one before:
        the frame clock may start it at once instead of at its next tick."""
        return bool(self.buffer) and self.buffer[0].unit != self.last.unit

    def push(self, frame: PoseFrame) -> None:
        """A frame of a unit from the engine (unit, segment, kind, points, confidence; its counter
        times the non-manual track, e.g. mouthing); a transition is put in front of a unit's first frame."""
        unit, segment, points, confidence = frame.unit, frame.segment, frame.points, frame.confidence
        progress = frame.counter
        prev = self.buffer[-1] if self.buffer else self.last
        if prev.unit != unit:
            seconds = self.rest_transition_s if prev.kind == "rest" else self.transition_s
            way = ease(prev.points, prev.confidence, points, confidence, seconds, self.fps)
            face = self._grammar(unit, segment, progress)
            a, b = (prev.face if prev.face is not None else 0.0), (face if face is not None else 0.0)
            n = len(way.frames)  # the face eases into the unit's with the hands
            self.buffer.extend(_held(p, c, unit, face=np.float32(a + (b - a) * (i + 1) / (n + 1)))
                               for i, (p, c) in enumerate(zip(way.frames, way.confidence)))
            self._returning.clear()
            frame.face = face
        else:
            frame.face = self._grammar(unit, segment, progress)
        self.buffer.append(frame)

    def event(self, msg: Message) -> list[Message]:
        """Queue an event after everything buffered; returned at once (to send now) if nothing is."""
        if self.buffer:
            self.buffer[-1].events.append(msg)
            return []
        return [msg]

    def drop(self, unit: int) -> list[Message]:
        """Remove a unit's buffered frames; events riding on them move to the frame before, or are returned."""
        loose: list[Message] = []
        kept: deque[PoseFrame] = deque()
        for f in self.buffer:
            if f.unit == unit:
                (kept[-1].events if kept else loose).extend(f.events)
            else:
                kept.append(f)
        if len(kept) != len(self.buffer) and (not kept or self.buffer[0] is not kept[0]):
            self._phase = 0.0  # the frame under the playhead is gone
        self.buffer = kept
        return loose

    def next(self) -> tuple[PoseFrame, list[Message]]:
        """The next output frame and the events that happen after it."""
        events: list[Message] = []
        if self.buffer:
            self._dry = 0
            a = self.buffer[0]
            b = self.buffer[1] if len(self.buffer) > 1 else a
            w = np.float32(self._phase)
            both = (a.confidence > 0) & (b.confidence > 0)
            points = np.where(both[:, None], a.points * (1 - w) + b.points * w, a.points)
            conf = np.where(both, a.confidence * (1 - w) + b.confidence * w, a.confidence)
            shown = PoseFrame(a.unit, a.segment, 0, 0.0, a.kind, points, conf, a.face)
            self._phase += self.speed
            while self._phase >= 1 - 1e-6 and self.buffer:
                events += self.buffer.popleft().events
                self._phase -= 1
            if not self.buffer:
                self._phase = 0.0
        else:
            self._dry += 1
            if self.last.kind == "rest" or self.last is self._rest:
                shown = self._rest
            elif self._dry <= self.hold_frames:
                shown = _held(self.last.points, self.last.confidence)
            else:
                if not self._returning:
                    way = ease(self.last.points, self.last.confidence, self._rest.points, self._rest.confidence,
                               self.rest_transition_s, self.fps)
                    self._returning.extend(_held(p, c) for p, c in zip(way.frames, way.confidence))
                    self._returning.append(self._rest)
                shown = self._returning.popleft()
        self.last = shown
        frame = PoseFrame(shown.unit, shown.segment, self.index, self.index / self.fps, shown.kind,
                          shown.points, shown.confidence)
        grammar = shown.face if shown.face is not None and np.ndim(shown.face) else np.zeros(len(nonmanual.CHANNELS), np.float32)
        frame.face = nonmanual.combine(grammar, self.life.values(self.index, shown.unit != 0))
        self.index += 1
        return frame, events
