"""The bus: Redis pub/sub for one process, with reachability.

Publishing is fire-and-forget from synchronous code (a channel's fan-out): each PUBLISH is written
onto a connection of its own at once, in order, its reply read and dropped by the protocol, so a
frame waits for no task and no round trip (a queue and a pipelining writer task added the owner's
loop turn and a Redis round trip to every frame: ~10-25 ms on a loaded machine, bench/cluster.py).
Commands (the leases) go through the redis client. Subscriptions are kept across reconnects: while Redis is unreachable `up` is False (the channels answer `cluster_unavailable`),
the reader retries every `RETRY_S`, and once it is back every topic is subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Awaitable, Callable, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
RETRY_S = 0.5
_BUFFER = 4 << 20  # bytes written and not yet taken by Redis above which messages are dropped (it is stuck)
T = TypeVar("T")


class BusDown(Exception):
    """Redis did not answer."""


class Bus:
    def __init__(self, url: str, on_state: Callable[[bool], None]) -> None:
        # No retries inside the client: a failure is reported at once, and this class reconnects.
        options = dict(socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 0))
        self.client = aioredis.Redis.from_url(url, **options)
        self._subscriber = aioredis.Redis.from_url(url, **options)
        self.up = False
        self._on_state = on_state
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._url = url
        self._publisher: asyncio.Transport | None = None
        self.dropped = 0  # messages not published: Redis stuck (its socket's buffer full)
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read())]

    async def stop(self) -> None:
        self._on_state = lambda up: None  # closing is not Redis going away
        self.up = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._publisher is not None:
            self._publisher.close()
        for client in (self.client, self._subscriber):
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- publish / subscribe -----------------------------------------------------------------

    def publish(self, topic: str, data: bytes) -> None:
        """Send `data` on `topic` now; dropped while Redis is unreachable."""
        t = self._publisher
        if not self.up or t is None or t.is_closing():
            return
        if t.get_write_buffer_size() > _BUFFER:
            self.dropped += 1
            return
        t.write(_command(b"PUBLISH", topic.encode(), data))

    def subscribe(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """Call `handler` (synchronously, in the reader task) with every message on `topic`."""
        self._handlers[topic] = handler
        self._send_subscription("subscribe", topic)

    def unsubscribe(self, topic: str) -> None:
        if self._handlers.pop(topic, None) is not None:
            self._send_subscription("unsubscribe", topic)

    def _send_subscription(self, verb: str, topic: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reader subscribes every topic when it connects
        async def send() -> None:
            try:
                await getattr(pubsub, verb)(topic)
            except (RedisError, OSError):
                pass  # the reader sees the connection fail and subscribes again when it is back
        asyncio.get_running_loop().create_task(send())

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        """A Redis command; BusDown (and `up` False) when Redis does not answer."""
        try:
            return await command()
        except (RedisError, OSError) as exc:
            self._set_up(False, exc)
            raise BusDown(str(exc)) from None

    async def ping(self) -> bool:
        try:
            await self.call(self.client.ping)
            return True
        except BusDown:
            return False

    # --- tasks -------------------------------------------------------------------------------

    def _set_up(self, up: bool, why: object = None) -> None:
        if up == self.up:
            return
        self.up = up
        if up:
            log.info("cluster: Redis reachable")
        else:
            log.warning("cluster: Redis unreachable (%s)", why)
        self._on_state(up)

    async def _read(self) -> None:
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)  # never empty: the process's own topic (node.py)
                await self.client.ping()  # the command connection too
                await self._connect_publisher()
                self._pubsub = pubsub
                self._set_up(True)
                while self.up:  # a failed publish or command also sets it down: reconnect then
                    if not pubsub.subscribed:  # nothing to read yet: get_message would not wait
                        await asyncio.sleep(0.05)
                        continue
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    topic = msg["channel"].decode()
                    handler = self._handlers.get(topic)
                    if handler is not None:
                        try:
                            handler(msg["data"])
                        except Exception:  # a bug in one channel must not stop every channel's bus
                            log.exception("cluster: handling a message on %s failed", topic)
            except (RedisError, OSError) as exc:
                self._set_up(False, exc)
            finally:
                self._pubsub = None
                if self._publisher is not None:
                    self._publisher.close()
                    self._publisher = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RETRY_S)

    async def _connect_publisher(self) -> None:
        opts = parse_url(self._url)
        loop = asyncio.get_running_loop()
        protocol = _Replies(lambda exc: self._set_up(False, exc or "the publishing connection closed"))
        if "path" in opts:
            transport, _ = await loop.create_unix_connection(lambda: protocol, opts["path"])
        else:
            tls = ssl.create_default_context() if opts.get("connection_class") is SSLConnection else None
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: protocol, opts.get("host", "localhost"), opts.get("port", 6379), ssl=tls),
                1.0)
        if opts.get("password"):
            user = [opts["username"].encode()] if opts.get("username") else []
            transport.write(_command(b"AUTH", *user, opts["password"].encode()))
        self._publisher = transport


class _Replies(asyncio.Protocol):
    """The publishing connection's side: Redis answers each PUBLISH with its subscriber count, which
    nobody needs; an error reply (a wrong password) is logged."""

    def __init__(self, lost: Callable[[Exception | None], None]) -> None:
        self._lost = lost
        self._warned = False

    def data_received(self, data: bytes) -> None:
        if not self._warned and (data.startswith(b"-") or b"\r\n-" in data):
            self._warned = True
            log.error("cluster: Redis refused a PUBLISH: %s", data[:200].decode("utf-8", "replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)


def _command(*parts: bytes) -> bytes:
    """A Redis command in RESP."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
