"""The engine interface: units of text in, pose frames out, one frame per unit per tick.

A *unit* is a committed piece of caption text in one sign language. The scheduler plans it as a
list of *segments*, one per word, and routes each segment to the first backend that can sign it
(the SignLLM model first, then the lexicon / fingerspelling path); a word no backend can sign is
shown as text, with the reason. Every segment says which path produced it.

Backends generate incrementally: `step` advances every live generation of that backend by one
frame in a single batched call, so a tick costs one call per backend however many sessions are
live (continuous batching: generations join and leave between ticks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Path = Literal["signllm", "lexicon", "text"]  # what produced a segment
Kind = Literal["sign", "fingerspelling", "text"]  # what the viewer sees
# How a unit ended, as sessions report it.
UnitOutcome = Literal["signed", "fingerspelled", "shown_as_text", "cancelled", "failed"]

# A word, or a bracketed description ("[music]", "[door slams]"; unclosed while a live caption
# grows), which captions use for sound and speaker notes: it is shown as text, never signed.
_WORD = re.compile(r"\[[^\]]*\]?|[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
DESCRIPTION = "a description in brackets (sound, speaker), not speech"


def words_of(text: str) -> list[str]:
    """The words of a caption, punctuation dropped (letters and digits kept); a bracketed
    description is one word, brackets included."""
    return _WORD.findall(text)


@dataclass
class Segment:
    """One word of a unit and how it will be (or was) produced."""

    word: str
    path: Path
    kind: Kind
    gloss: str = ""
    reason: str = ""  # why it is shown as text
    frames: int = 0


@dataclass
class StepOutput:
    """One frame of one generation: canonical points, confidence, progress counter in (0, 1]."""

    points: np.ndarray  # (50, 3) float32
    confidence: np.ndarray  # (50,) float32
    counter: float
    done: bool


class Backend(Protocol):
    """A way of producing signs: the SignLLM runtime, or the lexicon/fingerspelling engine."""

    name: Path
    languages: frozenset[str]

    def plan(self, word: str, language: str) -> tuple[str, Kind] | str:
        """(gloss, kind) when this backend can sign the word; otherwise the reason it cannot."""

    def begin(self, key: int, word: str, language: str) -> None:
        """Start a generation under `key` (planned before, so it can sign the word)."""

    def step(self, keys: list[int]) -> dict[int, StepOutput]:
        """Advance these live generations by one frame each, in one batched call."""

    def end(self, key: int) -> None:
        """Forget a generation (finished or cancelled)."""


@dataclass
class UnitFrame:
    """A frame handed out by the scheduler, as soon as it is computed."""

    unit_id: str
    segment: int  # index into the unit's segments
    points: np.ndarray
    confidence: np.ndarray
    counter: float  # progress of the current segment
    unit_done: bool  # the unit's last frame


@dataclass
class _Unit:
    unit_id: str
    language: str
    segments: list[Segment]
    current: int = -1
    key: int = -1
    backend: Backend | None = None
    pending_text: list[int] = field(default_factory=list)


class Scheduler:
    """Holds every live unit of every session and advances them together, one frame a tick."""

    def __init__(self, backends: list[Backend]) -> None:
        if not backends:
            raise ValueError("the scheduler needs at least one backend")
        self.backends = backends
        self.languages = frozenset().union(*(b.languages for b in backends))
        self._units: dict[str, _Unit] = {}
        self._next_key = 0

    @property
    def live(self) -> int:
        return len(self._units)

    def plan(self, text: str, language: str) -> list[Segment]:
        """How each word of `text` would be signed; nothing starts."""
        segments = []
        for word in words_of(text):
            if word.startswith("["):
                segments.append(Segment(word, "text", "text", reason=DESCRIPTION))
                continue
            reasons = []
            for backend in self.backends:
                if language not in backend.languages:
                    continue
                got = backend.plan(word, language)
                if isinstance(got, tuple):
                    segments.append(Segment(word, backend.name, got[1], got[0]))
                    break
                reasons.append(f"{backend.name}: {got}")
            else:
                segments.append(Segment(word, "text", "text", reason="; ".join(reasons) or f"no backend signs {language}"))
        return segments

    def submit(self, unit_id: str, text: str, language: str) -> list[Segment]:
        """Plan a unit and make it live; its frames come from the following ticks."""
        if unit_id in self._units:
            raise ValueError(f"unit {unit_id!r} is already live")
        if language not in self.languages:
            raise ValueError(f"unknown sign language {language!r}")
        unit = _Unit(unit_id, language, self.plan(text, language))
        self._units[unit_id] = unit
        self._advance(unit)
        return unit.segments

    def cancel(self, unit_id: str) -> bool:
        """Stop a unit at once (caption corrected, session closed). False if it was not live."""
        unit = self._units.pop(unit_id, None)
        if unit is None:
            return False
        if unit.backend is not None:
            unit.backend.end(unit.key)
        return True

    def _advance(self, unit: _Unit) -> None:
        """Move a unit to its next signable segment (text segments produce no frames)."""
        unit.current += 1
        while unit.current < len(unit.segments) and unit.segments[unit.current].path == "text":
            unit.current += 1
        if unit.current >= len(unit.segments):
            unit.backend = None
            return
        seg = unit.segments[unit.current]
        unit.backend = next(b for b in self.backends if b.name == seg.path)
        unit.key = self._next_key
        self._next_key += 1
        unit.backend.begin(unit.key, seg.word, unit.language)

    def tick(self) -> tuple[list[UnitFrame], list[str]]:
        """One frame for every live unit; returns the frames and the ids of units that ended
        this tick without a frame (nothing signable)."""
        frames: list[UnitFrame] = []
        ended: list[str] = []
        by_backend: dict[int, list[_Unit]] = {}
        for unit in list(self._units.values()):
            if unit.backend is None:
                ended.append(unit.unit_id)
                del self._units[unit.unit_id]
            else:
                by_backend.setdefault(id(unit.backend), []).append(unit)
        for units in by_backend.values():
            backend = units[0].backend
            assert backend is not None
            outs = backend.step([u.key for u in units])
            for unit in units:
                out = outs[unit.key]
                seg_index = unit.current
                unit.segments[seg_index].frames += 1
                if out.done:
                    backend.end(unit.key)
                    self._advance(unit)
                last = unit.backend is None
                frames.append(UnitFrame(unit.unit_id, seg_index, out.points, out.confidence, out.counter, last))
                if last:
                    del self._units[unit.unit_id]
        return frames, ended


def outcome(segments: list[Segment]) -> UnitOutcome:
    """The status a finished unit reports: signed if any word was signed, else fingerspelled if
    any was fingerspelled, else shown as text. Each segment tells its own story beside it."""
    kinds = {s.kind for s in segments}
    if "sign" in kinds:
        return "signed"
    if "fingerspelling" in kinds:
        return "fingerspelled"
    return "shown_as_text"
