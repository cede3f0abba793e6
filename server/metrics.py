"""Prometheus metrics of the live server, in a registry of its own (one per app, so tests can
run several apps in one process)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sessions = Gauge("signstream_sessions", "Open sessions", registry=r)
        self.units_committed = Counter("signstream_units_committed", "Translation units committed", registry=r)
        self.units = Counter("signstream_units", "Units ended, by status", ["status"], registry=r)
        self.frames_sent = Counter("signstream_frames_sent", "Pose frames handed to transports", registry=r)
        self.frames_dropped = Counter("signstream_frames_dropped", "Pose frames dropped for slow clients", registry=r)
        self.outbox_dropped = Counter("signstream_outbox_dropped",
                                      "Queued replies dropped by the outbox policy (repeated error code or pong; "
                                      "slow_client: a whole queue of a client that does not read)", ["kind"],
                                      registry=r)
        self.clients = Gauge("signstream_clients", "Admitted client connections (/ws sockets and WebRTC viewers)",
                             registry=r)
        self.engine_failures = Counter("signstream_engine_failures",
                                       "Engine generations that failed (moved to the fallback path, or failed "
                                       "their unit)", registry=r)
        self.errors = Counter("signstream_errors", "Error replies, by code", ["code"], registry=r)
        self.step = Histogram("signstream_engine_step_seconds", "Time of one batched scheduler tick",
                              buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3), registry=r)
        self.queue = Gauge("signstream_queue_depth", "Items waiting, summed over sessions", ["queue"], registry=r)

    def watch_queue(self, name: str, depth: Callable[[], float]) -> None:
        """Read a queue depth when scraped (motion: frames buffered; pending: units waiting; outbox)."""
        self.queue.labels(name).set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
