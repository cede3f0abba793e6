"""The WebSocket transport: /ws. Checks origin, token and capacity, then pumps raw client
messages into a Session and the session's messages (JSON text, or binary pose frames) out."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from server.protocol import (ConfigChange, Format, Hello, Message, PoseFrame, ProtocolError, ServerMessage, encode,
                             error_message, parse_client_message)
from server.session import CLOSE_GOING_AWAY, CLOSE_POLICY, Session

if TYPE_CHECKING:
    from server.app import Hub

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


class _Outbox:
    """Messages waiting for the socket. Never blocks the session: a slow client loses its oldest
    pose frames (counted), never a status or an error."""

    def __init__(self, ws: web.WebSocketResponse, session_format: Callable[[], Format], max_frames: int,
                 on_drop: Callable[[], None]) -> None:
        self.ws = ws
        self.items: deque[ServerMessage] = deque()
        self.frames = 0
        self.max_frames = max_frames
        self._format = session_format
        self._on_drop = on_drop
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, msg: ServerMessage) -> None:
        if self.closed:
            return
        if isinstance(msg, PoseFrame):
            if self.frames >= self.max_frames:
                for i, old in enumerate(self.items):
                    if isinstance(old, PoseFrame):
                        del self.items[i]
                        self.frames -= 1
                        self._on_drop()
                        break
            self.frames += 1
        self.items.append(msg)
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.items:
                msg = self.items.popleft()
                if isinstance(msg, PoseFrame):
                    self.frames -= 1
                data = encode(msg, self._format())
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
    # aiohttp closes the connection above its own limit; between ours and 4x ours we answer and go on.
    ws = web.WebSocketResponse(max_msg_size=4 * limits.max_message_bytes, heartbeat=30.0)
    await ws.prepare(request)
    refuse = None
    if hub.closing:
        refuse = ("shutting_down", "the server is shutting down", CLOSE_GOING_AWAY)
    elif len(hub.sessions) >= limits.max_sessions:
        refuse = ("too_many_sessions", f"the server holds {limits.max_sessions} sessions", WSCloseCode.TRY_AGAIN_LATER)
    if refuse is not None:
        hub.metrics.errors.labels(refuse[0]).inc()
        await ws.send_str(encode(error_message(refuse[0], refuse[1]), "json"))
        await ws.close(code=refuse[2])
        return ws

    # The first message decides: a hello naming a channel joins that channel; anything else
    # (including a malformed first message, which the session answers) opens a private session.
    try:
        first = await ws.receive(timeout=hub.cfg.limits.idle_timeout_s)
    except asyncio.TimeoutError:
        await ws.close(code=WSCloseCode.OK)
        return ws
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        if not ws.closed:
            await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG if first.type == WSMsgType.ERROR else WSCloseCode.OK)
        return ws
    hello = _channel_hello(first.data, hub.cfg.limits.max_message_bytes)
    if hello is not None:
        await _channel_member(hub, ws, hello, authed)
        return ws

    ending = _Ending()
    session: Session | None = None
    outbox = _Outbox(ws, lambda: session.format if session else "json", hub.cfg.live.outbox_frames,
                     hub.metrics.frames_dropped.inc)
    session = hub.open_session(outbox.put, ending, authed)
    hub.outboxes[session.id] = outbox
    clock = asyncio.create_task(session.run())
    session.handle(first.data)
    try:
        await _pump(ws, outbox, session.handle, session.error, ending)
    finally:
        clock.cancel()
        session.close()
        hub.close_session(session)
        await _close(ws, ending)
    return ws


class _Ending:
    """The session's end callback: remembers the close code and wakes the connection."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.event = asyncio.Event()

    def __call__(self, code: int) -> None:
        self.code = code
        self.event.set()


async def _pump(ws: web.WebSocketResponse, outbox: _Outbox, handle: Callable[[str | bytes], None],
                report: Callable[[str, str], None], ending: _Ending) -> None:
    """Client messages in, outbox out, until the client goes or the session ends (then flush)."""
    writer = asyncio.create_task(outbox.run())
    reader = asyncio.create_task(_read(ws, handle, report))
    waiter = asyncio.create_task(ending.event.wait())
    try:
        await asyncio.wait([reader, waiter, writer], return_when=asyncio.FIRST_COMPLETED)
        if ending.event.is_set():
            await _flush(outbox)
    finally:
        outbox.closed = True
        for task in (writer, reader, waiter):
            task.cancel()


async def _close(ws: web.WebSocketResponse, ending: _Ending) -> None:
    if not ws.closed:
        await ws.close(code=ending.code if ending.code is not None else WSCloseCode.OK)


def _channel_hello(raw: str | bytes, max_bytes: int) -> Hello | None:
    """The hello of a client that joins a channel; None for anything else."""
    try:
        msg = parse_client_message(raw, max_bytes)
    except ProtocolError:
        return None
    return msg if isinstance(msg, Hello) and msg.channel is not None else None


class _Member:
    """A /ws client of a channel: every message of the channel, pose frames in its own format."""

    wants_poses = True

    def __init__(self, outbox: _Outbox, fmt: Format, end: Callable[[int], None]) -> None:
        self.outbox = outbox
        self.format = fmt
        self._end = end

    def put(self, msg: ServerMessage) -> None:
        if isinstance(msg, Message) and msg.type == "ready":  # the format this client reads
            msg = Message("ready", {**msg.fields, "format": self.format})
        self.outbox.put(msg)

    def end(self, code: int) -> None:
        self._end(code)


async def _channel_member(hub: Hub, ws: web.WebSocketResponse, hello: Hello, authed: bool) -> None:
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
        await ws.close(code=refuse[2])
        return
    ending = _Ending()
    outbox = _Outbox(ws, lambda: member.format, hub.cfg.live.outbox_frames, hub.metrics.frames_dropped.inc)
    member = _Member(outbox, hello.format, ending)
    channel = hub.channels.open(hello.channel, hello.language)
    channel.join(member)  # its ready goes to this client

    def handle(raw: str | bytes) -> None:
        msg = channel.handle(member, raw)
        if isinstance(msg, ConfigChange) and msg.format is not None:  # a member's own format
            member.format = msg.format

    try:
        await _pump(ws, outbox, handle, channel.session.error, ending)
    finally:
        channel.leave(member)
        await _close(ws, ending)


async def _flush(outbox: _Outbox, timeout: float = 2.0) -> None:
    """Let queued messages (a final error, the last statuses) reach the client before closing."""
    for _ in range(int(timeout / 0.01)):
        if not outbox.items:
            return
        await asyncio.sleep(0.01)


async def _read(ws: web.WebSocketResponse, handle: Callable[[str | bytes], None],
                report: Callable[[str, str], None]) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            try:
                handle(msg.data)
            except Exception:  # a bug must not take the server down: report, go on
                log.exception("a session failed on a message")
                report("internal_error", "the server failed on this message")
        elif msg.type == WSMsgType.ERROR:
            # aiohttp has failed the connection (a message over 4x the limit, invalid UTF-8 text)
            log.info("websocket error %s", msg.data)
            break
