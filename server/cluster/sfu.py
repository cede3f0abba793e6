"""Video through Janus (docs/cluster.md "Video through Janus"): a channel's one encoded stream,
fanned out to every server's viewers by an SFU instead of rendered again on each server.

With `[cluster] janus` set, a channel's owner publishes its `VideoStream`'s track into a Janus
VideoRoom room named after the channel (aiortc as the publisher over Janus's HTTP API). The packets
it sends are those a local viewer gets: encoded once, forwarded by Janus without re-encoding.

A viewer of any server subscribes through that server, which proxies the signalling so the page
and the load balancer need only our origin. Janus, not the viewer, makes the offer:

  POST /sfu/offer  {"channel", "token"?}      → {"type": "offer", "sdp", "id"}   (Janus's offer)
  POST /sfu/answer {"id", "type": "answer", "sdp"} → {"type": "started"}   (on any server)

The page keeps its captions and statuses on /ws (the data channel of /offer has no place in a
Janus subscription). On failover the new owner makes the room anew and publishes; each server
hangs up its subscribers of a feed that is gone, and a viewer whose connection closes subscribes
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from server.config import Config
from server.protocol import Hello, ProtocolError, parse_client_message
from server.transports.video import VideoRenderer, ViewerTrack
from server.transports.webrtc import set_codec

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"
_NO_ROOM = 426  # VideoRoom: no such room
_NO_SESSION, _NO_HANDLE = 458, 459  # Janus API errors
_FEED_WAIT_S = 10.0  # a subscriber waits this long for the owner's publisher (a channel just opened)
_ANSWER_WAIT_S = 30.0  # a subscription not connected this long after its offer is dropped
_KEEPALIVE_S = 15.0  # Janus drops a session silent for session_timeout (60 s in deploy/janus)
_FEED_CHECK_S = 1.0  # how often a server checks that its subscribers' feeds are still published


class JanusError(RuntimeError):
    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Janus:
    """One Janus session over the HTTP API: requests, keepalives, and its events long-polled and
    handed to the handle (and transaction) they are for."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http: aiohttp.ClientSession | None = None
        self.session = 0
        self.handles: dict[int, Handle] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task] = []
        self.reachable: bool | None = None  # as the last request or poll found it (None: not asked yet)

    async def start(self) -> None:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=65))
        self.session = (await self.post("", {"janus": "create"}))["data"]["id"]
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._keepalive())]

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        body = {**body, "transaction": body.get("transaction") or self.transaction()}
        try:
            async with self.http.post(f"{self.url}{path}", json=body) as r:
                reply = await r.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.reachable = False
            raise
        self.reachable = True
        if reply.get("janus") == "error":
            raise JanusError(reply["error"].get("reason", "janus error"), reply["error"].get("code", 0))
        return reply

    def transaction(self) -> str:
        return f"t{next(self._ids)}"

    async def attach(self) -> Handle:
        reply = await self.post(f"/{self.session}", {"janus": "attach", "plugin": VIDEOROOM})
        handle = self.handles[reply["data"]["id"]] = Handle(self, reply["data"]["id"])
        return handle

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(_KEEPALIVE_S)
            with contextlib.suppress(aiohttp.ClientError, JanusError, asyncio.TimeoutError):
                await self.post(f"/{self.session}", {"janus": "keepalive"})

    async def _poll(self) -> None:
        assert self.http is not None
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.session}", params={"maxev": "10"}) as r:
                    events = await r.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                self.reachable = False
                log.warning("janus: events: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if not isinstance(events, (dict, list)) or (isinstance(events, dict) and events.get("janus") == "error"):
                # Janus answers a poll of a session it does not know with an empty body: ask about it
                await self._check_session()
                continue
            for event in events if isinstance(events, list) else [events]:
                handle = self.handles.get(event.get("sender", 0)) if isinstance(event, dict) else None
                if handle is not None:
                    try:
                        handle.event(event)
                    except Exception:  # a bug in one handle's callback must not end the events of all
                        log.exception("janus: an event handler failed")

    async def _check_session(self) -> None:
        try:
            await self.post(f"/{self.session}", {"janus": "keepalive"})
        except JanusError as exc:
            if exc.code == _NO_SESSION:
                log.warning("janus: session %s lost (Janus restarted?)", self.session)
                return await self._renew()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            pass
        await asyncio.sleep(1.0)

    async def _renew(self) -> None:
        """A new session for a lost one: its handles are gone with it (their owners hear a hangup:
        a publisher publishes again, a subscriber's viewer subscribes again)."""
        try:
            self.session = (await self.post("", {"janus": "create"}))["data"]["id"]
        except (aiohttp.ClientError, asyncio.TimeoutError, JanusError, ValueError) as exc:
            log.warning("janus: no new session: %s", exc)
            await asyncio.sleep(1.0)
            return
        log.info("janus: new session %s", self.session)
        lost, self.handles = list(self.handles.values()), {}
        for handle in lost:
            handle.on_hangup()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.post(f"/{self.session}", {"janus": "destroy"})
            await self.http.close()


class Handle:
    """A VideoRoom handle: synchronous requests, asynchronous ones answered by an event."""

    def __init__(self, janus: Janus, id: int) -> None:
        self.janus, self.id = janus, id
        self.path = f"/{janus.session}/{id}"
        self._waiting: dict[str, asyncio.Future] = {}
        self.on_hangup: Callable[[], None] = lambda: None
        self.on_up: Callable[[], None] = lambda: None  # its WebRTC connection is up
        self.feed: tuple[str, Any] = ("", None)  # a subscriber's room and publisher

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous VideoRoom request (create, destroy, listparticipants): its data."""
        reply = await self.janus.post(self.path, {"janus": "message", "body": body})
        return _plugin_data(reply)

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                      timeout: float = 10.0) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous request (join, publish, start): the data and jsep of the event answering it."""
        transaction = self.janus.transaction()
        done = self._waiting[transaction] = asyncio.get_running_loop().create_future()
        try:
            await self.janus.post(self.path, {"janus": "message", "body": body, "transaction": transaction,
                                              **({"jsep": jsep} if jsep else {})})
            event = await asyncio.wait_for(done, timeout)
        finally:
            self._waiting.pop(transaction, None)
        return _plugin_data(event), event.get("jsep")

    def event(self, event: dict[str, Any]) -> None:
        log.debug("janus: event %s", event)
        waiting = self._waiting.get(event.get("transaction", ""))
        if event.get("janus") == "event" and waiting is not None and not waiting.done():
            waiting.set_result(event)
        elif event.get("janus") == "webrtcup":
            self.on_up()
        elif event.get("janus") in ("hangup", "detached"):
            self.on_hangup()

    async def detach(self) -> None:
        self.janus.handles.pop(self.id, None)
        with contextlib.suppress(Exception):
            await self.janus.post(self.path, {"janus": "detach"})


def _plugin_data(reply: dict[str, Any]) -> dict[str, Any]:
    data = reply.get("plugindata", {}).get("data", {})
    if "error_code" in data:
        raise JanusError(data.get("error", "videoroom error"), data["error_code"])
    return data


class Publisher:
    """The owner's video of one channel, published into the channel's room."""

    def __init__(self, handle: Handle, pc: RTCPeerConnection, track: ViewerTrack) -> None:
        self.handle, self.pc, self.track = handle, pc, track
        self.ended = asyncio.Event()  # Janus hung it up, lost its session, or the connection failed: publish again
        handle.on_hangup = self.ended.set

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.ended.set()

    async def close(self) -> None:
        self.track.stop()
        await self.pc.close()
        await self.handle.detach()  # leaves the room; its subscribers get nothing more


class Sfu:
    """This server's side of Janus: publishing the channels it owns, subscribing its viewers."""

    def __init__(self, cfg: Config, renderer: Callable[[], Awaitable[VideoRenderer]]) -> None:
        self.cfg = cfg
        self.renderer = renderer  # the server's one avatar renderer (server/transports/webrtc.py)
        self.janus = Janus(cfg.cluster.janus)
        self._started: asyncio.Task | None = None
        self._pending: dict[int, Handle] = {}  # subscriptions offered, not yet connected, by handle
        self._subscribers: set[Handle] = set()
        self._checking: asyncio.Task | None = None
        self._control: Handle | None = None

    async def _session(self) -> Janus:
        if self._started is None or (self._started.done() and self._started.exception() is not None):
            self._started = asyncio.ensure_future(self.janus.start())  # first use, or Janus was down then
        await asyncio.shield(self._started)
        return self.janus

    def health(self) -> str:
        """For /healthz: whether this server reaches Janus ("not used yet" before its first request)."""
        return {None: "not used yet", True: "reachable", False: "unreachable"}[self.janus.reachable]

    def room(self, channel: str) -> str:
        return f"{self.cfg.cluster.prefix}:{channel}"

    async def publish(self, channel: str, track: ViewerTrack) -> Publisher:
        """The room of `channel` made anew (a dead owner's publisher goes with the old one), and
        `track` published into it; the stream draws once Janus is connected."""
        janus, codec = await self._session(), self.cfg.webrtc.codec
        handle = await janus.attach()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            await self._publish(handle, pc, self.room(channel), track, codec)
        except BaseException:
            await pc.close()
            await handle.detach()
            raise
        log.info("sfu: publishing channel %r into room %r", channel, self.room(channel))
        return Publisher(handle, pc, track)

    async def _publish(self, handle: Handle, pc: RTCPeerConnection, room: str, track: ViewerTrack, codec: str
                       ) -> None:
        with contextlib.suppress(JanusError):  # none yet (426) is the usual case
            await handle.request({"request": "destroy", "room": room})
        await handle.request({"request": "create", "room": room, "publishers": 1, "videocodec": codec,
                              "audiocodec": "opus", "notify_joining": False, "bitrate": 0})
        await handle.message({"request": "join", "ptype": "publisher", "room": room,
                              "display": self.cfg.cluster.process or "owner"})
        transceiver = pc.addTransceiver(track, direction="sendonly")
        set_codec(transceiver, codec)  # before the offer: the room takes this codec only
        # Janus relays its subscribers' picture-loss reports: a keyframe of the one encode.
        transceiver.sender._send_keyframe = track.stream.request_keyframe

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                track.connect()  # the stream draws and encodes from now on

        await pc.setLocalDescription(await pc.createOffer())  # host candidates, no STUN: Janus's ICE rules apply
        _, jsep = await handle.message({"request": "publish", "audio": False, "video": True, "data": False},
                                       {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False})
        if jsep is None:
            raise JanusError("janus answered the publisher without SDP")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))

    async def subscribe(self, channel: str) -> tuple[str, str]:
        """Janus's offer of the channel's video to a new viewer: (subscription id, SDP)."""
        janus = await self._session()
        handle = await janus.attach()
        try:
            feed = await self._feed(handle, self.room(channel))
            _, jsep = await handle.message({"request": "join", "ptype": "subscriber", "room": self.room(channel),
                                            "streams": [{"feed": feed}]})
            if jsep is None:
                raise JanusError("janus offered no SDP")
        except BaseException:
            await handle.detach()
            raise
        self._pending[handle.id] = handle
        handle.feed = (self.room(channel), feed)
        handle.on_up = lambda: self._connected(handle)
        handle.on_hangup = lambda: self._expire(handle.id)
        asyncio.get_running_loop().call_later(_ANSWER_WAIT_S, self._expire, handle.id)
        return f"{janus.session}-{handle.id}", jsep["sdp"]

    async def _feed(self, handle: Handle, room: str) -> Any:
        """The room's publisher, waiting a while for one (the owner may just be starting it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FEED_WAIT_S
        while True:
            with contextlib.suppress(JanusError):
                data = await handle.request({"request": "listparticipants", "room": room})
                feeds = [p["id"] for p in data.get("participants", []) if p.get("publisher")]
                if feeds:
                    return feeds[-1]
            if loop.time() > deadline:
                raise JanusError("this channel has no video published (is it open?)", _NO_ROOM)
            await asyncio.sleep(0.2)

    async def answer(self, sub: str, sdp: str) -> None:
        """The viewer's answer, from whichever server the balancer sent it to: the id names the Janus
        session and handle (random 64-bit numbers, so the id is the capability), and any server can
        start a subscription of another's session. Its server sees it connect (`_connected`)."""
        session, _, handle = sub.partition("-")
        if not (session.isdigit() and handle.isdigit()):
            raise KeyError(sub)
        janus = await self._session()
        try:
            await janus.post(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"},
                                                      "jsep": {"type": "answer", "sdp": sdp, "trickle": False}})
        except JanusError as exc:
            if exc.code in (_NO_SESSION, _NO_HANDLE):
                raise KeyError(sub) from None
            raise

    def _connected(self, handle: Handle) -> None:
        """A subscription's media is up (WebRTC up): watched from now on until it hangs up."""
        if self._pending.pop(handle.id, None) is None:
            return
        self._subscribers.add(handle)

        def gone() -> None:  # the viewer left, or its feed went (failover): free the handle
            if handle in self._subscribers:
                self._subscribers.discard(handle)
                asyncio.ensure_future(handle.detach())

        handle.on_hangup = gone
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check_feeds())

    async def _check_feeds(self) -> None:
        """Hang up the subscribers whose feed is gone. A new owner makes the room anew, and Janus
        leaves the old room's subscribers connected to nothing (a frozen picture, no event): detached,
        their connection closes, and the page subscribes again to the new owner's feed."""
        while self._subscribers:
            await asyncio.sleep(_FEED_CHECK_S)
            if self._control is None:
                self._control = await self.janus.attach()  # for the checks: a subscriber's may go meanwhile
            live: set[Any] = set()
            for room in {h.feed[0] for h in self._subscribers}:
                try:
                    data = await self._control.request({"request": "listparticipants", "room": room})
                except JanusError as exc:
                    if exc.code != _NO_ROOM:  # only a room that is gone tells its feeds are
                        live |= {h.feed for h in self._subscribers if h.feed[0] == room}
                    continue
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    live |= {h.feed for h in self._subscribers if h.feed[0] == room}  # Janus unreachable: wait
                    continue
                live |= {(room, p["id"]) for p in data.get("participants", []) if p.get("publisher")}
            for sub in [h for h in self._subscribers if h.feed not in live]:
                log.info("sfu: feed %s of room %r is gone: hanging its subscriber up", sub.feed[1], sub.feed[0])
                sub.on_hangup()

    def _expire(self, key: int) -> None:
        handle = self._pending.pop(key, None)
        if handle is not None:
            asyncio.ensure_future(handle.detach())

    async def close(self, app: web.Application | None = None) -> None:
        if self._checking is not None:
            self._checking.cancel()
        if self._started is not None:
            await self.janus.close()


def _bad(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response({"type": "error", "code": code, "message": message}, status=status)


class SfuRoutes:
    """POST /sfu/offer and /sfu/answer: the signalling proxy between a viewer and Janus."""

    def __init__(self, sfu: Sfu, check: Callable[[web.Request], bool]) -> None:
        self.sfu = sfu
        self.check = check  # origin and bearer header (server/transports/websocket.py: check_request)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except web.HTTPException:
            raise
        except Exception:
            raise ProtocolError("bad_json", "the request is not valid JSON") from None
        if not isinstance(body, dict):
            raise ProtocolError("bad_json", "the request must be a JSON object")
        return body

    async def offer(self, request: web.Request) -> web.Response:
        cfg = self.sfu.cfg
        try:
            authed = self.check(request)
            body = await self._body(request)
            hello = parse_client_message(json.dumps({"type": "hello", **{k: body[k] for k in ("channel", "token")
                                                                         if k in body}}),
                                         cfg.limits.max_message_bytes)
            assert isinstance(hello, Hello)
            if hello.channel is None:
                raise ProtocolError("bad_field", "channel: /sfu/offer needs the channel to watch")
            token = cfg.limits.token
            if token and not authed and (hello.token is None
                                         or not hmac.compare_digest(hello.token.encode(), token.encode())):
                return _bad("unauthorized", "a valid token is required (token or Authorization: Bearer)", 401)
        except ProtocolError as exc:
            return _bad(exc.code, exc.message, {"origin_not_allowed": 403, "unauthorized": 401}.get(exc.code, 400))
        try:
            sub, sdp = await self.sfu.subscribe(hello.channel)
        except (JanusError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.info("sfu: no subscription to %r: %s", hello.channel, exc)
            return _bad("no_video", f"no video of channel {hello.channel!r} to subscribe to", 503)
        return web.json_response({"type": "offer", "sdp": sdp, "id": sub})

    async def answer(self, request: web.Request) -> web.Response:
        try:
            self.check(request)
            body = await self._body(request)
        except ProtocolError as exc:
            return _bad(exc.code, exc.message)
        sub, sdp = body.get("id"), body.get("sdp")
        if body.get("type") != "answer" or not isinstance(sub, str) or not isinstance(sdp, str) or not sdp.isascii():
            return _bad("bad_field", 'an answer needs "id", "type": "answer" and an ASCII "sdp" string')
        try:
            await self.sfu.answer(sub, sdp)
        except KeyError:
            return _bad("bad_field", "id: no such subscription (expired?)", 404)
        except (JanusError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.info("sfu: answer refused: %s", exc)
            return _bad("bad_field", "sdp: Janus refused this answer")
        return web.json_response({"type": "started"})


class SfuViewer:
    """The client side of /sfu, for tests and bench/cluster.py: a real aiortc peer that takes Janus's
    offer of a channel's video through one server and answers through `answer_to` (another server
    behind the same balancer) or the same one. Host candidates, no STUN."""

    def __init__(self, pc: RTCPeerConnection, track: Any) -> None:
        self.pc, self.track = pc, track

    @classmethod
    async def join(cls, http: aiohttp.ClientSession, url: str, channel: str, answer_to: str | None = None
                   ) -> SfuViewer:
        async with http.post(f"{url}/sfu/offer", json={"channel": channel}) as r:
            offer = await r.json()
            if r.status != 200:
                raise ConnectionError(f"/sfu/offer: {r.status} {offer}")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            async with http.post(f"{answer_to or url}/sfu/answer",
                                 json={"id": offer["id"], "type": "answer", "sdp": pc.localDescription.sdp}) as r:
                if r.status != 200:
                    raise ConnectionError(f"/sfu/answer: {r.status} {await r.text()}")
            return cls(pc, await asyncio.wait_for(tracks.get(), 10))
        except BaseException:
            await pc.close()
            raise

    async def close(self) -> None:
        await self.pc.close()
