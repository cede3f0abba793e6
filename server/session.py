"""One live session: caption ingest → segmenter → engine (shared) → motion timeline → outputs.

The session knows nothing of its transport. A transport feeds it raw client messages
(`handle`), runs its frame clock (`run`), and gives it two callables: `send` (queue a server
message; never blocks) and `end` (flush and close the connection with a close code). The
WebSocket transport and server/channels.py (for WebRTC viewers and channels) do this.

Every committed unit ends with exactly one unit_status: signed / fingerspelled / shown_as_text
after it played, shown_as_text when the backlog policy skips it, cancelled after a correction,
failed with the reason. Units cut off by a closed connection are counted as cancelled in metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

from engines.engine import Segment, UnitFrame, outcome
from server.captions import Action, Cancel, Commit, Segmenter
from server.config import Config
from server.engine_loop import EngineLoop
from server.metrics import Metrics
from server.motion import Timeline
from server.protocol import (
    VERSION,
    Caption,
    ClientMessage,
    ConfigChange,
    Flush,
    Format,
    Hello,
    Message,
    Ping,
    ProtocolError,
    ServerMessage,
    error_message,
    parse_client_message,
)

State = Literal["pending", "live", "done"]  # done: every frame generated, or none will be

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


@dataclass
class _Unit:
    id: int
    caption: str
    text: str
    language: str
    segments: list[Segment]
    state: State = "pending"
    shown: bool = False  # a frame of it has been sent


@dataclass
class _Bucket:
    """Token bucket for the client message rate."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Session:
    def __init__(self, sid: int, cfg: Config, engine: EngineLoop, metrics: Metrics,
                 send: Callable[[ServerMessage], None], end: Callable[[int], None], authed: bool) -> None:
        self.id = sid
        self.cfg = cfg
        self.engine = engine
        self.metrics = metrics
        self._send = send
        self._end = end
        self.fps = float(cfg.video.fps)
        live = cfg.live
        self.timeline = Timeline(self.fps, live.transition_s, live.rest_transition_s, live.hold_s)
        self.segmenter = Segmenter(cfg.segmenter, self._new_unit_id)
        self.language = live.default_language
        self.format: Format = "json"
        self.idle_frames = True
        self.authed = authed or not cfg.limits.token
        self.greeted = False
        self.accepting = True
        self.ended = False
        self.units: dict[int, _Unit] = {}
        self.pending: deque[_Unit] = deque()
        self._live: _Unit | None = None
        self._next_unit = 0
        self._bucket = _Bucket(cfg.limits.message_rate, cfg.limits.message_burst)
        self._wake = asyncio.Event()
        self._active_at = time.monotonic()
        self._lookahead = max(1, int(round(live.lookahead_s * self.fps)))

    # --- client messages ----------------------------------------------------------------------

    def handle(self, raw: str | bytes) -> ClientMessage | None:
        """One raw client message; every problem is answered with an error, and the session goes on.
        Returns the message as parsed (None when it was refused), for a transport that keeps
        per-client state such as a channel member's own format."""
        if self.ended:
            return None
        now = time.monotonic()
        if not self._bucket.take(now):
            self.error("rate_limited", f"more than {self.cfg.limits.message_rate:g} messages/s")
            return None
        try:
            msg = parse_client_message(raw, self.cfg.limits.max_message_bytes)
        except ProtocolError as exc:
            self.error(exc.code, exc.message)
            return None
        self._active_at = now
        self.feed(msg, now)
        return msg

    def feed(self, msg: ClientMessage, now: float) -> None:
        """A parsed client message at `now` on the session's clock. `handle` calls it with the wall
        clock; an offline driver (server/overlay.py) with its simulated clock, and no rate limit."""
        try:
            self._dispatch(msg, now)
        except ProtocolError as exc:
            self.error(exc.code, exc.message)

    def _dispatch(self, msg: ClientMessage, now: float) -> None:
        if isinstance(msg, Hello):
            return self._hello(msg)
        if not self.greeted:
            raise ProtocolError("hello_required", "send hello first")
        if isinstance(msg, Caption):
            if not self.accepting:
                raise ProtocolError("shutting_down", "the server is shutting down; caption not taken")
            if len(msg.text) > self.cfg.limits.max_caption_chars:
                raise ProtocolError("caption_too_long", f"{len(msg.text)} characters; the limit is {self.cfg.limits.max_caption_chars}")
            language = self._language(msg.language or self.language)
            self._apply(self.segmenter.caption(msg.id, msg.text, msg.final, language, now, self._started))
        elif isinstance(msg, Flush):
            self._apply(self.segmenter.flush())
        elif isinstance(msg, ConfigChange):
            if msg.language is not None:
                self.language = self._language(msg.language)
            if msg.format is not None:
                self.format = msg.format
            if msg.idle_frames is not None:
                self.idle_frames = msg.idle_frames
        elif isinstance(msg, Ping):
            self._send(Message("pong"))

    def _hello(self, msg: Hello) -> None:
        if msg.channel is not None:  # a transport joins channels (server/channels.py) before any session
            raise ProtocolError("bad_field", "hello.channel is taken only in a connection's first message "
                                "(or the /offer body); this connection already has its session")
        if not self.authed:
            if msg.token is None or not hmac.compare_digest(msg.token.encode(), self.cfg.limits.token.encode()):
                self.error("unauthorized", "a valid token is required (hello.token or Authorization: Bearer)")
                return self.finish(CLOSE_POLICY)
            self.authed = True
        if msg.language is not None:
            self.language = self._language(msg.language)
        self.format, self.idle_frames, self.greeted = msg.format, msg.idle_frames, True
        self._wake.set()
        self._send(self.ready_message())

    def ready_message(self) -> Message:
        return Message("ready", {"version": VERSION, "session": self.id, "language": self.language,
                                 "languages": sorted(self.engine.languages), "fps": self.fps,
                                 "format": self.format, "joints": 50})

    def _language(self, language: str) -> str:
        if language not in self.engine.languages:
            raise ProtocolError("unknown_language", f"no sign language {language!r} (known: {', '.join(sorted(self.engine.languages))})")
        return language

    def error(self, code: str, message: str) -> None:
        self.metrics.errors.labels(code).inc()
        self._send(error_message(code, message))

    # --- units --------------------------------------------------------------------------------

    def _new_unit_id(self) -> int:
        self._next_unit += 1
        return self._next_unit

    def _started(self, unit: int) -> bool:
        u = self.units.get(unit)
        return u is None or u.shown  # a unit already reported has played

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Commit):
                segments = self.engine.scheduler.plan(action.text, action.language)
                unit = _Unit(action.unit, action.caption, action.text, action.language, segments)
                self.units[unit.id] = unit
                self.pending.append(unit)
                self.metrics.units_committed.inc()
                self._send(Message("unit", {"unit": unit.id, "caption": unit.caption, "text": unit.text,
                                            "language": unit.language, "segments": [asdict(s) for s in segments]}))
            elif isinstance(action, Cancel):
                self._cancel(action.unit, action.reason)
        self._submit_next()

    def _cancel(self, unit_id: int, reason: str) -> None:
        unit = self.units.get(unit_id)
        if unit is None:
            return  # already reported
        if unit.state == "pending":
            self.pending.remove(unit)
        elif unit.state == "live":
            self.engine.cancel(self, unit.id)
            self._live = None
        for msg in self.timeline.drop(unit.id):
            self._emit(msg)
        self._report(unit, "cancelled", reason, now=True)
        self._submit_next()

    def _submit_next(self) -> None:
        """One unit of a session is live in the engine at a time; units play in order."""
        while self._live is None and self.pending:
            unit = self.pending.popleft()
            try:
                unit.segments = self.engine.submit(self, unit.id, unit.text, unit.language)
            except Exception as exc:
                unit.state = "done"
                self._report(unit, "failed", f"{type(exc).__name__}: {exc}", now=False)
                continue
            unit.state = "live"
            self._live = unit

    def _status(self, unit: _Unit, status: str, reason: str) -> Message:
        return Message("unit_status", {"unit": unit.id, "caption": unit.caption, "status": status, "reason": reason,
                                       "frames": sum(s.frames for s in unit.segments),
                                       "segments": [asdict(s) for s in unit.segments]})

    def _report(self, unit: _Unit, status: str, reason: str, now: bool) -> None:
        """End a unit with its status: at once, or after what is buffered has played."""
        msg = self._status(unit, status, reason)
        for m in ([msg] if now else self.timeline.event(msg)):
            self._emit(m)

    def _emit(self, msg: Message) -> None:
        if msg.type == "unit_status":
            unit = self.units.pop(msg.fields["unit"], None)
            if unit is None:
                return  # reported already (cancelled while its status was queued)
            self.metrics.units.labels(msg.fields["status"]).inc()
        self._send(msg)

    def _played(self, unit: _Unit) -> None:
        status = outcome(unit.segments)
        texts = [f"{s.word}: {s.reason}" for s in unit.segments if s.kind == "text"]
        self._report(unit, status, "; ".join(texts), now=False)

    # --- engine callbacks (EngineLoop.Owner) ----------------------------------------------------

    def needs_frames(self) -> bool:
        return self.timeline.queued < self._lookahead

    def on_frame(self, unit_id: int, frame: UnitFrame) -> None:
        unit = self.units[unit_id]
        self.timeline.push(unit.id, frame.segment, unit.segments[frame.segment].kind, frame.points, frame.confidence)
        if frame.unit_done:
            unit.state = "done"
            self._live = None
            self._played(unit)
            self._submit_next()
        if self.timeline.starting:
            self._wake.set()  # start playing now rather than at the next clock tick

    def on_ended(self, unit_id: int) -> None:
        unit = self.units[unit_id]
        self._live = None
        self._played(unit)
        self._submit_next()

    def on_failed(self, unit_id: int, reason: str) -> None:
        unit = self.units.get(unit_id)
        if unit is not None:
            self._live = None
            for msg in self.timeline.drop(unit.id):
                self._emit(msg)
            self._report(unit, "failed", reason, now=True)
            self._submit_next()

    # --- the frame clock ------------------------------------------------------------------------

    def backlog_s(self) -> float:
        """Seconds of signing waiting: frames buffered, plus an estimate for units not generated yet."""
        words = sum(len(u.segments) for u in self.pending)
        if self._live is not None:
            words += sum(1 for s in self._live.segments if s.frames == 0)
        return self.timeline.queued / self.fps + words * self.cfg.live.word_seconds

    def _backlog_policy(self) -> None:
        live = self.cfg.live
        backlog = self.backlog_s()
        while backlog > live.text_after_s and self.pending:
            unit = self.pending.popleft()
            unit.state = "done"
            self._report(unit, "shown_as_text", f"backlog: {backlog:.1f} s of signing waiting", now=False)
            backlog = self.backlog_s()
        self.timeline.speed = min(live.max_speedup, max(1.0, backlog / live.speedup_after_s))

    def tick(self, now: float) -> None:
        """One period of the frame clock: `run` calls it on the wall clock, an offline driver on its own."""
        self._apply(self.segmenter.poll(now))
        self._backlog_policy()
        frame, events = self.timeline.next()
        if frame.unit:
            unit = self.units.get(frame.unit)
            if unit is not None:
                unit.shown = True
            self._active_at = now
        if self.idle_frames or frame.kind != "rest":
            self._send(frame)
            self.metrics.frames_sent.inc()
        for msg in events:
            self._emit(msg)
        if self._live is not None and self.needs_frames():
            self.engine.wake()

    async def run(self) -> None:
        """The frame clock: one output frame per period until the session ends."""
        while not self.greeted and not self.ended:  # frames start after hello chose their format
            self._wake.clear()
            await self._wake.wait()
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        due = loop.time()
        while not self.ended:
            now = loop.time()
            if now < due:
                self._wake.clear()
                try:
                    async with asyncio.timeout_at(due):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                now = loop.time()
                if now < due and not self.timeline.starting:
                    continue  # woken, but not by a unit starting from idle
                due = min(due, now)
            if self.ended:
                break
            if time.monotonic() - self._active_at > self.cfg.limits.idle_timeout_s and not self.units:
                self.error("idle_timeout", f"nothing received or signed for {self.cfg.limits.idle_timeout_s:g} s")
                self.finish(CLOSE_POLICY)
                break
            self.tick(time.monotonic())
            due += period
            if due < now - 5 * period:
                due = now  # too far behind (overloaded): resume rather than burst

    # --- the end ------------------------------------------------------------------------------

    async def shutdown(self, grace_s: float) -> None:
        """Server shutdown: tell the client, let units in flight finish for `grace_s`, report the rest."""
        if self.ended:
            return
        self.accepting = False
        self._send(Message("closing", {"reason": "server shutting down", "grace_s": grace_s}))
        self._apply(self.segmenter.flush())
        deadline = time.monotonic() + grace_s
        while self.units and time.monotonic() < deadline and not self.ended:
            await asyncio.sleep(1.0 / self.fps)
        self._abandon("failed", "server shut down before the unit finished")
        self.finish(CLOSE_GOING_AWAY)

    def _abandon(self, status: str, reason: str) -> None:
        if self._live is not None:
            self.engine.cancel(self, self._live.id)
            self._live = None
        self.pending.clear()
        self.timeline.buffer.clear()
        for unit in list(self.units.values()):
            self._report(unit, status, reason, now=True)

    def finish(self, code: int) -> None:
        """End the session; the transport flushes what was sent and closes with `code`."""
        if not self.ended:
            self.ended = True
            self._wake.set()
            self._end(code)

    def close(self) -> None:
        """The connection is gone: stop everything; units cut off count as cancelled."""
        self.ended = True
        self._wake.set()
        self._send = lambda msg: None
        self._abandon("cancelled", "connection closed")
