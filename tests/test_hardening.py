"""Issue 14: no client can stall, exhaust or silently break the live server. One test (or two) per
item, against the real app on a loopback port with real sockets and real aiortc peers; shutdown
against a real `signstream serve` process. Budgets (MB, ms, s) are measured by bench/soak.py, not
asserted here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer, get_port_socket
from aiortc import RTCConfiguration, RTCPeerConnection

from engines.engine import MAX_WORD_CHARS, Scheduler
from engines.lexicon_backend import LexiconBackend
from engines.manifest import LETTERS_FILE
from server.app import HUB, build_app, runner_options
from server.config import REPO_ROOT, load_config
from server.transports.webrtc import CHANNEL_LABEL, Viewer, gather_loopback

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def server(sndbuf: int | None = None, **overrides: Any) -> AsyncIterator[tuple[str, TestServer]]:
    """The real app on an ephemeral port, run with the runner options `serve` uses; `sndbuf` shrinks
    the kernel's send buffer of accepted sockets (so a client that does not read backs up fast)."""
    cfg = load_config()
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)

    def factory(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
        s = get_port_socket(host, port, family)
        if sndbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)  # inherited by accepted sockets
        return s

    srv = TestServer(build_app(cfg), host="127.0.0.1", socket_factory=factory)
    await srv.start_server(**runner_options(cfg))
    try:
        yield f"http://127.0.0.1:{srv.port}", srv
    finally:
        await srv.app[HUB].shutdown()  # as `serve` does: while the connections are still read
        await srv.close()


def run(coro) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def _json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> dict[str, Any]:
    """The next JSON message that is not a pose frame."""
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type == WSMsgType.TEXT, (msg.type, msg.data)
        data = json.loads(msg.data)
        if data["type"] != "pose":
            return data


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while (m := await _json(ws))["type"] != kind:
        pass
    return m


async def _hello(http: aiohttp.ClientSession, url: str, **hello: Any) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url + "/ws")
    await ws.send_str(json.dumps({"type": "hello", "idle_frames": False, **hello}))
    assert (await _json(ws))["type"] == "ready"
    return ws


async def _eventually(check, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def _metric(http: aiohttp.ClientSession, url: str, line: str) -> float:
    async with http.get(url + "/metrics") as r:
        found = re.search(rf"^{re.escape(line)} (\S+)$", await r.text(), re.M)
    return float(found.group(1)) if found else 0.0


# 1. A flooding client that does not read ------------------------------------------------------

def _small_rcvbuf(addr_info) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    s = socket.socket(family, kind, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return s


def test_a_flooding_client_that_does_not_read_is_bounded_then_closed_with_slow_client():
    async def main():
        async with server(sndbuf=4096, limits__message_rate=1e4, limits__message_burst=10_000,
                          limits__caption_char_rate=1e7, limits__outbox_bytes=50_000) as (url, srv), \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=_small_rcvbuf)) as http:
            hub = srv.app[HUB]
            ws = await _hello(http, url)
            text = " ".join(["abcdefgh"] * 200)  # each final caption: a unit message of ~20 kB
            for i in range(200):  # never read again
                if ws.closed or not hub.sessions:
                    break
                await ws.send_str(json.dumps({"type": "caption", "id": f"c{i}", "text": text, "final": True}))
                for _ in range(5):  # bad_json: repeated while one waits, coalesced
                    await ws.send_str('{"type":"flush","x":' + "1" * 5000 + "}")
                await asyncio.sleep(0)
                waiting = [o.bytes for o in hub.outboxes.values()]
                assert all(b <= 50_000 + 30_000 for b in waiting), waiting  # one message past the bound at most
            await _eventually(lambda: not hub.sessions and hub.clients == 0)
            async with http.get(url + "/metrics") as r:
                metrics = await r.text()
            assert 'signstream_errors_total{code="slow_client"} 1.0' in metrics
            assert re.search(r'signstream_outbox_dropped_total\{kind="error"\} [1-9]', metrics)  # coalesced
            await ws.close()
    run(main())


# 2 and 3. Admission: counted at the socket; a hello deadline ----------------------------------

def test_connections_that_never_say_hello_are_closed_and_free_their_slot():
    async def main():
        async with server(limits__max_sessions=1, limits__hello_timeout_s=0.5) as (url, _), \
                aiohttp.ClientSession() as http:
            pinger = await http.ws_connect(url + "/ws")
            codes = []
            while True:  # pings only: hello_required, then the deadline
                await pinger.send_str('{"type":"ping"}')
                msg = await pinger.receive(timeout=10)
                if msg.type != WSMsgType.TEXT:
                    break
                codes.append(json.loads(msg.data)["code"])
            assert codes[0] == "hello_required" and codes[-1] == "hello_timeout"
            assert pinger.close_code == 1008
            silent = await http.ws_connect(url + "/ws")  # says nothing at all
            assert (await _json(silent))["code"] == "hello_timeout"
            assert (await silent.receive(timeout=10)).type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
            await (await _hello(http, url)).close()  # the slot is free again
    run(main())


def test_max_sessions_holds_when_sockets_open_before_any_hello():
    async def main():
        async with server(limits__max_sessions=4) as (url, _), aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(url + "/ws") for _ in range(10)]
            for ws in sockets:
                with contextlib.suppress(ConnectionError):
                    await ws.send_str('{"type":"hello","idle_frames":false}')
            answers = [(await _json(ws))for ws in sockets]
            kinds = [a.get("code", a["type"]) for a in answers]
            assert kinds.count("ready") == 4 and kinds.count("too_many_sessions") == 6, kinds
            for ws in sockets:
                await ws.close()
    run(main())


# 4. Lone surrogates -------------------------------------------------------------------------

SURROGATE_CAPTION = '{"type":"caption","id":"\\ud800","text":"hi \\udfff","final":true}'


def test_a_lone_surrogate_is_refused_with_bad_text_in_a_session_a_channel_and_a_webrtc_viewer():
    async def main():
        async with server() as (url, srv), aiohttp.ClientSession() as http:
            private = await _hello(http, url)
            await private.send_str(SURROGATE_CAPTION)
            assert (await _json(private))["code"] == "bad_text"
            await private.send_str('{"type":"caption","id":"ok","text":"Hi.","final":true}')
            assert (await _until(private, "unit_status"))["status"] == "fingerspelled"  # it goes on

            a = await _hello(http, url, channel="room")
            b = await _hello(http, url, channel="room")
            viewer, status, _ = await Viewer.offer(http, url, channel="room")
            assert status == 200
            await viewer.until("ready")
            await a.send_str(SURROGATE_CAPTION)
            assert (await _json(a))["code"] == "bad_text"
            await viewer.send(json.loads(SURROGATE_CAPTION))
            assert (await viewer.until("error"))["code"] == "bad_text"
            await b.send_str('{"type":"caption","id":"ok","text":"Hi.","final":true}')
            for ws in (a, b):  # nobody was disconnected; everyone gets the next unit and its status
                assert (await _until(ws, "unit"))["caption"] == "ok"
                assert (await _until(ws, "unit_status"))["caption"] == "ok"
            assert (await viewer.until("unit_status"))["caption"] == "ok"
            await viewer.close()
            for ws in (private, a, b):
                await ws.close()
    run(main())


# 5. A caption that would stall every session ----------------------------------------------------

def test_a_word_too_long_to_sign_is_shown_as_text_and_others_are_signed():
    async def main():
        async with server() as (url, _), aiohttp.ClientSession() as http:
            ws = await _hello(http, url)
            await ws.send_str(json.dumps({"type": "caption", "id": "w", "text": "Hi " + "a" * 1997, "final": True}))
            unit = await _until(ws, "unit")
            assert [s["kind"] for s in unit["segments"]] == ["fingerspelling", "text"]
            assert f"longer than {MAX_WORD_CHARS}" in unit["segments"][1]["reason"]
            assert (await _until(ws, "unit_status"))["status"] == "fingerspelled"
            await ws.close()
    run(main())


# 6. Abandoned WebRTC offers -------------------------------------------------------------------

def test_offers_nobody_connects_to_render_nothing_and_are_released():
    async def main():
        async with server(webrtc__connect_timeout_s=1.0) as (url, srv), aiohttp.ClientSession() as http:
            hub = srv.app[HUB]
            pcs = []
            for _ in range(3):  # offer, take the answer, never apply it: ICE never starts
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                pc.addTransceiver("video", direction="recvonly")
                pc.createDataChannel(CHANNEL_LABEL)
                await gather_loopback(pc)
                await pc.setLocalDescription(await pc.createOffer())
                async with http.post(url + "/offer", json={"type": "offer", "sdp": pc.localDescription.sdp}) as r:
                    assert r.status == 200
                pcs.append(pc)
            assert hub.clients == 3
            stages = [c.video for c in hub.channels.all() if c.video is not None]
            assert len(stages) == 3
            await _eventually(lambda: hub.clients == 0 and not hub.channels.all())
            assert all(s.stats.drawn == 0 and s.stats.sent == 0 for s in stages)  # nothing drawn nor encoded
            for pc in pcs:
                await pc.close()
            live, status, _ = await Viewer.offer(http, url)  # a viewer that connects is drawn for
            assert status == 200 and (await live.until("ready"))["type"] == "ready"
            await asyncio.wait_for(live.video, 20)
            stage = next(c.video for c in hub.channels.all() if c.video is not None)
            await _eventually(lambda: stage.stats.sent > 0)
            await live.close()
    run(main())


# 7 and 8. Decode failures at the parser and /offer ----------------------------------------------

@pytest.mark.parametrize("name,body,code", [
    ("deep", b"[" * 30000, "bad_json"),
    ("huge_int", b'{"type":"offer","sdp":"v=0","idle_frames":' + b"9" * 5000 + b"}", "bad_json"),
    ("no_video", json.dumps({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}).encode(),
     "bad_field"),
    ("garbage_sdp", json.dumps({"type": "offer", "sdp": "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}).encode(), "bad_field"),
])
def test_offer_never_answers_500_nor_echoes_internals(name, body, code):
    async def main():
        async with server() as (url, _), aiohttp.ClientSession() as http:
            async with http.post(url + "/offer", data=body, headers={"Content-Type": "application/json"}) as r:
                reply = await r.json()
                assert r.status == 400 and reply["code"] == code, reply
                assert not re.search(r"Error|NoneType|Traceback|attribute", reply["message"]), reply
    run(main())


# 9. Shutdown: a real `signstream serve` and SIGTERM ---------------------------------------------

def test_shutdown_keeps_reading_answers_shutting_down_and_closes_1001():
    base = (REPO_ROOT / "config.toml").read_text()
    cfg = Path(tempfile.mkdtemp()) / "config.toml"
    cfg.write_text(re.sub(r"(?m)^shutdown_grace_s = .*$", "shutdown_grace_s = 1.0", base))
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--config", str(cfg), "--port", "0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            if m := re.search(r"listening on (http://\S+)", line):
                url = m.group(1)
                break
        assert url, "the server did not start"

        async def main():
            async with aiohttp.ClientSession() as http:
                ws = await _hello(http, url)
                await ws.send_str(json.dumps({"type": "caption", "id": "c", "text": "Hello there", "final": False}))
                proc.send_signal(signal.SIGTERM)
                assert (await _until(ws, "closing"))["grace_s"] == 1.0
                await ws.send_str(json.dumps({"type": "caption", "id": "d", "text": "More", "final": True}))
                assert (await _until(ws, "error"))["code"] == "shutting_down"  # still read after closing
                while True:
                    msg = await ws.receive(timeout=20)
                    if msg.type != WSMsgType.TEXT:
                        break
                assert ws.close_code == 1001
        run(main())
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# 10. Engine failure: isolated, then a fallback ---------------------------------------------------

class _FailingModel(LexiconBackend):
    """Stands in front of the real recordings backend as the model does, and fails on demand: on
    every batch holding `poison`, or on every step once `broken`. Its frames are real recordings."""

    name = "signllm"

    def __init__(self, letters: Path, poison: str = "") -> None:
        super().__init__(25.0, letters)
        self.poison = poison
        self.broken = False
        self.words: dict[int, str] = {}

    def begin(self, key: int, word: str, language: str) -> None:
        super().begin(key, word, language)
        self.words[key] = word

    def step(self, keys: list[int]):
        if self.broken or any(self.words[k] == self.poison for k in keys):
            raise RuntimeError("model step failed")
        return super().step(keys)


def _drain(sched: Scheduler) -> tuple[set[str], list[tuple[str, str]]]:
    done: set[str] = set()
    failed: list[tuple[str, str]] = []
    for _ in range(2000):
        if not sched.live:
            break
        frames, ended = sched.tick()
        done |= {f.key for f in frames if f.last} | set(ended)
        failed += sched.take_failed()
    return done, failed


def test_one_failing_generation_moves_to_the_fallback_and_the_others_go_on():
    letters = REPO_ROOT / "engines/default" / LETTERS_FILE
    model = _FailingModel(letters, poison="boom")
    sched = Scheduler([model, LexiconBackend(25.0, letters)])
    plans = {u: sched.submit(u, text, "ase") for u, text in (("a", "hello"), ("b", "boom"), ("c", "world"))}
    done, failed = _drain(sched)
    assert done == {"a", "b", "c"} and failed == []
    assert [s.path for s in plans["a"]] == ["signllm"] and [s.path for s in plans["c"]] == ["signllm"]
    assert [s.path for s in plans["b"]] == ["lexicon"] and plans["b"][0].frames > 0
    assert sched.disabled == set()  # one bad word does not disable the model


def test_a_model_that_keeps_failing_falls_back_to_the_recordings():
    letters = REPO_ROOT / "engines/default" / LETTERS_FILE
    model = _FailingModel(letters)
    sched = Scheduler([model, LexiconBackend(25.0, letters)])
    sched.submit("a", "hello", "ase")
    sched.tick()
    model.broken = True
    plans = {u: sched.submit(u, w, "ase") for u, w in (("b", "cat"), ("c", "dog"), ("d", "sun"))}
    done, failed = _drain(sched)
    assert done == {"a", "b", "c", "d"} and failed == []
    assert sched.disabled == {"signllm"}
    assert [s.path for s in sched.plan("new words", "ase")] == ["lexicon", "lexicon"]
    assert all(p[0].path == "lexicon" and p[0].frames > 0 for p in plans.values())


# 11. Channels: replies and statuses reach the right members --------------------------------------

def test_a_member_gets_no_status_for_a_unit_it_never_saw():
    async def main():
        async with server() as (url, _), aiohttp.ClientSession() as http:
            a = await _hello(http, url, channel="hall")
            await a.send_str(json.dumps({"type": "caption", "id": "c1", "text": "Hello there friends", "final": True}))
            first = await _until(a, "unit")
            b = await _hello(http, url, channel="hall")  # joins mid-unit
            await a.send_str('{"type":"flush","x":' + "9" * 5000 + "}")  # an error: a's alone
            assert (await _until(a, "error"))["code"] == "bad_json"
            await b.send_str(json.dumps({"type": "caption", "id": "c2", "text": "Bye.", "final": True}))
            seen_b = []
            while True:
                m = await _json(b)
                seen_b.append(m)
                if m["type"] == "unit_status" and m["caption"] == "c2":
                    break
            assert not any(m["type"] == "error" for m in seen_b)
            assert not any(m.get("unit") == first["unit"] for m in seen_b), seen_b
            assert {m["type"] for m in seen_b} >= {"unit", "unit_status"}
            for ws in (a, b):
                await ws.close()
    run(main())


# 12. HTTP: header deadline, /metrics token ------------------------------------------------------

def test_a_connection_that_never_finishes_its_headers_is_closed():
    async def main():
        async with server(limits__header_timeout_s=0.5) as (url, srv):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
            await writer.drain()
            for _ in range(5):  # a header line now and then does not extend the deadline
                await asyncio.sleep(0.05)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
            assert await asyncio.wait_for(reader.read(), 20) == b""  # closed by the server, no reply
            writer.close()
    run(main())


def test_metrics_token_is_configurable():
    async def main():
        async with server(limits__metrics_token="m3tr1cs") as (url, _), aiohttp.ClientSession() as http:
            async with http.get(url + "/metrics") as r:
                assert r.status == 401 and (await r.json())["code"] == "unauthorized"
            async with http.get(url + "/metrics", headers={"Authorization": "Bearer m3tr1cs"}) as r:
                assert r.status == 200 and "signstream_sessions" in await r.text()
        async with server() as (url, _), aiohttp.ClientSession() as http:  # default: open, as before
            async with http.get(url + "/metrics") as r:
                assert r.status == 200
    run(main())


# 4 and 7 at the parser itself --------------------------------------------------------------------

@pytest.mark.parametrize("raw,code", [
    ('{"type":"caption","id":"\\ud800","text":"x"}', "bad_text"),
    ('{"type":"caption","id":"a","text":"\\udfff"}', "bad_text"),
    ('{"type":"caption","id":"a","text":"a\\u0000b"}', "bad_text"),
    ('{"type":"hello","channel":"\\ud83d"}', "bad_text"),
    ('{"type":"caption","id":"a","text":"x","final":' + "1" * 4301 + "}", "bad_json"),
    ("[" * 100_000, "bad_json"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "bad_json"),
    (b'{"type":"ping"}\xff', "bad_utf8"),
    ('{"type":"caption","id":"a","text":"x","final":NaN}', "bad_field"),
])
def test_the_parser_maps_every_decode_failure_to_a_code(raw, code):
    from server.protocol import ProtocolError, parse_client_message

    with pytest.raises(ProtocolError) as err:
        parse_client_message(raw, 1_000_000)
    assert err.value.code == code


def test_the_parser_keeps_real_text():
    from server.protocol import Caption, parse_client_message

    msg = parse_client_message('{"type":"caption","id":"\\ud83d\\ude00","text":"caf\\u00e9 \\ud83d\\udc4b"}', 1000)
    assert isinstance(msg, Caption) and msg.id == "😀" and msg.text == "café 👋"
