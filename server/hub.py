"""The Hub: what every session of a server shares — the config, the one Scheduler ticked by the
EngineLoop, the metrics, the open sessions, their outboxes and the channels. The transports are
written against it (server/app.py builds it and mounts them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sized
from typing import Protocol

from engines.loader import open_scheduler
from server.allocator import Trimmer
from server.cluster.node import Cluster
from server.config import Config
from server.engine_loop import EngineLoop
from server.metrics import Metrics
from server.protocol import Outlet
from server.session import CLOSE_GOING_AWAY, Session
from server.transports.channels import Channels


class Outbox(Protocol):
    """A /ws client's queue of messages waiting for its socket (server/transports/websocket.py)."""

    items: Sized


class Hub:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.engine = EngineLoop(open_scheduler(cfg.engine, float(cfg.video.fps)), self.metrics)
        self.sessions: dict[int, Session] = {}
        self.outboxes: dict[int, Outbox] = {}
        self.closing = False
        self.clients = 0  # admitted client connections: /ws sockets and WebRTC viewers
        self.turn = asyncio.Lock()  # client messages are handled one a loop turn (transports/websocket.py)
        self._next_id = 0
        self._trim = Trimmer()
        # Named channels shared with other servers through Redis when cluster.redis is set (server/cluster/).
        self.cluster = Cluster(self) if cfg.cluster.redis else None
        self.channels = Channels(self)  # WebRTC viewers and named channels
        m = self.metrics
        m.watch_queue("motion", lambda: sum(s.timeline.queued for s in self.sessions.values()))
        m.watch_queue("pending", lambda: sum(len(s.pending) for s in self.sessions.values()))
        m.watch_queue("outbox", lambda: sum(len(o.items) for o in self.outboxes.values()))
        m.watch_queue("engine", lambda: self.engine.scheduler.live)

    def open_session(self, out: Outlet, authed: bool) -> Session:
        self._next_id += 1
        session = Session(self._next_id, self.cfg, self.engine, self.metrics, out, authed)
        self.sessions[session.id] = session
        self.metrics.sessions.set(len(self.sessions))
        return session

    def close_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.outboxes.pop(session.id, None)
        self.metrics.sessions.set(len(self.sessions))
        self._trim()  # give the session's freed memory back (server/allocator.py)

    def admit(self) -> tuple[str, str, int] | None:
        """Take a client slot (a /ws socket or a WebRTC viewer), or say why not: (code, message,
        close code). Called before the caller's first await, so the count cannot be overtaken."""
        if self.closing:
            return "shutting_down", "the server is shutting down", CLOSE_GOING_AWAY
        limit = self.cfg.limits.max_sessions
        if self.clients >= limit:
            return "too_many_sessions", f"the server holds {limit} sessions", 1013  # try again later
        self.clients += 1
        self.metrics.clients.set(self.clients)
        return None

    def release(self) -> None:
        """Give back a slot taken by `admit`."""
        self.clients -= 1
        self.metrics.clients.set(self.clients)

    async def shutdown(self) -> None:
        """Tell every session, let units in flight finish (or report them), then close. Runs
        while the connections are still read (before aiohttp's own shutdown, which stops reading
        them), so a caption sent after `closing` is answered shutting_down."""
        if self.closing:
            return
        self.closing = True
        grace = self.cfg.live.shutdown_grace_s
        await asyncio.gather(*(s.shutdown(grace) for s in list(self.sessions.values())))
        for _ in range(100):  # the transports flush and close
            if not self.sessions:
                break
            await asyncio.sleep(0.02)
