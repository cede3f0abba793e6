"""How many repository files a caption crosses: prints JSON.

A real server (server/app.py:build_app, the shipped config) runs in this process with a profiler
(`sys.setprofile`, and `threading.setprofile` for the render and worker threads) that records, from
the moment a caption is sent until its first frame arrives where it is going, every function of
server/ and engines/ that runs:
- `ws`: a caption sent on /ws, until the first pose frame of its unit is encoded for the socket
  (server/protocol.py:encode);
- `pixels`: a caption sent on a WebRTC viewer's data channel, until the first pose frame of its unit
  is drawn by the video track (`_solve` returns a picture).
For each it gives the distinct files, the functions, and how many times control came back into
server/session.py from another repository file (a call into session.py whose caller is a function
of server/ or engines/ outside it; the count depends on how many engine ticks ran, so the distinct
caller -> callee pairs are listed too). Each path signs one warm-up caption first, so lazy loads
(lexicons, plans, the renderer) are not counted as the caption's path.

    PYOPENGL_PLATFORM=egl .venv/bin/python bench/caption_path.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from server.app import build_app, runner_options  # noqa: E402
from server.config import load_config  # noqa: E402
from server.transports.webrtc import Viewer  # noqa: E402

PACKAGES = tuple(str(ROOT / p) + "/" for p in ("server", "engines"))
SESSION = str(ROOT / "server" / "session.py")
WARM_UP, CAPTION = "Hello Ann.", "Hi, Bob!"
UNIT = 2  # the caption's unit in its session: the warm-up is the first


class Trace:
    """The profiler: records repository functions while `on`; `done` is set by the end marker."""

    def __init__(self, end: str) -> None:
        self.end = end  # "encode" (a pose frame of a unit encoded) or "_solve" (one drawn)
        self.on = False
        self.functions: set[tuple[str, str]] = set()
        self.returns = 0  # calls into session.py from another repository file
        self.entries: set[str] = set()  # those calls' kinds: caller file:function -> session function
        self.done = threading.Event()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event not in ("call", "return"):
            return
        path = frame.f_code.co_filename
        if not path.startswith(PACKAGES):
            return
        if event == "call":
            self.functions.add((path, frame.f_code.co_name))
            caller = frame.f_back.f_code.co_filename if frame.f_back is not None else ""
            if path == SESSION and caller != SESSION and caller.startswith(PACKAGES):
                self.returns += 1
                back = frame.f_back
                assert back is not None
                self.entries.add(f"{Path(caller).relative_to(ROOT)}:{back.f_code.co_name} -> {frame.f_code.co_name}")
            if self.end == "encode" and frame.f_code.co_name == "encode" and path.endswith("server/protocol.py"):
                msg = frame.f_locals.get("msg")
                if getattr(msg, "unit", 0) == UNIT and hasattr(msg, "points"):
                    self._stop()
        elif self.end == "_solve" and frame.f_code.co_name == "_solve" and arg is not None:
            if getattr(frame.f_locals.get("pose"), "unit", 0) == UNIT:  # not a late draw of the warm-up
                self._stop()

    def _stop(self) -> None:
        self.on = False
        self.done.set()

    def report(self) -> dict[str, Any]:
        files = sorted({str(Path(p).relative_to(ROOT)) for p, _ in self.functions})
        return {"files": len(files), "functions": len(self.functions), "returns_to_session": self.returns,
                "session_entries": sorted(self.entries), "file_list": files,
                "function_list": sorted(f"{Path(p).relative_to(ROOT)}:{name}" for p, name in self.functions)}


async def _wait(trace: Trace, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not trace.done.is_set():
            await asyncio.sleep(0.005)


async def _ws_path(http: aiohttp.ClientSession, url: str, trace: Trace) -> None:
    async with http.ws_connect(url.replace("http", "ws") + "/ws") as ws:
        await ws.send_json({"type": "hello", "language": "ase", "idle_frames": False})
        while (await ws.receive_json())["type"] != "ready":
            pass
        for text in (WARM_UP, CAPTION):
            trace.on = text == CAPTION
            await ws.send_json({"type": "caption", "id": text, "text": text, "final": True})
            while (await ws.receive_json())["type"] != "unit_status":
                pass
    await _wait(trace)


async def _pixels_path(http: aiohttp.ClientSession, url: str, trace: Trace) -> None:
    viewer, status, body = await Viewer.offer(http, url, language="ase")
    assert status == 200, body
    try:
        await viewer.until("ready")
        track = await asyncio.wait_for(viewer.video, 30)
        receiving = asyncio.create_task(_drain(track))
        for text in (WARM_UP, CAPTION):
            trace.on = text == CAPTION
            await viewer.send({"type": "caption", "id": text, "text": text, "final": True})
            await viewer.until("unit_status", 120)
        await _wait(trace)
        receiving.cancel()
    finally:
        await viewer.close()


async def _drain(track: Any) -> None:
    while True:  # the viewer decodes what it is sent, as a browser would
        await track.recv()


async def main() -> dict[str, Any]:
    ws, pixels = Trace("encode"), Trace("_solve")
    current: list[Trace] = [ws]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        current[0](frame, event, arg)

    threading.setprofile(profile)  # the threads started from here on: workers, the GL thread
    sys.setprofile(profile)
    cfg = load_config()
    app = build_app(cfg)
    runner = web.AppRunner(app, **runner_options(cfg))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await _ws_path(http, url, ws)
            current[0] = pixels
            await _pixels_path(http, url, pixels)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        await runner.cleanup()
    return {"caption": CAPTION, "ws": ws.report(), "pixels": pixels.report()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=1))
