"""The WebSocket transport: /ws. Checks origin, token and capacity, then pumps raw client
messages into a Session and the session's messages (JSON text, or binary pose frames) out."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from server.transports.channels import watch_clock
from server.metrics import Metrics
from server.protocol import (ConfigChange, Format, Hello, Message, PoseFrame, ProtocolError, RotationFrame,
                             ServerMessage, encode, error_message, parse_client_message)
from server.rotation_stream import rotation_rig, send_now
from server.session import CLOSE_GOING_AWAY, CLOSE_POLICY, Session

if TYPE_CHECKING:
    from server.hub import Hub

log = logging.getLogger(__name__)


def check_request(hub: Hub, request: web.Request) -> bool:
    """Origin and bearer-header checks before an upgrade (shared with /offer). Returns whether the
    header authenticated the request; raises ProtocolError when the request must be refused."""
    limits = hub.cfg.limits
    origin = request.headers.get("Origin")
    if origin is not None and limits.allowed_origins and origin not in limits.allowed_origins:
        raise ProtocolError("origin_not_allowed", f"origin {origin[:100]!r} is not allowed")
    header = request.headers.get("Authorization")
    if header is None or not limits.token:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), limits.token.encode()):
        raise ProtocolError("unauthorized", "wrong bearer token")
    return True


def refusal(exc: ProtocolError) -> web.Response:
    status = {"origin_not_allowed": 403, "unauthorized": 401}.get(exc.code, 400)
    return web.json_response({"type": "error", "code": exc.code, "message": exc.message}, status=status)


_FRAMES = (PoseFrame, RotationFrame)  # stream frames: bounded, the stale dropped first


class _Outbox:
    """Messages waiting for the socket: a bounded queue with a policy per kind, so the session never
    blocks and a client that does not read costs a bounded amount of memory.

    - pose frames: at most `max_frames`; the oldest go first (a late frame is worthless), counted;
    - an error whose code is already waiting is dropped, counted: a flood of messages over the rate
      budget makes one `rate_limited` reply per drain, not one per message;
    - everything else (ready, unit, unit_status, closing, the first error of each code) is kept: it
      is encoded now and its bytes counted, and once they pass `max_bytes` the client is hopeless:
      the queue is replaced by one `slow_client` error and the connection is ended (close 1008).

    It is the session's outlet (server/protocol.py:Outlet): `end` remembers the close code and wakes
    the connection, which flushes and closes.
    """

    def __init__(self, ws: web.WebSocketResponse, session_format: Callable[[], Format], max_frames: int,
                 max_bytes: int, metrics: Metrics) -> None:
        self.ws = ws
        # Frames as they are; the others encoded, with their tag (an error's code) for the policy.
        self.items: deque[PoseFrame | RotationFrame | tuple[str | None, str]] = deque()
        self.frames = 0
        self.bytes = 0  # of the encoded messages waiting
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._format = session_format
        self._metrics = metrics
        self.code: int | None = None  # the close code, once ended
        self.ended = asyncio.Event()
        self._waiting: set[str] = set()  # error codes queued and not sent yet
        self._ready = asyncio.Event()
        self.closed = False
        self.transport: asyncio.Transport | None = None  # set: rotation frames go straight onto it (send_now)

    def put(self, msg: ServerMessage) -> None:
        if self.closed:
            return
        if isinstance(msg, RotationFrame) and self.transport is not None and not self.items:
            if send_now(self.transport, msg, self._format()):
                return
        if isinstance(msg, _FRAMES):
            if self.frames >= self.max_frames:
                for i, old in enumerate(self.items):
                    if isinstance(old, _FRAMES):
                        del self.items[i]
                        self.frames -= 1
                        self._metrics.frames_dropped.inc()
                        break
            self.frames += 1
            self.items.append(msg)
            self._ready.set()
            return
        tag = msg.fields.get("code") if msg.type == "error" else None
        if tag is not None and tag in self._waiting:
            self._metrics.outbox_dropped.labels(msg.type).inc()
            return
        try:
            text = encode(msg, "json")
            assert isinstance(text, str)
            text.encode("utf-8")  # what the socket will do; the parser keeps non-text out, this keeps a bug in
        except Exception:
            log.exception("a %s message could not be encoded; dropped", msg.type)
            self._metrics.outbox_dropped.labels("unencodable").inc()
            return
        if tag is not None:
            self._waiting.add(tag)
        self.bytes += len(text)
        self.items.append((tag, text))
        self._ready.set()
        if self.bytes > self.max_bytes:
            self._hopeless()

    def _hopeless(self) -> None:
        self._metrics.outbox_dropped.labels("slow_client").inc(len(self.items))
        self._metrics.errors.labels("slow_client").inc()
        self.items.clear()
        self.frames = self.bytes = 0
        self._waiting.clear()
        text = encode(error_message("slow_client", f"more than {self.max_bytes} bytes of messages wait for this "
                                                   "client, which does not read them"), "json")
        assert isinstance(text, str)
        self.items.append(("slow_client", text))
        self.bytes = len(text)
        self.closed = True  # nothing more is queued
        self.end(CLOSE_POLICY)

    def end(self, code: int) -> None:
        self.code = code
        self.ended.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.items:
                item = self.items.popleft()
                if isinstance(item, _FRAMES):
                    self.frames -= 1
                    data = encode(item, self._format())
                else:
                    tag, data = item
                    self.bytes -= len(data)
                    self._waiting.discard(tag)  # the next of this code goes out again
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(data)


def websocket_route(hub: Hub) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _session(hub, request)
    return handler


async def _session(hub: Hub, request: web.Request) -> web.StreamResponse:
    try:
        authed = check_request(hub, request)
    except ProtocolError as exc:
        hub.metrics.errors.labels(exc.code).inc()
        return refusal(exc)
    limits = hub.cfg.limits
    # Admission is counted at the socket, before the first await: a slot is taken here and given
    # back when the connection ends, so max_sessions holds however the connections interleave.
    refuse = hub.admit()
    # aiohttp closes the connection above its own limit; between ours and 4x ours we answer and go on.
    ws = web.WebSocketResponse(max_msg_size=4 * limits.max_message_bytes, heartbeat=30.0)
    try:
        await ws.prepare(request)
        if refuse is not None:
            hub.metrics.errors.labels(refuse[0]).inc()
            await ws.send_str(encode(error_message(refuse[0], refuse[1]), "json"))
            await _close(ws, request, refuse[2])
            return ws
        await _connection(hub, ws, request, authed)
    finally:
        if refuse is None:
            hub.release()
    return ws


async def _connection(hub: Hub, ws: web.WebSocketResponse, request: web.Request, authed: bool) -> None:
    limits = hub.cfg.limits
    connected = time.monotonic()
    # The first message decides: a hello naming a channel joins that channel; anything else
    # (including a malformed first message, which the session answers) opens a private session.
    # It must come within the hello deadline: a silent connection does not hold a slot.
    try:
        first = await ws.receive(timeout=limits.hello_timeout_s)
    except asyncio.TimeoutError:
        hub.metrics.errors.labels("hello_timeout").inc()
        with contextlib.suppress(Exception):
            await ws.send_str(encode(error_message("hello_timeout", f"no hello within {limits.hello_timeout_s:g} s"),
                                     "json"))
        await _close(ws, request, CLOSE_POLICY)
        return
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        if not ws.closed:
            await _close(ws, request, WSCloseCode.MESSAGE_TOO_BIG if first.type == WSMsgType.ERROR else WSCloseCode.OK)
        return
    hello = _channel_hello(first.data, limits.max_message_bytes)
    if hello is not None:
        await _channel_member(hub, ws, request, hello, authed)
        return

    session: Session | None = None
    outbox = _Outbox(ws, lambda: session.format if session else "json", hub.cfg.live.outbox_frames,
                     limits.outbox_bytes, hub.metrics)
    session = hub.open_session(outbox, authed)
    hub.outboxes[session.id] = outbox
    clock = watch_clock(asyncio.create_task(session.run()), session)
    deadline = asyncio.create_task(_hello_deadline(session, connected + limits.hello_timeout_s))
    try:
        _handle_safely(session.handle, session.error, first.data)
        await _pump(ws, outbox, session.handle, session.error, hub.turn)
    finally:
        clock.cancel()
        deadline.cancel()
        session.close()
        hub.close_session(session)
        await _close(ws, request, outbox.code)


async def _hello_deadline(session: Session, at: float) -> None:
    """A private session that has not said hello by `at` is closed: before hello there is no
    idle timeout (nothing to sign yet), and pings or bad messages must not hold its slot."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    if not session.greeted and not session.ended:
        session.error("hello_timeout", f"no hello within {session.cfg.limits.hello_timeout_s:g} s of connecting")
        session.finish(CLOSE_POLICY)


async def _pump(ws: web.WebSocketResponse, outbox: _Outbox, handle: Callable[[str | bytes], None],
                report: Callable[[str, str], None], turn: asyncio.Lock) -> None:
    """Client messages in, outbox out, until the client goes or the session ends (then flush)."""
    writer = asyncio.create_task(outbox.run())
    reader = asyncio.create_task(_read(ws, handle, report, turn))
    waiter = asyncio.create_task(outbox.ended.wait())
    try:
        await asyncio.wait([reader, waiter, writer], return_when=asyncio.FIRST_COMPLETED)
        if outbox.ended.is_set():
            await _flush(outbox)
    finally:
        outbox.closed = True
        for task in (writer, reader, waiter):
            task.cancel()


async def _close(ws: web.WebSocketResponse, request: web.Request, code: int | None, timeout: float = 2.0) -> None:
    """Close with `code` (1000 when None). A client that does not read would hold the close
    handshake (and its slot) forever: after `timeout` the connection is dropped."""
    if ws.closed:
        return
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code=code if code is not None else WSCloseCode.OK)
    except (TimeoutError, ConnectionError):
        transport = request.transport
        if transport is not None:
            transport.abort()


def _channel_hello(raw: str | bytes, max_bytes: int) -> Hello | None:
    """The hello of a client that joins a channel; None for anything else. A hello asking for
    rotation frames joins a private channel when it names none: the channel owns the retargeter."""
    try:
        msg = parse_client_message(raw, max_bytes)
    except ProtocolError:
        return None
    return msg if isinstance(msg, Hello) and (msg.channel is not None or msg.frames != "poses") else None


class _Member:
    """A /ws client of a channel: every message of the channel, pose (or rotation) frames in its own format."""

    def __init__(self, outbox: _Outbox, fmt: Format, hello: Hello | None = None,
                 ready_rotations: Callable[[], dict] | None = None) -> None:
        self.outbox = outbox
        self.format = fmt
        self.frames = hello.frames if hello is not None else "poses"
        self.wants_rotations = self.frames == "rotations"
        self.wants_poses = self.frames == "poses"
        self._ready_rotations = ready_rotations

    def put(self, msg: ServerMessage) -> None:
        if isinstance(msg, Message) and msg.type == "ready":  # the format (and frames) this client reads
            extra = self._ready_rotations() if self.wants_rotations and self._ready_rotations else {}
            if self.frames == "none":
                extra = {"frames": "none"}
            msg = Message("ready", {**msg.fields, "format": self.format, **extra})
        self.outbox.put(msg)

    def end(self, code: int) -> None:
        self.outbox.end(code)

    def error(self, code: str, message: str) -> None:
        """An error answering this client's own message: to this client only."""
        self.outbox.put(error_message(code, message))


async def _channel_member(hub: Hub, ws: web.WebSocketResponse, request: web.Request, hello: Hello,
                          authed: bool) -> None:
    """Serve a /ws client as a member of the channel its hello names (the WebRTC viewers' channel)."""
    token = hub.cfg.limits.token
    refuse = None
    if token and not authed and (hello.token is None or not hmac.compare_digest(hello.token.encode(), token.encode())):
        refuse = ("unauthorized", "a valid token is required (hello.token or Authorization: Bearer)", CLOSE_POLICY)
    elif hello.language is not None and hello.language not in hub.engine.languages:
        refuse = ("unknown_language", f"no sign language {hello.language!r}", CLOSE_POLICY)
    if refuse is not None:
        hub.metrics.errors.labels(refuse[0]).inc()
        await ws.send_str(encode(error_message(refuse[0], refuse[1]), "json"))
        await _close(ws, request, refuse[2])
        return
    outbox = _Outbox(ws, lambda: member.format, hub.cfg.live.outbox_frames, hub.cfg.limits.outbox_bytes,
                     hub.metrics)
    member = _Member(outbox, hello.format, hello, lambda: rotation_rig(hub.cfg).ready)
    outbox.transport = request.transport if member.wants_rotations else None
    channel = hub.channels.open(hello.channel, hello.language)
    channel.join(member)  # its ready goes to this client

    def handle(raw: str | bytes) -> None:
        msg = channel.handle(member, raw)
        if isinstance(msg, ConfigChange) and msg.format is not None:  # a member's own format
            member.format = msg.format

    try:
        await _pump(ws, outbox, handle, member.error, hub.turn)
    finally:
        channel.leave(member)
        await _close(ws, request, outbox.code)


async def _flush(outbox: _Outbox, timeout: float = 2.0) -> None:
    """Let queued messages (a final error, the last statuses) reach the client before closing."""
    for _ in range(int(timeout / 0.01)):
        if not outbox.items:
            return
        await asyncio.sleep(0.01)


def _handle_safely(handle: Callable[[str | bytes], object], report: Callable[[str, str], None],
                   raw: str | bytes) -> None:
    try:
        handle(raw)
    except Exception:  # a bug must not take the server down: report (without its text), go on
        log.exception("a session failed on a message")
        report("internal_error", "the server failed on this message")


async def _read(ws: web.WebSocketResponse, handle: Callable[[str | bytes], None],
                report: Callable[[str, str], None], turn: asyncio.Lock) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            # One client message a turn of the event loop, server-wide, and the turn given up after
            # it: a caption costs up to ~10 ms (every word planned), and several clients' captions
            # handled in one turn would add up before any session's frame clock runs again.
            async with turn:
                _handle_safely(handle, report, msg.data)
                await asyncio.sleep(0)
        elif msg.type == WSMsgType.ERROR:
            # aiohttp has failed the connection (a message over 4x the limit, invalid UTF-8 text)
            log.info("websocket error %s", msg.data)
            break
