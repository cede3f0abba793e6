"""Clients of a running server: the logic of `signstream say` and `signstream captions`.

LiveClient speaks the protocol over /ws (binary pose frames decoded to PoseFrame); the tests and
the benchmark use it too.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import numpy as np

from engines.formats.captions import Cue, SkippedCue
from server.protocol import PoseFrame, decode_binary_pose

Received = dict[str, Any] | PoseFrame


def ws_url(server: str) -> str:
    """'http://host:port', 'ws://host:port' or 'host:port' → the /ws URL."""
    if "://" not in server:
        server = "http://" + server
    server = server.rstrip("/")
    return server if server.endswith("/ws") else server + "/ws"


def _pose_from_json(d: dict[str, Any]) -> PoseFrame:
    return PoseFrame(d["unit"], d["segment"], d["frame"], d["t"], d["kind"],
                     np.asarray(d["points"], dtype=np.float32), np.asarray(d["confidence"], dtype=np.float32),
                     np.asarray(d["face"], dtype=np.float32) if d.get("face") is not None else None)


@dataclass
class LiveClient:
    ws: aiohttp.ClientWebSocketResponse
    ready: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, server: str, *, language: str | None = None,
                      fmt: str = "json", token: str | None = None, idle_frames: bool = True,
                      headers: dict[str, str] | None = None, channel: str | None = None) -> LiveClient:
        """Open /ws and say hello (joining `channel` when named: its WebRTC viewers see what this
        client captions); raises ConnectionError with the server's error when refused."""
        ws = await http.ws_connect(ws_url(server), headers=headers, max_msg_size=0)
        client = cls(ws)
        hello: dict[str, Any] = {"type": "hello", "format": fmt, "idle_frames": idle_frames}
        if language:
            hello["language"] = language
        if token:
            hello["token"] = token
        if channel:
            hello["channel"] = channel
        await client.send(hello)
        first = await client.recv()
        if not isinstance(first, dict) or first.get("type") != "ready":
            await ws.close()
            raise ConnectionError(f"server refused the session: {first}")
        client.ready = first
        return client

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(msg))

    async def caption(self, line: str, text: str, final: bool = True, language: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "caption", "id": line, "text": text, "final": final}
        if language:
            msg["language"] = language
        await self.send(msg)

    async def recv(self, timeout: float | None = None) -> Received:
        """The next server message; a pose frame as PoseFrame, anything else as its JSON object.
        Raises ConnectionError when the server closed the connection."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return decode_binary_pose(msg.data)
        if msg.type == aiohttp.WSMsgType.TEXT:
            d = json.loads(msg.data)
            return _pose_from_json(d) if d.get("type") == "pose" else d
        raise ConnectionError(f"connection closed ({msg.type.name}, code {self.ws.close_code})")

    async def messages(self) -> AsyncIterator[Received]:
        while True:
            try:
                yield await self.recv()
            except ConnectionError:
                return

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Collected:
    """What a client saw: units committed, their statuses, pose frames of units, errors."""

    units: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[int, dict[str, Any]] = field(default_factory=dict)
    frames: list[PoseFrame] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open_units(self) -> set[int]:
        return set(self.units) - set(self.statuses)


async def collect(client: LiveClient, sent_all: asyncio.Event, seen: Collected,
                  on_message: Callable[[Received], None] = lambda m: None) -> Collected:
    """Read until everything sent has been answered: after `sent_all`, a ping's pong marks that all
    units are known (the server answers in order); then wait for each unit's status."""
    pinged = False
    ponged = False
    while True:
        if sent_all.is_set() and not pinged:
            await client.send({"type": "ping"})
            pinged = True
        if ponged and not seen.open_units:
            return seen
        try:
            msg = await client.recv(timeout=0.2)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            return seen
        on_message(msg)
        if isinstance(msg, PoseFrame):
            if msg.unit:
                seen.frames.append(msg)
            continue
        kind = msg.get("type")
        if kind == "unit":
            seen.units[msg["unit"]] = msg
        elif kind == "unit_status":
            seen.statuses[msg["unit"]] = msg
        elif kind == "error":
            seen.errors.append(msg)
        elif kind == "pong" and pinged:
            ponged = True


def _report(msg: Received) -> None:
    if isinstance(msg, dict) and msg.get("type") in ("unit", "unit_status", "error", "closing"):
        if msg["type"] == "unit":
            gloss = " ".join(s["gloss"] or f"[{s['word']}]" for s in msg["segments"])
            print(f"unit {msg['unit']}: {msg['text']!r} → {gloss}", file=sys.stderr)
        elif msg["type"] == "unit_status":
            print(f"unit {msg['unit']}: {msg['status']} ({msg['frames']} frames) {msg['reason']}", file=sys.stderr)
        else:
            print(json.dumps(msg), file=sys.stderr)


def save_frames(frames: list[PoseFrame], fps: float, out: Path) -> None:
    from engines.formats.posefile import write_pose
    from engines.sequence import PoseSequence

    if not frames:
        raise ValueError("no pose frames to save (nothing was signed)")
    seq = PoseSequence(np.stack([f.points for f in frames]), np.stack([f.confidence for f in frames]), fps)
    face = None
    if any(f.face is not None for f in frames):  # the non-manual track, NaN where a frame had none
        n = max(len(f.face) for f in frames if f.face is not None)
        face = np.full((len(frames), n), np.nan, dtype=np.float32)
        for i, f in enumerate(frames):
            if f.face is not None:
                face[i, :len(f.face)] = f.face
    write_pose(seq, out, face)


async def say(server: str, lines: AsyncIterator[str], language: str | None, out: Path | None,
              token: str | None, channel: str | None = None) -> Collected:
    """Send each line as a final caption; save the units' pose frames to `out` or print them as JSON lines."""
    async with aiohttp.ClientSession() as http:
        client = await LiveClient.connect(http, server, language=language, fmt="binary", token=token,
                                          idle_frames=False, channel=channel)
        sent_all = asyncio.Event()

        async def send_lines() -> None:
            n = 0
            async for line in lines:
                if line.strip():
                    n += 1
                    await client.caption(f"say-{n}", line.strip(), final=True)
            sent_all.set()

        def show(msg: Received) -> None:
            _report(msg)
            if out is None and isinstance(msg, PoseFrame) and msg.unit:
                print(json.dumps({"unit": msg.unit, "segment": msg.segment, "frame": msg.frame, "t": round(msg.t, 4),
                                  "kind": msg.kind, "points": np.round(msg.points, 4).tolist(),
                                  "confidence": np.round(msg.confidence, 3).tolist(),
                                  **({} if msg.face is None else {"face": np.round(msg.face.astype(np.float64), 3).tolist()})}))

        sender = asyncio.create_task(send_lines())
        seen = await collect(client, sent_all, Collected(), show)
        await sender
        await client.close()
    if out is not None:
        save_frames(seen.frames, float(client.ready["fps"]), out)
    return seen


async def stdin_lines() -> AsyncIterator[str]:
    """Lines of standard input as they arrive (for `tail -f captions.txt | signstream say --follow`)."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        yield line


async def lines_of(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def play_cues(server: str, cues: list[Cue], language: str | None, token: str | None,
                    speed: float = 1.0, channel: str | None = None,
                    skipped: list[SkippedCue] | None = None) -> Collected:
    """Send each cue as a final caption at its start time (real time / `speed`), then wait for the
    statuses. The file's `skipped` cues (engines/formats/captions.py) are printed first: they are not played."""
    for cue in skipped or []:
        number = f" {cue.number}" if cue.number else ""
        print(f"skipped cue{number} at line {cue.line}: {cue.reason}", file=sys.stderr)
    async with aiohttp.ClientSession() as http:
        client = await LiveClient.connect(http, server, language=language, fmt="binary", token=token,
                                          idle_frames=False, channel=channel)
        sent_all = asyncio.Event()

        async def send_cues() -> None:
            start = time.monotonic()
            for i, cue in enumerate(cues, 1):
                delay = start + cue.start / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await client.caption(f"cue-{i}", cue.text, final=True)
            sent_all.set()

        sender = asyncio.create_task(send_cues())
        seen = await collect(client, sent_all, Collected(), _report)
        await sender
        await client.close()
    return seen
