"""The live server: one aiohttp application on one port.

/ws (WebSocket sessions), /offer (WebRTC: avatar video + data channel), /healthz, /metrics (Prometheus), and the
pages in client/; in a cluster with Janus, /sfu/offer and /sfu/answer (server/cluster/sfu.py). The composition root: it builds the Hub (server/hub.py) and mounts the transports
on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from server.allocator import cap_arenas
from server.cluster.sfu import Sfu, SfuRoutes
from server.config import REPO_ROOT, Config
from server.hub import Hub
from server.metrics import CONTENT_TYPE
from server.motion import rest_pose
from server.rotation_stream import AVATAR_URL, rotation_rig
from server.transports.webrtc import WebrtcTransport
from server.transports.websocket import check_request, websocket_route

log = logging.getLogger(__name__)
CLIENT_DIR = REPO_ROOT / "client"
HUB: web.AppKey[Hub] = web.AppKey("hub")


async def _healthz(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB]
    return web.json_response({"status": "closing" if hub.closing else "ok", "sessions": len(hub.sessions),
                              "languages": sorted(hub.engine.languages),
                              **({"cluster": hub.cluster.health()} if hub.cluster is not None else {})})


async def _metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    token = hub.cfg.limits.metrics_token
    if token:  # default open, for a Prometheus scraper on localhost
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return web.json_response({"type": "error", "code": "unauthorized",
                                      "message": "/metrics needs its bearer token (limits.metrics_token)"}, status=401)
    body = hub.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _avatar_file(cfg: Config) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    """The configured avatar, for pages that draw it (server/rotation_stream.py): the same file the
    server retargets onto, so a deployment's own avatar appears in the page too."""
    path = cfg.resolve(cfg.avatar.path)

    async def avatar(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Content-Type": "model/gltf-binary", "Cache-Control": "no-cache"})
    return avatar


def _page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(CLIENT_DIR / name)
    return page


@web.middleware
async def _coded_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """A handler's unexpected exception becomes a coded JSON 500 that names no internals (the log
    has them); aiohttp's own HTTP errors (404, 405, 413...) pass as they are."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"type": "error", "code": "internal_error", "message": "the server failed"},
                                 status=500)


def runner_options(cfg: Config) -> dict[str, Any]:
    """AppRunner settings from the config, for `serve`, tests and benches alike. aiohttp closes a
    connection that has not sent a whole request within keepalive_timeout of connecting (or of its
    last reply): that is the header-read deadline."""
    return {"keepalive_timeout": cfg.limits.header_timeout_s, "shutdown_timeout": cfg.live.shutdown_grace_s + 2}


def build_app(cfg: Config) -> web.Application:
    app = web.Application(client_max_size=cfg.limits.max_message_bytes, middlewares=[_coded_errors])
    hub = app[HUB] = Hub(cfg)
    rest_pose()  # derive it now, not in the first session
    rotation_rig(cfg)  # the avatar pages draw: load it now, not in the first rotations client
    app.router.add_get("/ws", websocket_route(hub))
    webrtc = WebrtcTransport(hub)
    app.router.add_post("/offer", webrtc.offer)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/kiosk", _page("kiosk.html"))  # full-screen avatar and captions (client/kiosk.html)
    app.router.add_static("/client/", CLIENT_DIR)  # pages' scripts; client/vendor/: three.js, offline
    app.router.add_get(AVATAR_URL, _avatar_file(cfg))

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
    if hub.cluster is not None:
        cluster = hub.cluster

        async def cluster_task(app: web.Application):
            cluster.start()
            yield

        async def cluster_stop(app: web.Application) -> None:
            await cluster.stop()

        app.cleanup_ctx.append(cluster_task)
        app.on_shutdown.append(cluster_stop)  # after the sessions: the leases they held given up
        if cfg.cluster.janus:  # channel video encoded once by its owner, fanned out by Janus
            sfu = cluster.sfu = Sfu(cfg, webrtc.renderer)
            routes = SfuRoutes(sfu, lambda request: check_request(hub, request))
            app.router.add_post("/sfu/offer", routes.offer)
            app.router.add_post("/sfu/answer", routes.answer)
            app.on_shutdown.append(sfu.close)  # after the channels: their publishers gone
    app.on_shutdown.append(webrtc.close)  # after the sessions: peers left over, then the renderer
    return app


async def serve(cfg: Config, host: str, port: int, ready: Callable[[str, int], None]) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    import signal

    cap_arenas()  # before the worker threads start (server/allocator.py)
    app = build_app(cfg)
    # The engine, lexicons and avatar loaded above live as long as the server: out of the collector's
    # sight, a full collection (which stalls every session's frames) walks only what sessions made.
    gc.collect()
    gc.freeze()
    runner = web.AppRunner(app, handle_signals=False, **runner_options(cfg))
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
    await site.stop()  # no new connections
    await app[HUB].shutdown()  # while the open ones are still read
    await runner.cleanup()
