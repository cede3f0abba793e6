"""A channel's owner lease: one Redis key holding the owner's process name, with a short TTL.

`claim` is one atomic step for both the owner and the others: it takes the key when nobody holds it
(a new channel, a dead owner's key expired, a Redis restarted empty) and renews it when this
process holds it, so a process that calls it every third of the TTL keeps its channel, and the
others take the channel within a TTL of the owner's death.
"""

from __future__ import annotations

from server.cluster.bus import Bus

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(self, bus: Bus, key: str, holder: str, ttl_s: float) -> None:
        self.bus = bus
        self.key = key
        self.holder = holder
        self.ttl_ms = int(ttl_s * 1000)

    async def claim(self) -> bool:
        """Whether this process holds the lease now (taken or renewed). Raises BusDown."""
        held = await self.bus.call(lambda: self.bus.client.eval(_CLAIM, 1, self.key, self.holder, self.ttl_ms))
        return bool(held)

    async def release(self) -> None:
        """Give the lease up now (a graceful shutdown), so another process need not wait out the TTL."""
        await self.bus.call(lambda: self.bus.client.eval(_RELEASE, 1, self.key, self.holder))
