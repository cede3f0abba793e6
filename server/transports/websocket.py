"""The WebSocket transport: /ws. Checks origin, token and capacity, then pumps raw client
messages into a Session and the session's messages (JSON text, or binary pose frames) out."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from server.protocol import Format, PoseFrame, ProtocolError, ServerMessage, encode, error_message
from server.session import CLOSE_GOING_AWAY, Session

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

    close_code: list[int] = []
    ended = asyncio.Event()

    def end(code: int) -> None:
        close_code.append(code)
        ended.set()

    session: Session | None = None
    outbox = _Outbox(ws, lambda: session.format if session else "json", hub.cfg.live.outbox_frames,
                     hub.metrics.frames_dropped.inc)
    session = hub.open_session(outbox.put, end, authed)
    hub.outboxes[session.id] = outbox
    writer = asyncio.create_task(outbox.run())
    clock = asyncio.create_task(session.run())
    reader = asyncio.create_task(_read(ws, session))
    ending = asyncio.create_task(ended.wait())
    try:
        await asyncio.wait([reader, ending, writer], return_when=asyncio.FIRST_COMPLETED)
        if ended.is_set():
            await _flush(outbox)
    finally:
        session.close()
        outbox.closed = True
        for task in (clock, writer, reader, ending):
            task.cancel()
        hub.close_session(session)
        if not ws.closed:
            await ws.close(code=close_code[0] if close_code else WSCloseCode.OK)
    return ws


async def _flush(outbox: _Outbox, timeout: float = 2.0) -> None:
    """Let queued messages (a final error, the last statuses) reach the client before closing."""
    for _ in range(int(timeout / 0.01)):
        if not outbox.items:
            return
        await asyncio.sleep(0.01)


async def _read(ws: web.WebSocketResponse, session: Session) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            try:
                session.handle(msg.data)
            except Exception:  # a bug must not take the server down: report, go on
                log.exception("session %d failed on a message", session.id)
                session.error("internal_error", "the server failed on this message")
        elif msg.type == WSMsgType.ERROR:
            # aiohttp has failed the connection (a message over 4x the limit, invalid UTF-8 text)
            log.info("session %d: websocket error %s", session.id, msg.data)
            break
