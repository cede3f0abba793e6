"""The WebRTC transport: POST /offer. One aiortc peer connection per viewer: a video track with the
rendered avatar and a data channel that carries the same JSON messages as /ws (captions in; ready,
unit, unit_status, error out). Every viewer is a client of a channel (server/transports/channels.py): the one
it names, shared with the channel's other clients (one session, one render), or a private one.
Pose frames become the channel's video instead of data-channel messages.

The peer connection closes when its channel's session ends (after its last messages went out),
when its data channel closes, and when ICE fails or the connection closes.

ICE: no STUN/TURN unless [webrtc] ice_servers names some. With [webrtc] loopback_only the server
offers a 127.0.0.1 host candidate only and ignores the peer's other candidates, so all media stays
on the loopback interface (aioice leaves 127.0.0.1 out of its host addresses; `gather_loopback`
gathers it explicitly, per connection, without patching aioice).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel

from server.transports.channels import Channel
from server.config import Config
from server.protocol import (Hello, Message, PoseFrame, ProtocolError, RotationFrame, ServerMessage, encode,
                             error_message, parse_client_message)
from server.rotation_stream import rotation_rig
from server.transports.websocket import check_request, refusal
from server.transports.video import RGB, VideoRenderer, ViewerTrack, parse_colour

if TYPE_CHECKING:
    from server.hub import Hub

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CHANNEL_LABEL = "signstream"
_HELLO_FIELDS = ("language", "format", "frames", "idle_frames", "token", "channel", "background")
_FRAME_BUFFER = 16_384  # bytes a data channel may hold unsent before rotation frames are dropped (~0.5 s of JSON)
_MIME = {"vp8": ("video/vp8",), "h264": ("video/h264",)}


def rtc_configuration(cfg: Config) -> RTCConfiguration:
    # An explicit empty list: aiortc falls back to a public STUN server when given None.
    return RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in cfg.webrtc.ice_servers])


def loopback_sdp(sdp: str) -> str:
    """The SDP without candidates on any address but 127.0.0.1 (no traffic to other interfaces)."""
    keep = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 5 or parts[4] != LOOPBACK:
                continue
        keep.append(line)
    return "\r\n".join(keep) + "\r\n"


async def gather_loopback(pc: RTCPeerConnection) -> None:
    """Gather a 127.0.0.1 host candidate, and only that, for every ICE transport of `pc`.

    Call after the transports exist (after setRemoteDescription, or after adding the transceivers
    and channels of an offer) and before setLocalDescription, which then finds gathering done.
    """
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    seen: set[int] = set()
    for dtls in transports:
        connection = dtls.transport.iceGatherer._connection
        if id(connection) in seen or connection._local_candidates_start:
            continue
        seen.add(id(connection))
        connection._local_candidates_start = True  # aioice's own gathering skips a started one
        for component in connection._components:
            connection._local_candidates += await connection.get_component_candidates(component, [LOOPBACK])
        connection._local_candidates_end = True


def set_codec(transceiver, codec: str) -> None:
    """Prefer `codec` (with its retransmission format); before setRemoteDescription."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType.lower() in _MIME[codec]]
    transceiver.setCodecPreferences(chosen + [c for c in caps if c.mimeType.lower() == "video/rtx"])


class _NoVideo(ValueError):
    """An offer without the video section the avatar is sent on."""


def _bad(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response({"type": "error", "code": code, "message": message}, status=status)


class _Peer:
    """One viewer as a member of its channel: the channel's messages → the data channel, held until
    it opens. Bounded like the /ws outbox: an error whose code is already waiting is dropped, and a
    viewer with more than limits.outbox_bytes waiting (held, or buffered in SCTP because it does
    not read) is hung up on with slow_client."""

    wants_poses = False
    wants_rotations = False  # hello.frames = "rotations": rotation frames on the data channel too
    format = "json"  # how those frames travel (hello.format)

    def __init__(self, pc: RTCPeerConnection, transport: WebrtcTransport) -> None:
        self.pc = pc
        self.transport = transport
        self.channel: RTCDataChannel | None = None
        self.waiting: list[str] = []
        self._waiting_bytes = 0
        self._waiting_codes: set[str] = set()
        self.closed = False
        self.admitted = False  # holds a client slot (Hub.admit)
        self.track: ViewerTrack | None = None
        self.room: Channel | None = None

    def put(self, msg: ServerMessage) -> None:
        if isinstance(msg, RotationFrame):
            return self._put_frame(msg)
        if self.wants_rotations and isinstance(msg, Message) and msg.type == "ready":
            msg = Message("ready", {**msg.fields, "format": self.format, **rotation_rig(self.transport.hub.cfg).ready})
        if self.closed or isinstance(msg, PoseFrame):
            return
        metrics, limit = self.transport.hub.metrics, self.transport.hub.cfg.limits.outbox_bytes
        code = msg.fields.get("code") if msg.type == "error" else None
        try:
            text = encode(msg, "json")
            assert isinstance(text, str)
            text.encode("utf-8")  # what the data channel will do
        except Exception:
            log.exception("a %s message could not be encoded; dropped", msg.type)
            metrics.outbox_dropped.labels("unencodable").inc()
            return
        if self.channel is not None and self.channel.readyState == "open":
            if self.channel.bufferedAmount > limit:
                return self._hopeless()
            self.channel.send(text)
            return
        if code is not None and code in self._waiting_codes:
            metrics.outbox_dropped.labels("error").inc()
            return
        if code is not None:
            self._waiting_codes.add(code)
        self.waiting.append(text)
        self._waiting_bytes += len(text)
        if self._waiting_bytes > limit:
            self._hopeless()

    def _put_frame(self, frame: RotationFrame) -> None:
        """A rotation frame, now or never: one that would wait behind a full buffer is stale, dropped."""
        ch = self.channel
        if self.closed or not self.wants_rotations or ch is None or ch.readyState != "open":
            return
        if ch.bufferedAmount > _FRAME_BUFFER:
            self.transport.hub.metrics.frames_dropped.inc()
            return
        ch.send(frame.wire(self.format))

    def _hopeless(self) -> None:
        hub = self.transport.hub
        hub.metrics.errors.labels("slow_client").inc()
        hub.metrics.outbox_dropped.labels("slow_client").inc(len(self.waiting))
        self.waiting.clear()
        self._waiting_bytes = 0
        if self.channel is not None and self.channel.readyState == "open":
            with contextlib.suppress(Exception):
                self.channel.send(encode(error_message("slow_client", "this viewer does not read its messages"),
                                         "json"))
        asyncio.ensure_future(self.teardown())

    def opened(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        for text in self.waiting:
            channel.send(text)
        self.waiting.clear()
        self._waiting_bytes = 0
        self._waiting_codes.clear()

    def end(self, code: int) -> None:
        asyncio.ensure_future(self.finish())

    async def finish(self) -> None:
        """The session ended: let its last messages out, then hang up."""
        for _ in range(200):
            if self.channel is None or self.channel.readyState != "open" or self.channel.bufferedAmount == 0:
                break
            await asyncio.sleep(0.01)
        await self.teardown()

    async def teardown(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.admitted:
            self.admitted = False
            self.transport.hub.release()
        if self.track is not None:
            self.track.stop()
        if self.room is not None:
            self.room.leave(self)
        self.transport.peers.discard(self)
        with contextlib.suppress(Exception):  # a half-negotiated peer may fail to close cleanly
            await self.pc.close()


class WebrtcTransport:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._renderer: VideoRenderer | None = None
        self._renderer_lock = asyncio.Lock()
        self.peers: set[_Peer] = set()

    async def renderer(self) -> VideoRenderer:
        async with self._renderer_lock:
            if self._renderer is None:  # the avatar and GL context load on first use, off the loop
                self._renderer = await asyncio.get_running_loop().run_in_executor(None, VideoRenderer, self.hub.cfg)
            return self._renderer

    async def offer(self, request: web.Request) -> web.Response:
        hub = self.hub
        try:
            authed = check_request(hub, request)
        except ProtocolError as exc:
            hub.metrics.errors.labels(exc.code).inc()
            return refusal(exc)
        refuse = hub.admit()  # a viewer holds a slot from here (before any await) until its teardown
        if refuse is not None:
            hub.metrics.errors.labels(refuse[0]).inc()
            return _bad(refuse[0], refuse[1], 503)
        try:
            response, peer = await self._offer(request, authed)
        except BaseException:
            hub.release()
            raise
        if peer is None:
            hub.release()
        else:
            peer.admitted = True
        return response

    async def _offer(self, request: web.Request, authed: bool) -> tuple[web.Response, _Peer | None]:
        """The answer and its peer (None with a refusal)."""
        hub = self.hub
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            limit = hub.cfg.limits.max_message_bytes
            return _bad("message_too_large", f"the offer is larger than {limit} bytes", 413), None
        except web.HTTPException:
            raise
        except Exception:  # ValueError, UnicodeDecodeError, RecursionError (deep nesting)...: not our JSON
            return _bad("bad_json", "the offer is not valid JSON"), None
        if not isinstance(body, dict):
            return _bad("bad_json", "the offer must be a JSON object"), None
        sdp = body.get("sdp")
        if body.get("type") != "offer" or not isinstance(sdp, str) or not sdp.strip():
            return _bad("bad_field", 'an offer needs "type": "offer" and a non-empty "sdp" string'), None
        try:
            hello_raw = json.dumps({"type": "hello", **{k: body[k] for k in _HELLO_FIELDS if k in body}})
            hello = parse_client_message(hello_raw, hub.cfg.limits.max_message_bytes)
            assert isinstance(hello, Hello)
            if hello.language is not None and hello.language not in hub.engine.languages:
                raise ProtocolError("unknown_language", f"no sign language {hello.language!r}")
            background = parse_colour(hello.background) if hello.background is not None else None
        except ProtocolError as exc:
            return _bad(exc.code, exc.message), None
        except ValueError:
            return _bad("bad_field", "background: a colour is #RRGGBB"), None
        if not sdp.isascii():  # SDP is ASCII (RFC 8866 allows UTF-8 only in free text we never read)
            return _bad("bad_field", "sdp: not ASCII"), None
        token = hub.cfg.limits.token
        if token and not authed and (hello.token is None or not hmac.compare_digest(hello.token.encode(), token.encode())):
            return _bad("unauthorized", "a valid token is required (token or Authorization: Bearer)", 401), None
        return await self._connect(sdp, hello, background)

    async def _connect(self, sdp: str, hello: Hello, background: RGB | None) -> tuple[web.Response, _Peer | None]:
        hub, wcfg = self.hub, self.hub.cfg.webrtc
        renderer = await self.renderer()
        pc = RTCPeerConnection(rtc_configuration(hub.cfg))
        transceiver = pc.addTransceiver("video", direction="sendonly")
        set_codec(transceiver, wcfg.codec)
        peer = _Peer(pc, self)
        peer.wants_rotations, peer.format = hello.frames == "rotations", hello.format
        try:
            remote = loopback_sdp(sdp) if wcfg.loopback_only else sdp
            await pc.setRemoteDescription(RTCSessionDescription(remote, "offer"))
            if transceiver.mid is None:
                raise _NoVideo("the offer has no video section to receive the avatar")
            # The offer is good: join the channel and send its picture (the answer names this track).
            room = peer.room = hub.channels.open(hello.channel, hello.language)
            room.join(peer)
            track = peer.track = room.watch(renderer, wcfg.codec, background)
            transceiver.sender.replaceTrack(track)
            # One encode serves every viewer, so a viewer's picture-loss report asks the video stream for
            # a keyframe (aiortc's own flag only reaches its own encoder, which packets bypass).
            transceiver.sender._send_keyframe = track.stream.request_keyframe
            if wcfg.loopback_only:
                await gather_loopback(pc)
            # /offer does not trickle: the offer's candidates are all there will be, so ICE fails
            # (and the peer closes) once they are tried, instead of waiting for more forever. Not
            # for an offer without usable candidates (a browser that hides its addresses): its
            # checks to us make peer-reflexive pairs, which aioice would not wait for.
            if "a=candidate:" in remote:
                await pc.addIceCandidate(None)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, OperationError, parse errors, AttributeError...
            await peer.teardown()
            log.info("offer refused: %s: %s", type(exc).__name__, exc)  # the reply names no internals
            reason = str(exc) if isinstance(exc, _NoVideo) else "the offer is not an SDP offer this server can answer"
            return _bad("bad_field", f"sdp: {reason}"), None
        self.peers.add(peer)
        self._wire(peer)
        # No render before the peer connects (server/transports/video.py), and an answer nobody
        # connects to is released after connect_timeout_s (an offer without candidates would
        # otherwise wait for ICE forever, one that has some for its 30-60 s of checks).
        asyncio.ensure_future(self._connect_deadline(peer))
        return web.json_response({"type": "answer", "sdp": pc.localDescription.sdp}), peer

    async def _connect_deadline(self, peer: _Peer) -> None:
        await asyncio.sleep(self.hub.cfg.webrtc.connect_timeout_s)
        if not peer.closed and peer.pc.connectionState != "connected":
            self.hub.metrics.errors.labels("connect_timeout").inc()
            await peer.teardown()

    def _wire(self, peer: _Peer) -> None:
        pc, room = peer.pc, peer.room
        assert room is not None

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if channel.label != CHANNEL_LABEL or peer.channel is not None:
                return

            @channel.on("message")
            def on_message(raw: str | bytes) -> None:
                room.handle(peer, raw)  # answers this viewer alone, even when the server fails on it

            @channel.on("close")
            def on_close() -> None:
                asyncio.ensure_future(peer.teardown())

            peer.opened(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected" and peer.track is not None:
                peer.track.connect()  # the video stream renders from now on
            if pc.connectionState in ("failed", "closed"):
                await peer.teardown()

    async def close(self, app: web.Application) -> None:
        for peer in list(self.peers):
            with contextlib.suppress(Exception):
                await peer.teardown()
        if self._renderer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._renderer.close)
            self._renderer = None


class Viewer:
    """The client side, for tests and bench/webrtc.py: a real aiortc peer that offers to /offer,
    receives the avatar video and talks JSON on the data channel. 127.0.0.1 candidates only."""

    def __init__(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        self.pc = pc
        self.channel = channel
        self.messages: asyncio.Queue[dict] = asyncio.Queue()
        self.video: asyncio.Future = asyncio.get_running_loop().create_future()
        channel.on("message", lambda raw: self.messages.put_nowait(json.loads(raw)))

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video" and not self.video.done():
                self.video.set_result(track)

    @classmethod
    async def offer(cls, http, url: str, **hello) -> tuple[Viewer, int, dict]:
        """POST a fresh offer with `hello` fields; returns the viewer, the HTTP status and the JSON body."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        viewer = cls(pc, pc.createDataChannel(CHANNEL_LABEL))
        await gather_loopback(pc)
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer", **hello}) as r:
            body = await r.json()
            status = r.status
        if status == 200:
            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        return viewer, status, body

    async def send(self, msg: dict) -> None:
        while self.channel.readyState != "open":
            await asyncio.sleep(0.01)
        self.channel.send(json.dumps(msg))

    async def until(self, kind: str, timeout: float = 20) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.messages.get()
                if msg["type"] == kind:
                    return msg

    async def close(self) -> None:
        await self.pc.close()
