"""The one task that ticks the shared Scheduler for every session.

It ticks on demand: whenever a session with a live unit has less than its lookahead of frames
buffered, so frames are produced ahead of each session's playhead (faster than real time when
backlogged) and the sessions' own frame clocks pace delivery. One tick serves every live unit of
every session in one batched call per backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from engines.engine import Scheduler, Segment
from engines.frame import PoseFrame
from server.metrics import Metrics

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What a session offers the engine loop: a FrameSink (engines/frame.py) that says when it wants
    frames and hears how a unit ended without one."""

    id: int

    def needs_frames(self) -> bool: ...
    def push(self, frame: PoseFrame) -> None:
        """A frame of a live unit, tagged with the session's unit (`frame.unit`)."""
    def unit_ended(self, unit: int, failed: str | None) -> None:
        """The unit ended with no frame this tick: nothing signable, or it failed (the reason)."""


class EngineLoop:
    def __init__(self, scheduler: Scheduler, metrics: Metrics) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self._owners: dict[str, tuple[Owner, int]] = {}
        self._failures_seen = 0
        self._wake = asyncio.Event()

    @property
    def languages(self) -> frozenset[str]:
        return self.scheduler.languages

    def submit(self, owner: Owner, unit: int, text: str, language: str, plan: list[Segment] | None = None) -> list[Segment]:
        """Make a unit live; `plan`: its plan as the session holds it (words it switched to text stay text)."""
        key = f"{owner.id}:{unit}"
        segments = self.scheduler.submit(key, text, language, plan)
        self._owners[key] = (owner, unit)
        self._wake.set()
        return segments

    def cancel(self, owner: Owner, unit: int) -> bool:
        key = f"{owner.id}:{unit}"
        self._owners.pop(key, None)
        return self.scheduler.cancel(key)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.wanted():
                self._tick()
                await asyncio.sleep(0)  # let frames go out between ticks

    def wanted(self) -> bool:
        """Some session with a live unit has less than its lookahead buffered."""
        return bool(self._owners) and any(o.needs_frames() for o, _ in self._owners.values())

    def pump(self) -> None:
        """Tick until no session wants frames, without yielding: for an offline driver whose
        simulated clock waits for the engine (server/overlay.py)."""
        while self.wanted():
            self._tick()

    def _tick(self) -> None:
        start = time.perf_counter()
        try:
            frames, ended = self.scheduler.tick()
        except Exception:  # the scheduler isolates a failing backend; this is the last resort
            log.exception("scheduler tick failed")
            for key, (owner, unit) in list(self._owners.items()):
                self.scheduler.cancel(key)
                del self._owners[key]
                owner.unit_ended(unit, "the engine failed")  # the log has the exception
            return
        self.metrics.step.observe(time.perf_counter() - start)
        failures = self.scheduler.generation_failures - self._failures_seen
        if failures:
            self._failures_seen += failures
            self.metrics.engine_failures.inc(failures)
        for f in frames:
            got = self._owners.get(f.key)
            if got is None:
                continue
            if f.last:
                del self._owners[f.key]
            f.unit = got[1]
            got[0].push(f)
        for key in ended:
            got = self._owners.pop(key, None)
            if got is not None:
                got[0].unit_ended(got[1], None)
        for key, reason in self.scheduler.take_failed():
            got = self._owners.pop(key, None)
            if got is not None:
                got[0].unit_ended(got[1], reason)
