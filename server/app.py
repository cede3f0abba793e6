"""The live server: one aiohttp application on one port.

/ws (WebSocket sessions), /offer (WebRTC: avatar video + data channel), /healthz, /metrics (Prometheus), and the
pages in client/. The Hub holds what sessions share: the config, the one Scheduler ticked by the
EngineLoop, the metrics, the open sessions and channels.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable, Callable

from aiohttp import web

from engines.loader import open_scheduler
from server.channels import Channels
from server.config import REPO_ROOT, Config
from server.engine_loop import EngineLoop
from server.metrics import CONTENT_TYPE, Metrics
from server.motion import rest_pose
from server.protocol import ServerMessage
from server.session import Session
from server.transports.webrtc import WebrtcTransport
from server.transports.websocket import _Outbox, websocket_route

CLIENT_DIR = REPO_ROOT / "client"
HUB: web.AppKey[Hub] = web.AppKey("hub")


class Hub:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.engine = EngineLoop(open_scheduler(cfg.engine, float(cfg.video.fps)), self.metrics)
        self.sessions: dict[int, Session] = {}
        self.outboxes: dict[int, _Outbox] = {}
        self.closing = False
        self._next_id = 0
        self.channels = Channels(self)  # WebRTC viewers and named channels
        m = self.metrics
        m.watch_queue("motion", lambda: sum(s.timeline.queued for s in self.sessions.values()))
        m.watch_queue("pending", lambda: sum(len(s.pending) for s in self.sessions.values()))
        m.watch_queue("outbox", lambda: sum(len(o.items) for o in self.outboxes.values()))
        m.watch_queue("engine", lambda: self.engine.scheduler.live)

    def open_session(self, send: Callable[[ServerMessage], None], end: Callable[[int], None], authed: bool) -> Session:
        self._next_id += 1
        session = Session(self._next_id, self.cfg, self.engine, self.metrics, send, end, authed)
        self.sessions[session.id] = session
        self.metrics.sessions.set(len(self.sessions))
        return session

    def close_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.outboxes.pop(session.id, None)
        self.metrics.sessions.set(len(self.sessions))

    async def shutdown(self) -> None:
        """Tell every session, let units in flight finish (or report them), then close."""
        self.closing = True
        grace = self.cfg.live.shutdown_grace_s
        await asyncio.gather(*(s.shutdown(grace) for s in list(self.sessions.values())))
        for _ in range(100):  # the transports flush and close
            if not self.sessions:
                break
            await asyncio.sleep(0.02)


async def _healthz(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    return web.json_response({"status": "closing" if hub.closing else "ok", "sessions": len(hub.sessions),
                              "languages": sorted(hub.engine.languages)})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[HUB].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(CLIENT_DIR / name)
    return page


def build_app(cfg: Config) -> web.Application:
    app = web.Application(client_max_size=cfg.limits.max_message_bytes)
    hub = app[HUB] = Hub(cfg)
    rest_pose()  # derive it now, not in the first session
    app.router.add_get("/ws", websocket_route(hub))
    webrtc = WebrtcTransport(hub)
    app.router.add_post("/offer", webrtc.offer)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/kiosk", _page("kiosk.html"))  # full-screen avatar and captions (client/kiosk.html)
    app.router.add_static("/client/", CLIENT_DIR)

    async def engine_task(app: web.Application):
        task = asyncio.create_task(hub.engine.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def on_shutdown(app: web.Application) -> None:
        await hub.shutdown()

    app.cleanup_ctx.append(engine_task)
    app.on_shutdown.append(on_shutdown)
    app.on_shutdown.append(webrtc.close)  # after the sessions: peers left over, then the renderer
    return app


async def serve(cfg: Config, host: str, port: int, ready: Callable[[str, int], None]) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    import signal

    app = build_app(cfg)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=cfg.live.shutdown_grace_s + 5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
    ready(host, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
