"""A backend at another frame rate: a model's frames re-timed to the output clock.

The SignLLM model generates at the rate it was trained at (`engine.json` fps); the output runs at
`[video] fps`. Played one for one, a 25 fps model on a 30 fps clock would sign 20 % fast. This
adapter keeps the wrapped backend's generations and hands out frame k at time k / fps, linearly
interpolated between the two source frames around it, stepping the source as often as that needs
(none, once, or more a tick) — still one batched call per source step for all live generations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.engine import Backend, Kind
from engines.frame import PoseFrame, generated


@dataclass
class _Track:
    prev: PoseFrame | None = None  # source frame at index have - 2
    last: PoseFrame | None = None  # source frame at index have - 1
    have: int = 0  # source frames received
    out: int = 0  # output frames handed out


class Retimed:
    """`backend`'s generations at `fps` frames per second instead of `source_fps`."""

    def __init__(self, backend: Backend, source_fps: float, fps: float) -> None:
        if source_fps <= 0 or fps <= 0:
            raise ValueError(f"frame rates must be positive (source {source_fps}, output {fps})")
        self.inner = backend
        self.name = backend.name
        self.languages = backend.languages
        self.ratio = source_fps / fps  # source frames per output frame
        self._tracks: dict[int, _Track] = {}

    def plan(self, word: str, language: str) -> tuple[str, Kind] | str:
        return self.inner.plan(word, language)

    def begin(self, key: int, word: str, language: str) -> None:
        self.inner.begin(key, word, language)
        self._tracks[key] = _Track()

    def end(self, key: int) -> None:
        self.inner.end(key)
        self._tracks.pop(key, None)

    def _wanted(self, track: _Track) -> int:
        """Source frames needed to place output frame `track.out` (at source position out × ratio)."""
        return int(np.floor(track.out * self.ratio)) + 2

    def step(self, keys: list[int]) -> dict[int, PoseFrame]:
        while True:
            hungry = [k for k in keys if not self._ended(self._tracks[k])
                      and self._tracks[k].have < self._wanted(self._tracks[k])]
            if not hungry:
                break
            for key, frame in self.inner.step(hungry).items():
                track = self._tracks[key]
                track.prev, track.last = track.last, frame
                track.have += 1
        return {key: self._emit(self._tracks[key]) for key in keys}

    @staticmethod
    def _ended(track: _Track) -> bool:
        return track.last is not None and track.last.done

    def _emit(self, track: _Track) -> PoseFrame:
        assert track.last is not None
        position = track.out * self.ratio  # in source frames, 0 = the first
        track.out += 1
        last_index = track.have - 1
        if track.prev is None or position >= last_index:
            frame, at_end = track.last, True
        else:
            w = np.float32(position - (last_index - 1))  # weight of `last`, in [0, 1)
            a, b = track.prev, track.last
            points, confidence = _between(a, b, w)
            frame = generated(points, confidence, (1 - float(w)) * a.counter + float(w) * b.counter, False)
            at_end = False
        # The generation ends with the output frame that reaches its last source frame.
        done = track.last.done and (at_end or (track.out * self.ratio) > last_index)
        return generated(frame.points, frame.confidence, frame.counter, done)


def _between(a: PoseFrame, b: PoseFrame, w: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Points and confidence at weight `w` from a to b: interpolated where both frames see a point;
    where one misses it (confidence 0, coordinates meaningless), the nearer frame's point and
    confidence as they are, so a hand appearing or leaving never slides in from the origin."""
    both = (a.confidence > 0) & (b.confidence > 0)
    near = a if w < 0.5 else b
    points = np.where(both[:, None], (1 - w) * a.points + w * b.points, near.points)
    confidence = np.where(both, (1 - w) * a.confidence + w * b.confidence, near.confidence)
    return points.astype(np.float32), confidence.astype(np.float32)
