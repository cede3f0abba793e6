"""The bus: Redis pub/sub for one process, with reachability.

Publishing is fire-and-forget from synchronous code (a channel's fan-out): messages queue in order
and one writer task sends what has queued as one pipeline, so a frame costs the sender no await and
the order of a channel's messages is the order they were published. Subscriptions are kept across
reconnects: while Redis is unreachable `up` is False (the channels answer `cluster_unavailable`),
the reader retries every `RETRY_S`, and once it is back every topic is subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Awaitable, Callable, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
RETRY_S = 0.5
_QUEUE = 10_000  # messages waiting for Redis; past it the oldest go (frames late by then are worthless)
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
        self._out: deque[tuple[str, bytes]] = deque(maxlen=_QUEUE)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in (self.client, self._subscriber):
            with contextlib.suppress(Exception):
                await client.aclose()

    # --- publish / subscribe -----------------------------------------------------------------

    def publish(self, topic: str, data: bytes) -> None:
        """Queue `data` for `topic`; dropped while Redis is unreachable."""
        if self.up:
            self._out.append((topic, data))
            self._wake.set()

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
            self._out.clear()
        self._on_state(up)

    async def _read(self) -> None:
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._handlers)  # never empty: the process's own topic (node.py)
                await self.client.ping()  # the publishing connection too
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
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RETRY_S)

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._out:
                batch = list(self._out)
                self._out.clear()
                try:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for topic, data in batch:
                            pipe.publish(topic, data)
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    self._set_up(False, exc)
