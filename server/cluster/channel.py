"""A named channel of a cluster: the same channel on every process that has clients of it.

The process holding the channel's lease (the owner) runs it as a plain Channel does — session,
engine work, retarget, render — and its own members get every message directly. What it sends
also goes out on the channel's topic, for the other processes: pose frames while one of them has
pose or video viewers, rotation frames while one has rotations viewers (their demand beats say).
The others relay: messages from the topic into the same fan-out a Channel uses (server/transports/channels.py),
so their members get the same messages through the same bounded outboxes; their members' messages
go to the owner, whose replies come back to the member alone.

Every process with members claims the lease each beat (a third of the TTL): the owner renews it;
the others take it once the owner is gone (its key expired). The new owner opens a new session
whose unit ids go on after the ones its clients know, reports the units in flight of the old
owner `failed` (`owner_lost: ...`), and signs from the next caption. Members keep their connections.
No caption is lost in the change: a relay keeps its members' captions until the owner's beat
acknowledges them, and hands the unacknowledged ones to the new owner (itself, or the process
whose beat says it owns the channel now) — those sent in the seconds without an owner, and those
the dead owner took but had not acknowledged.

While Redis is unreachable members get `cluster_unavailable` (once when it goes, and answering each
message a relay cannot pass on); an owner's own members go on being served; joining is refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING

from server.transports.channels import _REPLIES, Channel, Channels, Member
from server.cluster import wire
from server.cluster.bus import BusDown
from server.cluster.lease import Lease
from server.protocol import (Caption, ClientMessage, Flush, Message, PoseFrame, ProtocolError, RotationFrame,
                             ServerMessage, error_message, parse_client_message)
from server.rotation_stream import RotationStream, rotation_rig
from server.session import CLOSE_GOING_AWAY
from server.transports.video import RGB, VideoRenderer, ViewerTrack

if TYPE_CHECKING:
    from server.cluster.node import Cluster

log = logging.getLogger(__name__)
CLOSE_TRY_AGAIN = 1013
UNAVAILABLE = "the channel bus (Redis) is unreachable; the channel goes on when it is back"
_REPUBLISH_S = 2.0  # between tries to publish a channel's video into Janus
OWNER_LOST = "owner_lost: the server running this channel stopped before the unit finished"
KEPT = 256  # a relay's unacknowledged captions per channel (beyond: the oldest is dropped, its sender told)
NOT_KEPT = ("no server runs this channel at the moment and too many captions wait for one: "
            "this message was not kept; send it again")


class _Remote:
    """A remote member's message, as the owner's channel sees it: its replies go back over the bus."""

    wants_poses = False

    def __init__(self, channel: ClusterChannel, process: str, key: int) -> None:
        self.channel, self.process, self.key = channel, process, key

    def put(self, msg: ServerMessage) -> None:
        if isinstance(msg, Message):
            self.channel.cluster.bus.publish(self.channel.cluster.process_topic(self.process),
                                             wire.reply(self.channel.name or "", self.key, msg))

    def end(self, code: int) -> None:  # pragma: no cover - a reply target is never a member
        pass


class ClusterChannel(Channel):
    def __init__(self, channels: Channels, cluster: Cluster, name: str, language: str | None) -> None:
        self.cluster = cluster
        self.hub = cluster.hub
        self.language = language
        self.owner = False
        self.keys: dict[int, Member] = {}  # this process's members by their key on the bus
        self._ready: dict | None = None  # the owner's ready fields
        self._waiting: list[Member] = []  # joined before the owner's ready was known
        self._remote: dict[str, tuple[float, bool, bool]] = {}  # other processes' demand: until, poses, rotations
        self._open_units: dict[int, dict] = {}  # units begun and not ended: their `unit` fields
        self._last_unit = 0
        self._owner_term: str | None = None  # the ownership (process and a token) the last beat named
        self._term = ""  # this process's ownership while it owns the channel
        self._sent = 0  # this process's sequence number of its members' messages to the owner
        self._unacked: deque[tuple[int, int, str | bytes]] = deque()  # (seq, member key, raw) captions and flushes
        self._acks: dict[str, int] = {}  # an owner's: per process, the last of its messages handled
        self._publishing: asyncio.Task | None = None  # the owner's video into Janus ([cluster] janus)
        super().__init__(channels, name, language)
        self.lease = Lease(cluster.bus, cluster.key(name, "owner"), cluster.process, cluster.cfg.lease_ttl_s)
        self._out, self._in = cluster.key(name, "out"), cluster.key(name, "in")
        cluster.bus.subscribe(self._out, self._from_owner)
        cluster.bus.subscribe(self._in, self._to_owner)
        self._keeper = asyncio.create_task(self._keep())

    # --- Channel, as a cluster member ----------------------------------------------------------

    def start(self, language: str | None) -> None:
        """A session is opened when this process takes the lease (`_take`), not at once."""
        self.session = None  # type: ignore[assignment]

    def join(self, member: Member) -> None:
        if not self.cluster.bus.up:
            member.put(error_message("cluster_unavailable", UNAVAILABLE))
            member.end(CLOSE_TRY_AGAIN)
            return
        self.keys[id(member)] = member
        if self.owner:
            super().join(member)
        elif self._ready is not None:
            self.members.add(member)
            member.put(Message("ready", dict(self._ready)))
        else:
            self._waiting.append(member)  # gets ready, then the stream, once the owner is known
        self._beat()

    def handle(self, member: Member, raw: str | bytes) -> ClientMessage | None:
        if self.owner:
            return super().handle(member, raw)
        if not self.cluster.bus.up:
            member.put(error_message("cluster_unavailable", UNAVAILABLE))
            return None
        self._sent += 1
        self.cluster.bus.publish(self._in, wire.client(self.cluster.process, id(member), raw, self._sent))
        try:  # the owner answers errors; the transport wants the message (a member's own format)
            msg = parse_client_message(raw, self.hub.cfg.limits.max_message_bytes)
        except ProtocolError:
            return None
        if isinstance(msg, (Caption, Flush)):  # kept until acknowledged: a new owner gets it if this one dies
            self._keep_unacked(self._sent, id(member), raw)
        return msg

    def _keep_unacked(self, seq: int, key: int, raw: str | bytes) -> None:
        self._unacked.append((seq, key, raw))
        if len(self._unacked) > KEPT:
            _, dropped, _ = self._unacked.popleft()
            if dropped in self.keys:
                self.keys[dropped].put(error_message("cluster_unavailable", NOT_KEPT))

    def watch(self, renderer: VideoRenderer, codec: str, background: RGB | None) -> ViewerTrack:
        track = super().watch(renderer, codec, background)
        self._beat()  # a relay renders from the owner's pose frames: ask for them now
        return track

    def leave(self, member: Member) -> None:
        self.keys.pop(id(member), None)
        if member in self._waiting:
            self._waiting.remove(member)
        self.members.discard(member)
        self._units.pop(member, None)
        if self.video is not None and not self.video.viewers:
            self.video.stop()
            self.video = None
        self._rotations_as_needed()
        if not self.members and not self._waiting and not (self.owner and self._remote_demand()[0]):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._keeper.cancel()
        self.cluster.bus.unsubscribe(self._out)
        self.cluster.bus.unsubscribe(self._in)
        if self.owner:
            self._stop_session()
            self.cluster.release(self.lease)
        self._unpublish()
        if self.video is not None:
            self.video.stop()
            self.video = None
        self.cluster.forget(self)
        self.channels.forget(self)

    # --- the owner's messages, to its members and out on the bus -------------------------------

    def put(self, msg: ServerMessage) -> None:
        if isinstance(msg, Message) and msg.type == "ready" and self._replying is None:
            return  # the session's answer to its own opening hello (members already have ready)
        super().put(msg)
        if isinstance(msg, Message):
            self._track(msg)
        if not self.owner or not self.cluster.bus.up:
            return
        poses, _ = self._remote_demand()
        if isinstance(msg, PoseFrame):
            if poses:
                self.cluster.bus.publish(self._out, wire.pose(msg))
        elif isinstance(msg, Message):
            if self._replying is not None and msg.type in _REPLIES:
                return  # to the member whose message this answers (a remote one's goes as its reply)
            if msg.type == "closing" and self.hub.closing:
                return  # this server shuts down, not the channel: another process takes it on
            self.cluster.bus.publish(self._out, wire.message(msg))

    def _rotated(self, frame: RotationFrame) -> None:
        super()._rotated(frame)
        if self.owner and self._remote_demand()[1]:
            self.cluster.bus.publish(self._out, wire.rotations(frame))

    def end(self, code: int) -> None:
        if self.hub.closing and code == CLOSE_GOING_AWAY:
            self.cluster.release(self.lease)  # the channel goes on elsewhere, now rather than after the TTL
        elif self.owner:
            self.cluster.bus.publish(self._out, wire.ended(code))
        super().end(code)

    def _track(self, msg: Message) -> None:
        """Units begun and not ended, wherever they were signed: what a new owner reports `owner_lost`."""
        if msg.type == "unit":
            self._open_units[msg.fields["unit"]] = msg.fields
            self._last_unit = max(self._last_unit, msg.fields["unit"])
        elif msg.type == "unit_status":
            self._open_units.pop(msg.fields["unit"], None)

    # --- the bus ---------------------------------------------------------------------------------

    def _from_owner(self, data: bytes) -> None:
        if self.owner or self.closed:
            return
        msg = wire.decode(data)
        if isinstance(msg, wire.State):
            self._owner_beat(msg)
            self._ready = msg.fields
            self.language = msg.fields.get("language", self.language)
            for member in self._waiting:
                self.members.add(member)
                member.put(Message("ready", dict(msg.fields)))
            self._waiting.clear()
        elif isinstance(msg, wire.Ended):
            super().end(msg.code)
        elif isinstance(msg, RotationFrame):
            super()._rotated(msg)
        elif isinstance(msg, (PoseFrame, Message)):
            super().put(msg)
            if isinstance(msg, Message):
                self._track(msg)

    def _to_owner(self, data: bytes) -> None:
        msg = wire.decode(data)
        if isinstance(msg, wire.Demand):
            fresh = msg.process not in self._remote
            self._remote[msg.process] = (self._now() + 3 * self._beat_s(), msg.poses, msg.rotations)
            if self.owner:
                self._rotations_as_needed()
                if fresh:
                    self._publish_state()  # its viewers wait for ready
        elif isinstance(msg, wire.ClientMessage) and self.owner and self.session is not None:
            self._acks[msg.process] = max(self._acks.get(msg.process, 0), msg.seq)
            super().handle(_Remote(self, msg.process, msg.member), msg.raw)

    def _owner_beat(self, state: wire.State) -> None:
        """A relay hears the owner's beat: a new owner gets what this process sent and nobody
        acknowledged (in the seconds without an owner, or taken by the dead one at its end);
        what the owner acknowledges is forgotten."""
        if state.owner != self._owner_term:
            if self._owner_term is not None:
                for seq, key, raw in self._unacked:
                    self.cluster.bus.publish(self._in, wire.client(self.cluster.process, key, raw, seq))
            self._owner_term = state.owner
            return  # its acknowledgements count from the next beat, once it has these
        done = state.acks.get(self.cluster.process, 0)
        while self._unacked and self._unacked[0][0] <= done:
            self._unacked.popleft()

    def reply(self, key: int, msg: Message) -> None:
        """An owner's reply to a message of this process's member `key`."""
        member = self.keys.get(key)
        if member is not None:
            member.put(msg)

    def end_members(self, code: int) -> None:
        """Close this process's members (its server shuts down); the channel goes on elsewhere."""
        super().end(code)

    def bus_state(self, up: bool) -> None:
        """Redis went away (every member hears it) or came back (the next beat claims and resumes)."""
        if not up:
            for member in [*self.members, *self._waiting]:
                member.put(error_message("cluster_unavailable", UNAVAILABLE))

    # --- ownership -------------------------------------------------------------------------------

    def _beat_s(self) -> float:
        return self.cluster.cfg.lease_ttl_s / 3

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _keep(self) -> None:
        """Each beat: claim the lease (owner: renew it), say what this process's viewers want."""
        while not self.closed:
            if self.cluster.bus.up and not self.hub.closing:  # a server shutting down gives its channels up
                try:
                    held = await self.lease.claim()
                except BusDown:
                    held = None
                if self.closed:
                    return
                if held and not self.owner:
                    self._take()
                elif held is False and self.owner:
                    self._lose()
            self._beat()
            if self.owner and not self.members and not self._waiting and not self._remote_demand()[0]:
                self.close()  # nobody watches anywhere: the remote viewers' demand has run out
                return
            await asyncio.sleep(self._beat_s())

    def _beat(self) -> None:
        if self.owner:
            self._publish_state()
            return
        everyone = [*self.members, *self._waiting]
        poses = any(m.wants_poses for m in everyone) or self.video is not None
        rotations = any(getattr(m, "wants_rotations", False) for m in everyone)
        self.cluster.bus.publish(self._in, wire.demand(self.cluster.process, poses, rotations))

    def _publish_state(self) -> None:
        if self.session is not None:
            self._ready = self.session.ready_message().fields
            self.cluster.bus.publish(self._out, wire.state(self._ready, self._term, self._acks))

    def _remote_demand(self) -> tuple[bool, bool]:
        """(any viewers elsewhere, any of them wanting rotations); poses go out for either."""
        now = self._now()
        self._remote = {p: d for p, d in self._remote.items() if d[0] > now}
        return bool(self._remote), any(d[2] for d in self._remote.values())

    def _rotations_as_needed(self) -> None:
        """The owner retargets while any viewer anywhere draws the avatar; a relay never does."""
        want = self.owner and (any(getattr(m, "wants_rotations", False) for m in self.members)
                               or self._remote_demand()[1])
        if want and self.rotations is None:
            self.rotations = RotationStream(rotation_rig(self.hub.cfg))
        elif not want:
            self.rotations = None

    def _take(self) -> None:
        """This process holds the lease now: the channel's session runs here from the next caption."""
        log.info("cluster: %s owns channel %r", self.cluster.process, self.name)
        self.owner = True
        self._term, self._acks = f"{self.cluster.process}#{uuid.uuid4().hex[:8]}", {}
        self.cluster.owned(self, True)
        for fields in list(self._open_units.values()):  # the old owner's units in flight: say why they ended
            self.put(_owner_lost(fields))
        language = self._ready.get("language") if self._ready else self.language
        super().start(language)
        self.session.continue_after(self._last_unit)
        self._rotations_as_needed()
        self._publish_state()
        if self.cluster.sfu is not None:
            self._publishing = asyncio.create_task(self._publish_video())
        for member in self._waiting:
            self.members.add(member)
            member.put(self.session.ready_message())
        self._waiting.clear()
        unacked, self._unacked = self._unacked, deque()
        for _, key, raw in unacked:  # this process's captions the dead owner never acknowledged
            super().handle(_Remote(self, self.cluster.process, key), raw)  # replies come back by key
        self._owner_term = self._term

    def _lose(self) -> None:
        """Another process holds the lease (this one was cut off from Redis past the TTL): relay."""
        log.warning("cluster: %s lost channel %r", self.cluster.process, self.name)
        for fields in list(self._open_units.values()):  # to this process's members; the new owner tells the rest
            Channel.put(self, _owner_lost(fields))
        self._open_units.clear()
        self._stop_session()
        self._unpublish()
        self.owner = False
        self.cluster.owned(self, False)
        self.rotations = None

    async def _publish_video(self) -> None:
        """The owner's one render of the channel, published into Janus for every server's viewers.
        For as long as it owns the channel, viewers or not: a subscriber's picture does not wait
        for a publisher to start, and a new owner needs no word of who watches to take over."""
        sfu = self.cluster.sfu
        assert sfu is not None and self.name is not None
        renderer = await sfu.renderer()
        try:
            while True:  # until the channel is lost or closed (cancelled)
                while not self.cluster.bus.up:  # cut off from Redis, another server may own the channel
                    await asyncio.sleep(_REPUBLISH_S)  # now: making the room anew would take its video down
                track = self.watch(renderer, self.hub.cfg.webrtc.codec, None)
                try:
                    publisher = await sfu.publish(self.name, track)
                except asyncio.CancelledError:
                    track.stop()
                    raise
                except Exception as exc:  # Janus down, or not up yet: try again
                    log.warning("cluster: channel %r could not publish its video into Janus (%s: %s); again in %s s",
                                self.name, type(exc).__name__, exc, _REPUBLISH_S)
                    track.stop()
                    await asyncio.sleep(_REPUBLISH_S)
                    continue
                try:
                    await publisher.ended.wait()  # Janus restarted, or the connection to it failed
                    log.warning("cluster: channel %r: the video published into Janus ended; publishing again",
                                self.name)
                finally:
                    await publisher.close()
                await asyncio.sleep(_REPUBLISH_S)
        finally:
            if self.video is not None and not self.video.viewers:  # lost: a relay renders for no one
                self.video.stop()
                self.video = None

    def _unpublish(self) -> None:
        if self._publishing is not None:
            self._publishing.cancel()
            self._publishing = None

    def _stop_session(self) -> None:
        if self.session is None:
            return
        self.session.close()
        self._clock.cancel()
        self.hub.close_session(self.session)
        self.session = None  # type: ignore[assignment]


def _owner_lost(unit: dict) -> Message:
    """The status of a unit whose owner stopped before it finished (fields of its `unit` message)."""
    return Message("unit_status", {"unit": unit["unit"], "caption": unit["caption"], "status": "failed",
                                   "reason": OWNER_LOST, "frames": sum(s.get("frames", 0) for s in unit["segments"]),
                                   "segments": unit["segments"]})
