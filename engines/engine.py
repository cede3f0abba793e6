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

import contextlib
import logging
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from engines.frame import PoseFrame
from engines.textnorm import tokenize

SignPath = Literal["notation", "signllm", "lexicon", "text"]  # what produced a segment
Kind = Literal["sign", "fingerspelling", "text"]  # what the viewer sees
# How a unit ended, as sessions report it.
UnitOutcome = Literal["signed", "fingerspelled", "shown_as_text", "cancelled", "failed"]

# What the words of a caption are (contractions, abbreviations, numbers, descriptions, speaker
# labels, symbols) is decided in one place, engines/textnorm.py; plan signs its `word` tokens.

# A longer "word" is shown as text: fingerspelling it would take minutes, and starting it blocks
# every session's ticks (1,999 letters: 1.3 s to join the letter recordings, 2 s of model encoder).
MAX_WORD_CHARS = 48
# A backend that fails this many generations in a row (no step of it succeeding between) plans no
# more words: they go to the next path (the recordings / fingerspelling), so a broken model degrades
# the signing, not the server.
FAILURES_BEFORE_FALLBACK = 3

PLAN_CACHE = 64  # recent plans kept (a unit is planned at commit and again at submit)

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """One word of a unit and how it will be (or was) produced."""

    word: str
    path: SignPath
    kind: Kind
    gloss: str = ""
    reason: str = ""  # why it is shown as text (or why a path in front fell back, e.g. a sign not rendered)
    frames: int = 0


class Backend(Protocol):
    """A way of producing signs: the SignLLM runtime, or the lexicon/fingerspelling engine."""

    name: SignPath
    languages: frozenset[str]

    def plan(self, word: str, language: str) -> tuple[str, Kind] | str:
        """(gloss, kind) when this backend can sign the word; otherwise the reason it cannot."""

    def begin(self, key: int, word: str, language: str) -> None:
        """Start a generation under `key` (planned before, so it can sign the word)."""

    def step(self, keys: list[int]) -> dict[int, PoseFrame]:
        """Advance these live generations by one frame each, in one batched call (engines/frame.py:generated)."""

    def end(self, key: int) -> None:
        """Forget a generation (finished or cancelled)."""


@dataclass
class _Unit:
    unit_id: str
    language: str
    segments: list[Segment]
    current: int = -1
    key: int = -1
    backend: Backend | None = None
    pending_text: list[int] = field(default_factory=list)
    fresh: bool = True  # its current generation has not stepped yet
    failed: str | None = None  # why the unit failed (no path could go on)


class Scheduler:
    """Holds every live unit of every session and advances them together, one frame a tick."""

    def __init__(self, backends: list[Backend]) -> None:
        if not backends:
            raise ValueError("the scheduler needs at least one backend")
        self.backends = backends
        self.languages = frozenset().union(*(b.languages for b in backends))
        self._units: dict[str, _Unit] = {}
        self._next_key = 0
        self.disabled: set[str] = set()  # backends that kept failing (FAILURES_BEFORE_FALLBACK)
        self.generation_failures = 0  # generations that failed (moved to a fallback, or failed their unit)
        self._failures: dict[str, int] = {}  # failing ticks in a row, by backend
        self._failed: list[tuple[str, str]] = []  # (unit id, reason) not yet taken
        self._plans: dict[tuple[str, str], list[Segment]] = {}  # recent plans (PLAN_CACHE), by text and language

    @property
    def live(self) -> int:
        return len(self._units)

    def plan(self, text: str, language: str) -> list[Segment]:
        """How each word of `text` would be signed; nothing starts. A session plans a unit when it
        commits it and again when it submits it: the second comes from a small cache."""
        cached = self._plans.get((text, language))
        if cached is not None:
            return [replace(s) for s in cached]
        segments = []
        for token in tokenize(text, language):
            word = token.text
            if token.kind != "word":  # a description, speaker label, address or symbol: shown
                segments.append(Segment(word, "text", "text", reason=token.reason))
                continue
            if len(word) > MAX_WORD_CHARS:
                segments.append(Segment(word, "text", "text", reason=f"longer than {MAX_WORD_CHARS} characters"))
                continue
            reason = f"no backend signs {language}"
            fallback = ""  # a refusal marked `reported` (a lexical sign not rendered): the signing segment keeps it
            for backend in self.backends:
                if language not in backend.languages or backend.name in self.disabled:
                    continue
                got = backend.plan(word, language)
                if isinstance(got, tuple):
                    if got[1] == "text":  # a word the path leaves unsigned on purpose (an article): got[0] says why
                        segments.append(Segment(word, "text", "text", reason=got[0]))
                    else:
                        segments.append(Segment(word, backend.name, got[1], got[0], reason=fallback))
                    break
                if getattr(got, "reported", False) and not fallback:
                    fallback = str(got)
                # One reason per word: the last path tried (the fallback of last resort) says why
                # the word is shown as text; earlier paths' refusals mostly repeat it.
                reason = got
            else:
                segments.append(Segment(word, "text", "text", reason=reason))
        self._plans[(text, language)] = [replace(s) for s in segments]
        if len(self._plans) > PLAN_CACHE:
            del self._plans[next(iter(self._plans))]  # the oldest
        return segments

    def submit(self, unit_id: str, text: str, language: str, plan: list[Segment] | None = None) -> list[Segment]:
        """Plan a unit and make it live; its frames come from the following ticks. `plan`: the
        unit's plan from `plan`, perhaps with words switched to text since (a session's backlog
        policy gives up fingerspelling): those words stay text, with their reason; the others are
        signed as planned now."""
        if unit_id in self._units:
            raise ValueError(f"unit {unit_id!r} is already live")
        if language not in self.languages:
            raise ValueError(f"unknown sign language {language!r}")
        segments = self.plan(text, language)
        if plan is not None:
            if [s.word for s in plan] != [s.word for s in segments]:
                raise ValueError(f"the plan given for unit {unit_id!r} does not hold its words")
            segments = [Segment(p.word, "text", "text", reason=p.reason) if p.kind == "text" else s
                        for s, p in zip(segments, plan)]
        unit = _Unit(unit_id, language, segments)
        self._units[unit_id] = unit
        self._advance(unit)
        if unit.failed is not None:  # reported by the next take_failed
            del self._units[unit_id]
            self._failed.append((unit_id, unit.failed))
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
        self._begin(unit)

    def _begin(self, unit: _Unit) -> None:
        """Start the unit's current segment on its backend; one that fails to start it hands it on."""
        seg = unit.segments[unit.current]
        unit.backend = next(b for b in self.backends if b.name == seg.path)
        unit.key = self._next_key
        self._next_key += 1
        unit.fresh = True
        if unit.backend.name in self.disabled:  # planned before its backend was disabled
            return self._reroute(unit, unit.backend)
        try:
            unit.backend.begin(unit.key, seg.word, unit.language)
        except Exception:
            log.exception("the %s backend failed to start %r", unit.backend.name, seg.word)
            self._generation_failed(unit, unit.backend)

    def _generation_failed(self, unit: _Unit, backend: Backend) -> None:
        """The unit's current generation failed: the word goes to the next path that signs it
        (its segment says which), or the unit fails."""
        self.generation_failures += 1
        failures = self._failures[backend.name] = self._failures.get(backend.name, 0) + 1
        last_resort = backend is self.backends[-1]
        if failures >= FAILURES_BEFORE_FALLBACK and not last_resort and backend.name not in self.disabled:
            log.error("the %s backend failed %d generations in a row: its words go to the next path from now on",
                      backend.name, failures)
            self.disabled.add(backend.name)
            self._plans.clear()  # they name the disabled backend
        with contextlib.suppress(Exception):
            backend.end(unit.key)
        self._reroute(unit, backend)

    def _reroute(self, unit: _Unit, backend: Backend) -> None:
        """The unit's current word to the first backend after `backend` that signs it, or fail the unit."""
        seg = unit.segments[unit.current]
        later = self.backends[self.backends.index(backend) + 1:] if backend in self.backends else []
        for b in later:
            if unit.language not in b.languages or b.name in self.disabled:
                continue
            try:
                got = b.plan(seg.word, unit.language)
            except Exception:
                continue
            if isinstance(got, tuple) and got[1] == "text":  # that path leaves the word unsigned, on purpose
                seg.path, seg.kind, seg.reason = "text", "text", got[0]
                return self._advance(unit)
            if isinstance(got, tuple):
                seg.path, seg.gloss, seg.kind = b.name, got[0], got[1]
                return self._begin(unit)
        unit.backend = None
        unit.failed = f"the {backend.name} engine failed on {seg.word!r} and no other path signs it"

    def take_failed(self) -> list[tuple[str, str]]:
        """Units that failed since the last call, with the reason; they are no longer live."""
        failed, self._failed = self._failed, []
        return failed

    def _isolate(self, backend: Backend, units: list[_Unit]) -> dict[int, PoseFrame]:
        """A batched step failed: find the generations it fails on and step the others, so one bad
        generation does not fail every session's unit. Generations that joined this tick (a bad
        start is the likely cause) are held out first, then each is tried alone."""
        name = backend.name
        if name in self.disabled:
            for u in units:
                self._generation_failed(u, backend)
            return {}
        fresh = [u for u in units if u.fresh]
        steady = [u for u in units if not u.fresh]
        for u in fresh:
            with contextlib.suppress(Exception):
                backend.end(u.key)
        outs: dict[int, PoseFrame] = {}
        try:
            if steady:
                outs.update(backend.step([u.key for u in steady]))
                self._failures[name] = 0
        except Exception:
            for u in steady:
                try:
                    outs.update(backend.step([u.key]))
                    self._failures[name] = 0
                except Exception:
                    log.exception("the %s backend failed on %r", name, u.segments[u.current].word)
                    self._generation_failed(u, backend)
        for u in fresh:
            if name in self.disabled:  # the failures above disabled it: no more tries
                self._generation_failed(u, backend)
                continue
            try:
                backend.begin(u.key, u.segments[u.current].word, u.language)
                outs.update(backend.step([u.key]))
                self._failures[name] = 0
            except Exception:
                log.exception("the %s backend failed on %r", name, u.segments[u.current].word)
                self._generation_failed(u, backend)
        return outs

    def tick(self) -> tuple[list[PoseFrame], list[str]]:
        """One frame for every live unit, tagged with its unit's id (`key`), segment, kind and whether
        it is the unit's last; returns the frames and the ids of units that ended this tick without
        a frame (nothing signable)."""
        frames: list[PoseFrame] = []
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
            try:
                outs = backend.step([u.key for u in units])
                self._failures[backend.name] = 0
            except Exception:
                log.exception("the %s backend failed a step of %d generations", backend.name, len(units))
                outs = self._isolate(backend, units)
            for unit in units:
                out = outs.get(unit.key)
                if out is None:  # its generation failed: it starts on the fallback path next tick
                    if unit.failed is not None:
                        del self._units[unit.unit_id]
                        self._failed.append((unit.unit_id, unit.failed))
                    continue
                unit.fresh = False
                seg_index = unit.current
                unit.segments[seg_index].frames += 1
                if out.done:
                    backend.end(unit.key)
                    self._advance(unit)
                out.key, out.segment, out.kind = unit.unit_id, seg_index, unit.segments[seg_index].kind
                out.last = unit.backend is None and unit.failed is None
                frames.append(out)
                if unit.backend is None:
                    del self._units[unit.unit_id]
                    if unit.failed is not None:
                        self._failed.append((unit.unit_id, unit.failed))
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
