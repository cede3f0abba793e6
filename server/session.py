"""One live session: caption ingest → segmenter → engine (shared) → motion timeline → outputs.

The session knows nothing of its transport. A transport feeds it raw client messages
(`handle`), runs its frame clock (`run`), and gives it an `Outlet` (server/protocol.py): `put` a
server message, frames included (never blocks), `end` (flush and close with a close code). The
/ws outbox (server/transports/websocket.py) and a channel (server/transports/channels.py, for
WebRTC viewers and shared channels) are outlets.

Every committed unit ends with exactly one unit_status: signed / fingerspelled / shown_as_text
after it played, shown_as_text when the backlog policy skips it, cancelled after a correction,
failed with the reason. Statuses leave in the order the units were committed (which is the order
they play), except `cancelled`, sent at once: a status decided early (a unit the backlog policy
skips, one that fails to start) waits for the statuses of the units before it. Units cut off by a
closed connection are counted as cancelled in metrics.

Backlog policy (`_backlog_policy`): the signing waiting is estimated in seconds (buffered frames,
then `live.word_seconds` a sign and `live.letter_seconds` a fingerspelled letter); above
`live.speedup_after_s` playback speeds up, up to `live.max_speedup`; only when the newest unit would
still start later than `live.text_after_s` at that speed is signing given up, the oldest waiting
units first: their fingerspelled words are shown as text before any sign is (a unit keeps its
signs), and only then whole units (the segmenter keeps units short, so that is the oldest few
words, not a new sentence). A waiting unit's segments may so change to text after its `unit`
message; its status carries them as they ended.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Literal

from engines.engine import Segment, outcome
from engines.frame import PoseFrame
from server.captions import EVERY_WORD, Action, Cancel, Commit, Segmenter
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
    Outlet,
    Ping,
    ProtocolError,
    ServerMessage,
    error_message,
    parse_client_message,
)

log = logging.getLogger(__name__)
State = Literal["pending", "live", "done"]  # done: every frame generated, or none will be

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008


class _Nowhere:
    """The outlet of a closed session: its connection is gone."""

    def put(self, msg: ServerMessage) -> None:
        pass

    def end(self, code: int) -> None:
        pass


_NOWHERE = _Nowhere()


@dataclass
class _Unit:
    id: int
    caption: str
    text: str
    language: str
    segments: list[Segment]
    state: State = "pending"
    shown: bool = False  # a frame of it has been sent
    shown_words: int = 0  # its words from the first that have been on screen, at least in part


@dataclass
class _Bucket:
    """Token bucket for the client message rate."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float, cost: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class Session:
    def __init__(self, sid: int, cfg: Config, engine: EngineLoop, metrics: Metrics, out: Outlet,
                 authed: bool) -> None:
        self.id = sid
        self.cfg = cfg
        self.engine = engine
        self.metrics = metrics
        self._out = out
        self.fps = float(cfg.video.fps)
        live = cfg.live
        self.timeline = Timeline(self.fps, live.transition_s, live.rest_transition_s, live.hold_s)
        self.segmenter = Segmenter(cfg.segmenter, self._new_unit_id)  # unit ids: 1, 2, ... (continue_after)
        self.language = live.default_language
        self.format: Format = "json"
        self.idle_frames = True
        self.authed = authed or not cfg.limits.token
        self.greeted = False
        self.accepting = True
        self.ended = False
        self.units: dict[int, _Unit] = {}
        self.pending: deque[_Unit] = deque()
        self._unreported: deque[int] = deque()  # ids of units without a status sent, in commit order
        self._due: dict[int, Message] = {}  # statuses decided, waiting for the units before theirs
        self._live: _Unit | None = None
        self._next_unit = 0
        self._bucket = _Bucket(cfg.limits.message_rate, cfg.limits.message_burst)
        # Caption text is the costly input (each committed word is planned, each unit echoed), so
        # it has a budget of its own: a sender at the message rate with the longest captions would
        # otherwise cost the server more than it can give every session.
        self._chars = _Bucket(cfg.limits.caption_char_rate, 2.0 * cfg.limits.max_caption_chars)
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
        if (isinstance(msg, Caption) and self.greeted and len(msg.text) <= self.cfg.limits.max_caption_chars
                and not self._chars.take(now, len(msg.text))):
            self.error("rate_limited", f"more than {self.cfg.limits.caption_char_rate:g} caption characters/s")
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
            self._apply(self.segmenter.caption(msg.id, msg.text, msg.final, language, now, self._shown_words))
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
            self._out.put(Message("pong"))

    def _hello(self, msg: Hello) -> None:
        if msg.channel is not None:  # a transport joins channels (server/transports/channels.py) before any session
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
        self._out.put(self.ready_message())

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
        self._out.put(error_message(code, message))

    # --- units --------------------------------------------------------------------------------

    def _new_unit_id(self) -> int:
        self._next_unit += 1
        return self._next_unit

    def continue_after(self, unit: int) -> None:
        """Number the next units after `unit`: a channel taken over from another server (server/cluster/)
        goes on with the ids its clients already know."""
        self._next_unit = max(self._next_unit, unit)

    def _shown_words(self, unit: int) -> int:
        """How many of a unit's words, from its first, the viewer has seen (the segmenter's question
        when a correction arrives). A unit whose status is decided counts every word: it played, or
        was shown as text."""
        u = self.units.get(unit)
        if u is None or unit in self._due:
            return EVERY_WORD
        return u.shown_words

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Commit):
                segments = self.engine.scheduler.plan(action.text, action.language)
                unit = _Unit(action.unit, action.caption, action.text, action.language, segments)
                self.units[unit.id] = unit
                self.pending.append(unit)
                self._unreported.append(unit.id)
                self.metrics.units_committed.inc()
                self._out.put(Message("unit", {"unit": unit.id, "caption": unit.caption, "text": unit.text,
                                            "language": unit.language, "segments": [asdict(s) for s in segments]}))
            elif isinstance(action, Cancel):
                self._cancel(action.unit, action.reason)
        self._submit_next()

    def _cancel(self, unit_id: int, reason: str) -> None:
        unit = self.units.get(unit_id)
        if unit is None or unit_id in self._due:
            return  # already reported, or its status is decided and waits for its turn
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
                # Its plan as the session holds it: words the backlog policy switched to text stay text.
                unit.segments = self.engine.submit(self, unit.id, unit.text, unit.language, unit.segments)
            except Exception:
                log.exception("session %d: the engine failed to start unit %d", self.id, unit.id)
                unit.state = "done"
                self._report(unit, "failed", "the engine failed to start the unit", now=False)  # no internals
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
        if msg.type != "unit_status":
            self._out.put(msg)
            return
        uid = msg.fields["unit"]
        if uid not in self.units or uid in self._due:
            return  # reported already (cancelled while its status was queued)
        if msg.fields["status"] == "cancelled" or uid not in self._unreported:
            if uid in self._unreported:
                self._unreported.remove(uid)
            self._send_status(uid, msg)  # a cancellation is sent at once
        else:
            self._due[uid] = msg
        while self._unreported and self._unreported[0] in self._due:  # statuses in unit order
            first = self._unreported.popleft()
            self._send_status(first, self._due.pop(first))

    def _send_status(self, uid: int, msg: Message) -> None:
        self.units.pop(uid, None)
        self.metrics.units.labels(msg.fields["status"]).inc()
        self._out.put(msg)

    def _played(self, unit: _Unit) -> None:
        status = outcome(unit.segments)
        texts = [f"{s.word}: {s.reason}" for s in unit.segments if s.kind == "text"]
        self._report(unit, status, "; ".join(texts), now=False)

    # --- engine callbacks (EngineLoop.Owner) ----------------------------------------------------

    def needs_frames(self) -> bool:
        return self.timeline.queued < self._lookahead

    def push(self, frame: PoseFrame) -> None:
        unit = self.units[frame.unit]
        self.timeline.cue_unit(unit.id, unit.text, unit.language, unit.segments)  # the non-manual track's rules
        self.timeline.push(frame)
        if frame.last:
            unit.state = "done"
            self._live = None
            self._played(unit)
            self._submit_next()
        if self.timeline.starting:
            self._wake.set()  # start playing now rather than at the next clock tick

    def unit_ended(self, unit_id: int, failed: str | None) -> None:
        if failed is None:
            self._live = None
            self._played(self.units[unit_id])
            self._submit_next()
            return
        unit = self.units.get(unit_id)
        if unit is not None:
            self._live = None
            for msg in self.timeline.drop(unit.id):
                self._emit(msg)
            self._report(unit, "failed", failed, now=True)
            self._submit_next()

    # --- the frame clock ------------------------------------------------------------------------

    def _estimate_s(self, seg: Segment) -> float:
        """Signing time of a word not generated yet: a sign, or its letters when fingerspelled (a
        long word takes many times a short one); a word shown as text takes none."""
        live = self.cfg.live
        if seg.kind == "text":
            return 0.0
        return len(seg.word) * live.letter_seconds if seg.kind == "fingerspelling" else live.word_seconds

    def backlog_s(self) -> float:
        """Seconds of signing waiting: frames buffered, plus an estimate for what is not generated yet."""
        waiting = sum(self._estimate_s(s) for u in self.pending for s in u.segments)
        if self._live is not None:
            segs = self._live.segments
            current = max((i for i, s in enumerate(segs) if s.frames), default=-1)  # being generated
            if current >= 0:
                waiting += max(0.0, self._estimate_s(segs[current]) - segs[current].frames / self.fps)
            waiting += sum(self._estimate_s(s) for s in segs[current + 1:])
        return self.timeline.queued / self.fps + waiting

    def _backlog_policy(self) -> None:
        """Speed up first. While the newest unit would still start later than `text_after_s` from now
        at the fastest playback, give up signing, the costliest first:
        1. the fingerspelled words of the oldest unit waiting before the newest are shown as text (a
           spelled word takes seconds, a sign about one); the unit keeps its signs, and one left with
           nothing to sign is reported `shown_as_text` at once; then the next oldest unit's;
        2. only if that is not enough, the oldest waiting unit is shown as text whole, signs included.
        The oldest words go, the signing catches up with the captions, and a new sentence is not
        dropped for an old one. Every word switched says so in its segment (the unit's status carries
        the segments as they ended; the unit playing is left as it is)."""
        live = self.cfg.live
        backlog = self.backlog_s()

        def behind() -> bool:  # the newest unit would start too late, even at the fastest playback
            wait = backlog - sum(self._estimate_s(s) for s in self.pending[-1].segments)
            return wait / live.max_speedup > live.text_after_s

        for unit in list(self.pending)[:-1]:  # spelling less of the newest would not bring it nearer
            if not behind():
                break
            spelled = [seg for seg in unit.segments if seg.kind == "fingerspelling"]
            if not spelled:
                continue
            reason = f"backlog: {backlog:.1f} s of signing waiting"
            backlog -= sum(self._estimate_s(seg) for seg in spelled)
            for seg in spelled:
                self._as_text(seg, reason)
            if all(seg.kind == "text" for seg in unit.segments):  # nothing left to sign
                self.pending.remove(unit)
                unit.state = "done"
                self._report(unit, "shown_as_text", reason, now=True)
        while self.pending and behind():
            unit = self.pending.popleft()
            unit.state = "done"
            reason = f"backlog: {backlog:.1f} s of signing waiting"
            for seg in unit.segments:
                if seg.kind != "text":
                    self._as_text(seg, reason)
            self._report(unit, "shown_as_text", reason, now=True)
            backlog = self.backlog_s()
        self.timeline.speed = min(live.max_speedup, max(1.0, backlog / live.speedup_after_s))

    @staticmethod
    def _as_text(seg: Segment, reason: str) -> None:
        """A word of a waiting unit is shown as text instead of signed (the backlog policy); a reason
        it had (a sign not rendered, so spelled) stays after the new one."""
        seg.reason = f"{reason}; {seg.reason}" if seg.reason else reason
        seg.path, seg.kind, seg.gloss = "text", "text", ""

    def tick(self, now: float) -> None:
        """One period of the frame clock: `run` calls it on the wall clock, an offline driver on its own."""
        self._apply(self.segmenter.poll(now))
        self._backlog_policy()
        frame, events = self.timeline.next()
        if frame.unit:
            unit = self.units.get(frame.unit)
            if unit is not None:
                unit.shown = True
                unit.shown_words = max(unit.shown_words, frame.segment + 1)
            self._active_at = now
        if self.idle_frames or frame.kind != "rest":
            self._out.put(frame)
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
        self._out.put(Message("closing", {"reason": "server shutting down", "grace_s": grace_s}))
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
            self._out.end(code)

    def close(self) -> None:
        """The connection is gone: stop everything; units cut off count as cancelled."""
        self.ended = True
        self._wake.set()
        self._out = _NOWHERE
        self._abandon("cancelled", "connection closed")
