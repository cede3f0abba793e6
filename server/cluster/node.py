"""This process in the cluster: its name, its bus, its cluster channels, its health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from server.cluster import wire
from server.cluster.bus import Bus, BusDown
from server.cluster.channel import ClusterChannel
from server.cluster.lease import Lease
from server.session import CLOSE_GOING_AWAY

if TYPE_CHECKING:
    from server.cluster.sfu import Sfu
    from server.hub import Hub
    from server.transports.channels import Channels


class Cluster:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.cfg = hub.cfg.cluster
        self.process = self.cfg.process or f"{socket.gethostname()}:{os.getpid()}"
        self.bus = Bus(self.cfg.redis, self._bus_state)
        self.channels: dict[str, ClusterChannel] = {}
        self.sfu: Sfu | None = None  # with [cluster] janus: owners publish their channels' video there
        self._releases: set[asyncio.Task] = set()
        self.bus.subscribe(self.process_topic(self.process), self._reply)
        r = hub.metrics.registry
        Gauge("signstream_cluster_redis_up", "Whether this process reaches the cluster's Redis (1) or not (0)",
              registry=r).set_function(lambda: float(self.bus.up))
        roles = Gauge("signstream_cluster_channels", "Cluster channels open in this process, by its role in them",
                      ["role"], registry=r)
        roles.labels("owner").set_function(lambda: sum(c.owner for c in self.channels.values()))
        roles.labels("relay").set_function(lambda: sum(not c.owner for c in self.channels.values()))
        self._owner = Gauge("signstream_cluster_channel_owner",
                            "Per cluster channel open here: 1 while this process owns it, 0 while it relays it",
                            ["channel"], registry=r)

    def key(self, channel: str, what: str) -> str:
        """A channel's Redis key or topic: its lease ("owner"), its topics ("out", "in")."""
        return f"{self.cfg.prefix}:channel:{channel}:{what}"

    def process_topic(self, process: str) -> str:
        return f"{self.cfg.prefix}:process:{process}"

    def open(self, channels: Channels, name: str, language: str | None) -> ClusterChannel:
        channel = self.channels[name] = ClusterChannel(channels, self, name, language)
        self._owner.labels(name).set(0)
        return channel

    def forget(self, channel: ClusterChannel) -> None:
        if channel.name is not None and self.channels.get(channel.name) is channel:
            del self.channels[channel.name]
            with contextlib.suppress(KeyError):
                self._owner.remove(channel.name)

    def owned(self, channel: ClusterChannel, owner: bool) -> None:
        if self.channels.get(channel.name or "") is channel:
            self._owner.labels(channel.name).set(int(owner))

    def release(self, lease: Lease) -> None:
        """Give a lease up in the background (a closing channel's; a shutdown waits for these)."""
        async def release() -> None:
            with contextlib.suppress(BusDown):
                await lease.release()
        task = asyncio.get_running_loop().create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def health(self) -> dict[str, Any]:
        return {"process": self.process, "redis": "reachable" if self.bus.up else "unreachable",
                "owned": sorted(n for n, c in self.channels.items() if c.owner),
                "relayed": sorted(n for n, c in self.channels.items() if not c.owner),
                **({"janus": self.sfu.health()} if self.sfu is not None else {})}

    def start(self) -> None:
        self.bus.start()

    async def stop(self) -> None:
        """After the hub's shutdown (the owned channels' sessions ended and gave their leases up):
        the relayed channels' members are closed too, then the bus."""
        for channel in list(self.channels.values()):
            if not channel.owner:
                channel.end_members(CLOSE_GOING_AWAY)
        if self._releases:
            await asyncio.wait(list(self._releases), timeout=2.0)
        await self.bus.stop()

    def _bus_state(self, up: bool) -> None:
        for channel in list(self.channels.values()):
            channel.bus_state(up)

    def _reply(self, data: bytes) -> None:
        msg = wire.decode(data)
        if isinstance(msg, wire.Reply):
            channel = self.channels.get(msg.channel)
            if channel is not None:
                channel.reply(msg.member, msg.msg)
