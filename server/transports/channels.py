"""Channels: one caption stream — one Session, one render — shared by any number of clients.

An /offer (or a /ws hello) may name a channel. The first client opens it: a Session whose language
comes from that client's hello and, once a client wants video, one `VideoStream` (render + encode, server/transports/video.py) whose
packets every viewer's track gets. Any client of a channel may send captions, flush, config and
ping; they all go into the one session (one message-rate budget, one language), so every client
sees the same units and statuses. Replies to one client's message (ready, error, pong) go to that
client alone; everything else goes to all. A channel ends when its last client leaves, or when its
session ends (idle timeout, shutdown): then every client is closed with the session's close code.

A client that names no channel gets a private channel: the same machinery with one client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Gauge

from server.config import Config
from server.metrics import Metrics
from server.protocol import ClientMessage, Message, Outlet, PoseFrame, RotationFrame, ServerMessage
from server.rotation_stream import RotationStream, rotation_rig
from server.session import Session
from server.transports.video import RGB, VideoRenderer, VideoStream, ViewerTrack

if TYPE_CHECKING:
    from server.cluster.node import Cluster

log = logging.getLogger(__name__)
_REPLIES = ("ready", "error", "pong")  # answers to the client whose message is being handled


class Host(Protocol):
    """What channels need of the server that holds them (server/hub.py:Hub)."""

    cfg: Config
    metrics: Metrics
    cluster: Cluster | None  # named channels shared with other servers (server/cluster/), or None

    def open_session(self, out: Outlet, authed: bool) -> Session: ...
    def close_session(self, session: Session) -> None: ...


class Member(Outlet, Protocol):
    """A client of a channel, as its transport sees it: an outlet (`end`: the channel's session
    ended; flush, close with the code, then leave the channel)."""

    wants_poses: bool  # pose frames as messages (a /ws client); WebRTC viewers get video instead


def watch_clock(task: asyncio.Task, session: Session) -> asyncio.Task:
    """A frame clock that dies of a bug must not leave its clients watching a stream that stopped
    in silence: they get internal_error and the session ends (close 1011)."""
    def done(t: asyncio.Task) -> None:
        if t.cancelled() or t.exception() is None or session.ended:
            return
        log.error("session %d: the frame clock failed", session.id, exc_info=t.exception())
        session.error("internal_error", "the server failed; this session ends")
        session.finish(1011)
    task.add_done_callback(done)
    return task


class Channel:
    def __init__(self, channels: Channels, name: str | None, language: str | None) -> None:
        self.channels = channels
        self.host = channels.host
        self.name = name
        self.members: set[Member] = set()
        self.video: VideoStream | None = None
        self.rotations: RotationStream | None = None  # the one retargeter, while a member wants rotations
        self.closed = False
        self._replying: Member | None = None
        self._units: dict[Member, set[int]] = {}  # per member: units it got a `unit` for, not yet ended
        self.start(language)

    def start(self, language: str | None) -> None:
        """Open the channel's session and run its frame clock (a cluster channel: once it owns the channel)."""
        # Tokens were checked by the transport that let the client in.
        self.session = self.host.open_session(self, authed=True)  # the channel is its session's outlet
        self.session.handle(json.dumps({"type": "hello", **({"language": language} if language else {})}))
        self._clock = watch_clock(asyncio.create_task(self.session.run()), self.session)

    def join(self, member: Member) -> None:
        self.members.add(member)
        if getattr(member, "wants_rotations", False) and self.rotations is None:
            self.rotations = RotationStream(rotation_rig(self.host.cfg))
        member.put(self.session.ready_message())

    def handle(self, member: Member, raw: str | bytes) -> ClientMessage | None:
        """One raw message of `member` into the channel's session; the message as parsed. When the
        server fails on it, the internal_error goes to `member` alone, as any reply would."""
        self._replying = member
        try:
            return self.session.handle(raw)
        except Exception:  # a bug must not take the server down: report (without its text), go on
            log.exception("channel %r failed on a message", self.name)
            self.session.error("internal_error", "the server failed on this message")
            return None
        finally:
            self._replying = None

    def watch(self, renderer: VideoRenderer, codec: str, background: RGB | None) -> ViewerTrack:
        """A video track of the channel's one render (started by its first viewer, whose
        background colour it keeps)."""
        if self.video is None:
            self.video = VideoStream(renderer, codec, background)
        return self.video.watch()

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        self._units.pop(member, None)
        if not any(getattr(m, "wants_rotations", False) for m in self.members):
            self.rotations = None
        if self.video is not None and not self.video.viewers:
            self.video.stop()
            self.video = None
        if not self.members:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.session.close()
        self._clock.cancel()
        if self.video is not None:
            self.video.stop()
            self.video = None
        self.host.close_session(self.session)
        self.channels.forget(self)

    def put(self, msg: ServerMessage) -> None:
        """The session's output to the members: frames to those that want them, replies to the asker."""
        if isinstance(msg, PoseFrame):
            if self.video is not None:
                self.video.push(msg)
            for m in self.members:
                if m.wants_poses:
                    m.put(msg)
            # One retarget per channel, batched with the other channels whose clocks ticked in this
            # loop iteration (server/rotation_stream.py); every member that draws the avatar gets
            # the same frame, encoded once per format, into its own bounded queue (drops the stale).
            if self.rotations is not None:
                self.rotations.submit(msg, self._rotated)
        elif self._replying is not None and isinstance(msg, Message) and msg.type in _REPLIES:
            self._replying.put(msg)
        elif isinstance(msg, Message) and msg.type in ("unit", "unit_status"):
            # A member hears the end of a unit only if it heard its start (one that joined
            # mid-unit gets neither): the statuses it gets each answer a unit it knows.
            unit = msg.fields["unit"]
            for m in list(self.members):
                seen = self._units.setdefault(m, set())
                if msg.type == "unit":
                    seen.add(unit)
                elif unit in seen:
                    seen.discard(unit)
                else:
                    continue
                m.put(msg)
        else:
            for m in list(self.members):
                m.put(msg)

    def _rotated(self, frame: RotationFrame) -> None:
        for m in list(self.members):
            if getattr(m, "wants_rotations", False):
                m.put(frame)

    def end(self, code: int) -> None:
        for m in list(self.members):
            m.end(code)


class Channels:
    """The open channels of a server, by name, plus the private ones; their metrics."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.named: dict[str, Channel] = {}
        self.private: set[Channel] = set()
        r = host.metrics.registry
        Gauge("signstream_channels", "Open named channels", registry=r).set_function(lambda: len(self.named))
        Gauge("signstream_renders", "Avatar video streams rendered and encoded (one per channel with viewers)",
              registry=r).set_function(lambda: sum(c.video is not None for c in self.all()))
        Gauge("signstream_viewers", "WebRTC video viewers", registry=r).set_function(
            lambda: sum(len(c.video.viewers) for c in self.all() if c.video is not None))
        # How the renders keep up, summed over the open streams: a pose replaced before it was
        # drawn means the renderer fell behind the clock (the picture skipped a frame).
        for stat, help_text in (("drawn", "Poses drawn"), ("dropped", "Poses replaced before they were drawn"),
                                ("skipped", "Clock periods the encoder skipped")):
            Gauge(f"signstream_video_{stat}", f"{help_text}, over the open video streams", registry=r).set_function(
                lambda stat=stat: sum(getattr(c.video.stats, stat) for c in self.all() if c.video is not None))

    def all(self) -> list[Channel]:
        return [*self.named.values(), *self.private]

    def open(self, name: str | None, language: str | None) -> Channel:
        """The channel called `name` (opened now if it is not open), or a new private one."""
        if name is not None and name in self.named:
            return self.named[name]
        cluster = self.host.cluster
        # A named channel of a cluster is shared with the other servers through Redis (server/cluster/).
        channel = Channel(self, name, language) if name is None or cluster is None else cluster.open(self, name, language)
        if name is None:
            self.private.add(channel)
        else:
            self.named[name] = channel
        return channel

    def forget(self, channel: Channel) -> None:
        self.private.discard(channel)
        if channel.name is not None and self.named.get(channel.name) is channel:
            del self.named[channel.name]
