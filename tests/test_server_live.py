"""The live server end to end, over real sockets on 127.0.0.1: captions in, frames and statuses out,
corrections, the backlog policy, bad input, limits, auth, graceful shutdown, metrics, the say client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from engines.formats.posefile import read_pose
from server.app import build_app
from server.client_cli import Collected, LiveClient, collect, lines_of, say
from server.config import load_config
from server.protocol import SERVER_SCHEMAS, PoseFrame, schema_errors


@contextlib.asynccontextmanager
async def live_server(**overrides: Any) -> AsyncIterator[tuple[str, TestServer]]:
    """A real server on an ephemeral port; overrides like limits__token="s3cret"."""
    cfg = load_config()
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    server = TestServer(build_app(cfg), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", server
    finally:
        await server.close()


def run(coro) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _until(client: LiveClient, kind: str) -> dict[str, Any]:
    while True:
        msg = await client.recv(timeout=20)
        if isinstance(msg, dict) and msg["type"] == kind:
            return msg


async def _answered(client: LiveClient) -> Collected:
    sent = asyncio.Event()
    sent.set()
    return await collect(client, sent, Collected())


def _check_schema(msg: dict[str, Any]) -> None:
    assert schema_errors(SERVER_SCHEMAS[msg["type"]], msg) == [], msg


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_caption_to_frames_to_unit_status(fmt):
    async def main():
        async with live_server() as (url, _), aiohttp.ClientSession() as http:
            client = await LiveClient.connect(http, url, language="ase", fmt=fmt)
            _check_schema(client.ready)
            await client.caption("c1", "Hi, Bob!")
            got: list[Any] = []
            while not (got and isinstance(got[-1], dict) and got[-1]["type"] == "unit_status"):
                got.append(await client.recv(timeout=20))
            for m in got:
                if isinstance(m, dict):
                    _check_schema(m)
            unit = next(m for m in got if isinstance(m, dict) and m["type"] == "unit")
            assert unit["text"] == "Hi, Bob!" and [s["gloss"] for s in unit["segments"]] == ["<ase> FS:H-I", "<ase> FS:B-O-B"]
            assert [s["path"] for s in unit["segments"]] == ["signllm", "signllm"]  # the bundled model, in front
            frames = [m for m in got if isinstance(m, PoseFrame) and m.unit == unit["unit"]]
            status = got[-1]
            assert status["status"] == "fingerspelled" and status["unit"] == unit["unit"]
            signed = [f for f in frames if f.kind == "fingerspelling"]
            assert len(signed) == status["frames"] > 0  # every engine frame played, at speed 1
            assert frames[0].kind == "transition" and {f.segment for f in signed} == {0, 1}
            index = [f.frame for f in frames]
            assert index == list(range(index[0], index[0] + len(index)))
            assert frames[-1].t == pytest.approx(frames[-1].frame / 25.0, abs=1e-3)
            await client.close()
    run(main())


def test_partial_final_and_a_correction_after_the_unit_started():
    async def main():
        async with live_server() as (url, _), aiohttp.ClientSession() as http:
            client = await LiveClient.connect(http, url, idle_frames=False)
            await client.caption("l", "I like", final=False)
            await client.caption("l", "I like cats. And", final=False)
            first = await _until(client, "unit")
            assert first["text"] == "I like cats."
            while not (isinstance(msg := await client.recv(timeout=20), PoseFrame) and msg.segment == 0):
                pass  # "I" is on screen: the unit has started
            await client.caption("l", "I like dogs. And then we left.", final=True)
            seen = await _answered(client)
            cancelled = seen.statuses[first["unit"]]
            assert cancelled["status"] == "cancelled"
            shown = cancelled["reason"].split("shown before the correction: ")[1].split(";")[0]
            assert shown in ("I", "I like")  # how far it got before the correction arrived
            # Every word once: what was on screen before the correction, then the rest of the line.
            texts = [u["text"] for u in seen.units.values()]
            assert re.findall(r"\w+", " ".join([shown] + texts)) == ["I", "like", "dogs", "And", "then", "we", "left"]
            assert all(seen.statuses[u]["status"] == "fingerspelled" for u in seen.units)
    run(main())


def test_backlog_speeds_up_then_shows_units_as_text_and_every_unit_has_a_status():
    async def main():
        async with live_server(live__speedup_after_s=1.0, live__max_speedup=2.0, live__text_after_s=4.0) as (url, _), \
                aiohttp.ClientSession() as http:
            client = await LiveClient.connect(http, url, fmt="binary", idle_frames=False)
            for i in range(8):
                await client.caption(f"c{i}", "Good morning everyone.")
            seen = await _answered(client)
            assert set(seen.statuses) == set(seen.units) and len(seen.units) == 8
            by_status = [seen.statuses[u]["status"] for u in sorted(seen.units)]
            assert "shown_as_text" in by_status and "fingerspelled" in by_status
            assert all("backlog" in seen.statuses[u]["reason"] for u in seen.units if by_status[u - 1] == "shown_as_text")
            # Played faster than produced: fewer frames shown than the engine made for the first unit.
            first = min(seen.units)
            shown = sum(1 for f in seen.frames if f.unit == first and f.kind != "transition")
            assert shown < seen.statuses[first]["frames"]
    run(main())


async def _raw(http: aiohttp.ClientSession, url: str, **kw) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url + "/ws", **kw)
    await ws.send_str(json.dumps({"type": "hello", "idle_frames": False}))
    assert json.loads((await ws.receive(timeout=10)).data)["type"] == "ready"
    return ws


async def _reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type == WSMsgType.TEXT, msg
    return json.loads(msg.data)


def test_every_bad_input_class_gets_its_code_and_the_session_goes_on():
    cases = [
        ("str", "{oops", "bad_json"),
        ("str", '{"type":"teleport"}', "unknown_type"),
        ("str", '{"type":"caption","id":"c","text":42}', "bad_field"),
        ("str", "x" * 5000, "message_too_large"),
        ("bytes", bytes(range(256)) * 4, "bad_utf8"),
        ("bytes", b'{"type":"ping","x":"\xc3\x28"}', "bad_utf8"),
        ("str", '{"type":"caption","id":"c","text":"hi","language":"xx"}', "unknown_language"),
        ("str", '{"type":"config","language":"klingon"}', "unknown_language"),
    ]

    async def main():
        async with live_server(limits__max_message_bytes=4096) as (url, _), aiohttp.ClientSession() as http:
            ws = await _raw(http, url)
            for how, payload, code in cases:
                await (ws.send_str(payload) if how == "str" else ws.send_bytes(payload))
                reply = await _reply(ws)
                assert reply["type"] == "error" and reply["code"] == code and reply["message"], (payload[:40], reply)
                _check_schema(reply)
                await ws.send_str('{"type":"ping"}')
                assert (await _reply(ws))["type"] == "pong"
            # Invalid UTF-8 in a *text* frame: the WebSocket RFC makes the server fail that connection
            # (close 1007); the server itself goes on.
            await ws._writer.send_frame(b'{"type":"ping","x":"\xc3\x28"}', WSMsgType.TEXT)
            msg = await ws.receive(timeout=10)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 1007
            ws2 = await _raw(http, url)
            await ws2.send_str('{"type":"caption","id":"c","text":"ok"}')  # before hello? no: hello was sent
            await ws2.close()
    run(main())


def test_flood_is_rate_limited_and_the_session_recovers():
    async def main():
        async with live_server(limits__message_rate=5.0, limits__message_burst=10) as (url, _), \
                aiohttp.ClientSession() as http:
            ws = await _raw(http, url)
            for _ in range(40):
                await ws.send_str('{"type":"ping"}')
            replies = [await _reply(ws)]
            while True:  # until quiet
                try:
                    replies.append(json.loads((await ws.receive(timeout=0.5)).data))
                except asyncio.TimeoutError:
                    break
            codes = [r.get("code", r["type"]) for r in replies]
            # Repeated rate_limited errors waiting in the outbox are coalesced: at most one a code waits.
            assert codes.count("pong") >= 9 and "rate_limited" in codes and len(replies) <= 40
            await asyncio.sleep(0.5)  # the bucket refills at the configured rate
            await ws.send_str('{"type":"ping"}')
            assert (await _reply(ws))["type"] == "pong"
    run(main())


def test_limits_hello_first_caption_length_sessions_and_idle_timeout():
    async def main():
        async with live_server(limits__max_sessions=2, limits__max_caption_chars=10, limits__idle_timeout_s=0.5) as (url, _), \
                aiohttp.ClientSession() as http:
            first = await http.ws_connect(url + "/ws")
            await first.send_str('{"type":"caption","id":"c","text":"hi"}')
            assert (await _reply(first))["code"] == "hello_required"
            await first.send_str('{"type":"hello","idle_frames":false}')
            assert (await _reply(first))["type"] == "ready"
            await first.send_str('{"type":"caption","id":"c","text":"far too long a caption"}')
            assert (await _reply(first))["code"] == "caption_too_long"
            second = await _raw(http, url)
            third = await http.ws_connect(url + "/ws")
            assert (await _reply(third))["code"] == "too_many_sessions"
            assert (await third.receive(timeout=10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
            # Idle: nothing sent and nothing to sign → idle_timeout, then the connection closes.
            while (reply := await _reply(second))["type"] != "error":
                pass
            assert reply["code"] == "idle_timeout"
            assert (await second.receive(timeout=10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
            await first.close()
    run(main())


def test_token_and_origin():
    async def main():
        async with live_server(limits__token="s3cret", limits__allowed_origins=["https://ok.example"]) as (url, _), \
                aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url + "/ws")
            await ws.send_str('{"type":"hello","token":"wrong"}')
            assert (await _reply(ws))["code"] == "unauthorized"
            assert (await ws.receive(timeout=10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and ws.close_code == 1008
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(url + "/ws", headers={"Authorization": "Bearer nope"})
            assert exc.value.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(url + "/ws", headers={"Origin": "https://evil.example"})
            assert exc.value.status == 403
            ok = await LiveClient.connect(http, url, token="s3cret", headers={"Origin": "https://ok.example"})
            ok2 = await LiveClient.connect(http, url, headers={"Authorization": "Bearer s3cret"})
            await ok.close(), await ok2.close()
            async with http.post(url + "/offer", headers={"Authorization": "Bearer nope"}) as r:
                assert r.status == 401 and (await r.json())["code"] == "unauthorized"
    run(main())


@pytest.mark.parametrize("grace, expected", [(10.0, "fingerspelled"), (0.0, "failed")])
def test_graceful_shutdown_tells_sessions_and_reports_units_in_flight(grace, expected):
    async def main():
        async with aiohttp.ClientSession() as http:
            server_cm = live_server(live__shutdown_grace_s=grace)
            url, server = await server_cm.__aenter__()
            client = await LiveClient.connect(http, url, idle_frames=False)
            await client.caption("c", "Hello there", final=False)  # left uncommitted: shutdown commits it
            await client.send({"type": "ping"})
            await _until(client, "pong")
            closing = asyncio.create_task(server_cm.__aexit__(None, None, None))
            got = [m async for m in client.messages() if isinstance(m, dict)]
            await closing
            types = [m["type"] for m in got]
            assert types[0] == "closing" and "unit" in types
            statuses = [m for m in got if m["type"] == "unit_status"]
            assert [s["status"] for s in statuses] == [expected]
            assert client.ws.close_code == 1001
    run(main())


def test_health_metrics_page_and_say_client(tmp_path: Path):
    async def main():
        async with live_server() as (url, _), aiohttp.ClientSession() as http:
            out = tmp_path / "hi.pose"
            seen = await say(url, lines_of("Hi", "ok"), "gsg", out, None)
            assert [s["status"] for s in seen.statuses.values()] == ["fingerspelled", "fingerspelled"]
            assert len(read_pose(out)) == len(seen.frames) > 0
            async with http.get(url + "/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(url + "/metrics") as r:
                text = await r.text()
            assert 'signstream_units_total{status="fingerspelled"} 2.0' in text
            for name in ("signstream_sessions", "signstream_frames_sent_total", "signstream_engine_step_seconds_bucket",
                         'signstream_queue_depth{queue="motion"}'):
                assert name in text
            async with http.get(url + "/") as r:
                assert r.status == 200 and "/ws" in await r.text()
            async with http.post(url + "/offer") as r:
                assert r.status == 400 and (await r.json())["code"] == "bad_json"  # /offer: tests/test_webrtc.py
    run(main())
