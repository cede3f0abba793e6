"""The C allocator under a long-running server: cap glibc's malloc arenas and give freed memory back.

Sessions come and go; their numpy buffers, JSON strings and aiohttp buffers are freed, but glibc
keeps freed pages in the arena of the thread that used them (up to 8 arenas a core), so the
process's RSS climbs with churn though nothing is live. Capping the arenas (M_ARENA_MAX, as
MALLOC_ARENA_MAX=2 would) and calling malloc_trim after sessions close returns that memory to the
system. Elsewhere than glibc (musl, macOS) both are no-ops, and SIGNSTREAM_MALLOC_TUNING=0 turns
them off (to measure what they save: bench/soak.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import time

M_ARENA_MAX = -8  # mallopt parameter number (malloc.h)

_libc: ctypes.CDLL | None
try:
    if os.environ.get("SIGNSTREAM_MALLOC_TUNING", "1") == "0":
        raise OSError("turned off")
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # glibc only
    _libc.mallopt
except (OSError, AttributeError):
    _libc = None


def cap_arenas(arenas: int = 2) -> bool:
    """At most `arenas` malloc arenas for threads started from now on; True where it took."""
    return bool(_libc is not None and _libc.mallopt(M_ARENA_MAX, arenas))


class Trimmer:
    """malloc_trim(0) when asked (after a session closed), at most once every `every_s` seconds; a
    call inside that window is deferred to its end, so the last of a burst of closes is trimmed too."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self._last = 0.0
        self._deferred: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if _libc is None or self._deferred is not None:
            return
        wait = self._last + self.every_s - time.monotonic()
        if wait <= 0:
            self._trim()
            return
        try:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._trim)
        except RuntimeError:  # no loop (an offline driver): the next call trims
            pass

    def _trim(self) -> None:
        self._deferred = None
        self._last = time.monotonic()
        if _libc is not None:
            _libc.malloc_trim(0)
