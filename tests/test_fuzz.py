"""Fuzzing the live server: a seeded generator of malformed messages, offers and first messages, sent
to the real aiohttp app on a loopback port (as tests/test_server_live.py runs it).

What must hold, for every class of issue 14 (bad JSON, decode failures, >4,300-digit integers, deep
nesting, lone surrogates and NULs, wrong types, unknown types, oversized messages, malformed first
messages, malformed /offer bodies): every reply is a message of the protocol's schemas, every error
names a stable code (the one its class expects), the connection and the server go on, /offer never
answers 500, and the server logs no exception and counts no internal_error. About 11,000 messages a
run, seeded (FUZZ_SEED) so a failure replays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import string
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType

from server.protocol import ERROR_CODES, SERVER_SCHEMAS, schema_errors
from tests.test_server_live import live_server

SEED = int(os.environ.get("FUZZ_SEED", "14"))
MAX_BYTES = 8192  # limits.max_message_bytes for the run: oversized messages stay cheap
PER_CONNECTION = 500  # malformed messages per /ws connection (then a fresh one)
ROUNDS = 20  # connections → 10,000 malformed messages in lockstep


def _surrogate(rng: random.Random) -> str:
    return rng.choice(["\\ud800", "\\udfff", "\\udc00x", "a\\ud83d", "\\ud83d\\u0041"])


def _word(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, n)))


# Each class: (name, make(rng) -> raw message, the codes it may be answered with).
Case = tuple[str, Callable[[random.Random], str | bytes], set[str]]


def _cases() -> list[Case]:
    cases: list[Case] = [
        ("truncated_json", lambda r: '{"type":"caption","id":"a","text":"' + _word(r)[: r.randint(0, 5)], {"bad_json"}),
        ("garbage_text", lambda r: "".join(r.choice(string.printable) for _ in range(r.randint(1, 60))) + "{",
         {"bad_json"}),
        ("not_an_object", lambda r: r.choice(["[]", "1", '"hello"', "null", "true", "[1,2,3]", "-0.5e3"]),
         {"bad_json"}),
        ("huge_int", lambda r: '{"type":"caption","id":"a","text":"x","final":' + "9" * r.randint(4301, 6000) + "}",
         {"bad_json"}),
        ("huge_int_first", lambda r: "9" * r.randint(4301, 7000), {"bad_json"}),
        ("deep_nesting", lambda r: "[" * r.randint(2000, MAX_BYTES - 10), {"bad_json"}),
        ("deep_object", lambda r: '{"a":' * r.randint(800, 1300) + "1" + "}" * 700, {"bad_json"}),
        ("nan", lambda r: '{"type":"caption","id":"a","text":"x","final":' + r.choice(["NaN", "Infinity", "-Infinity"])
         + "}", {"bad_field"}),
        ("surrogate_id", lambda r: '{"type":"caption","id":"' + _surrogate(r) + '","text":"hi"}', {"bad_text"}),
        ("surrogate_text", lambda r: '{"type":"caption","id":"a","text":"hi ' + _surrogate(r) + ' x"}', {"bad_text"}),
        ("surrogate_language", lambda r: '{"type":"config","language":"as' + _surrogate(r) + '"}', {"bad_text"}),
        ("surrogate_type", lambda r: '{"type":"cap' + _surrogate(r) + '"}', {"unknown_type"}),
        ("nul_text", lambda r: '{"type":"caption","id":"a","text":"hi\\u0000"}', {"bad_text"}),
        ("wrong_types", lambda r: json.dumps({"type": "caption", "id": r.choice([1, None, [], {}, True, ""]),
                                              "text": r.choice([2, None, [], {"a": 1}, False])}), {"bad_field"}),
        ("missing_fields", lambda r: json.dumps({"type": "caption", **r.choice([{}, {"id": "a"}, {"text": "x"}])}),
         {"bad_field"}),
        ("bad_enum", lambda r: json.dumps({"type": "config", "format": r.choice(["xml", "", 3, None])}), {"bad_field"}),
        ("unknown_type", lambda r: json.dumps({"type": _word(r) + "_x"}), {"unknown_type"}),
        ("type_not_string", lambda r: json.dumps({"type": r.choice([1, None, [], {}, 2.5])}), {"bad_field"}),
        ("oversized", lambda r: '{"type":"caption","id":"a","text":"' + "x" * r.randint(MAX_BYTES, 3 * MAX_BYTES) + '"}',
         {"message_too_large"}),
        ("bad_utf8", lambda r: bytes([r.choice([0x80, 0xC0, 0xFF, 0xED])]) + b'{"type":"ping"}' + bytes([0xA0, 0x80]),
         {"bad_utf8"}),
        ("binary_garbage", lambda r: bytes(r.getrandbits(8) for _ in range(r.randint(1, 64))),
         {"bad_utf8", "bad_json"}),
        ("long_language", lambda r: json.dumps({"type": "config", "language": "x" * r.randint(17, 99)}),
         {"bad_field"}),
        ("unknown_language", lambda r: json.dumps({"type": "config", "language": "zz" + _word(r, 4).lower()}),
         {"unknown_language"}),
        ("caption_too_long", lambda r: json.dumps({"type": "caption", "id": "a", "text": "a" * r.randint(2001, 3000)}),
         {"caption_too_long"}),
        ("hello_channel_later", lambda r: json.dumps({"type": "hello", "channel": _word(r)}), {"bad_field"}),
    ]
    return cases


def _mutate(rng: random.Random, text: str) -> str:
    """A valid message with a few characters flipped, dropped or doubled."""
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice('{}[]",:\\ 0a\x7f')
        elif op < 0.7:
            del chars[i]
        else:
            chars.insert(i, chars[i])
        if not chars:
            chars = ["{"]
    return "".join(chars)


def _check_reply(msg: dict[str, Any], expected: set[str] | None) -> None:
    kind = msg.get("type")
    assert kind in SERVER_SCHEMAS, msg
    assert schema_errors(SERVER_SCHEMAS[kind], msg) == [], msg
    if kind == "error":
        assert msg["code"] in ERROR_CODES and msg["code"] != "internal_error", msg
        if expected is not None:
            assert msg["code"] in expected, msg


async def _next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type == WSMsgType.TEXT, (msg.type, msg.data, msg.extra)  # not closed, not 1006/1011
        data = json.loads(msg.data)
        if data.get("type") != "pose":
            return data


async def _ws_round(http: aiohttp.ClientSession, url: str, rng: random.Random, cases: list[Case]) -> int:
    """One connection: hello, then malformed messages in lockstep; each must get its coded error."""
    ws = await http.ws_connect(url + "/ws", max_msg_size=0)
    await ws.send_str(json.dumps({"type": "hello", "idle_frames": False}))
    _check_reply(await _next_json(ws), None)
    sent = 0
    valid = ['{"type":"ping"}', '{"type":"flush"}', '{"type":"config","format":"json"}',
             '{"type":"caption","id":"m","text":"hi there","final":false}']
    for _ in range(PER_CONNECTION):
        if rng.random() < 0.15:  # a mutated valid message: whatever it is (maybe still valid), replies are coded
            await ws.send_str(_mutate(rng, rng.choice(valid)))
            await ws.send_str('{"type":"ping"}')  # a barrier: everything owed comes before its pong
            while (reply := await _next_json(ws))["type"] != "pong":
                _check_reply(reply, None)
        else:
            name, make, expected = rng.choice(cases)
            raw = make(rng)
            if isinstance(raw, bytes):
                await ws.send_bytes(raw)
            else:
                await ws.send_str(raw)
            reply = await _next_json(ws)
            while reply.get("type") in ("unit", "unit_status", "pong"):  # owed to an earlier mutated caption/ping
                reply = await _next_json(ws)
            assert reply.get("type") == "error", (name, reply)
            _check_reply(reply, expected)
        sent += 1
    # The session went on through all of it.
    await ws.send_str('{"type":"ping"}')
    while (await _next_json(ws))["type"] != "pong":
        pass
    await ws.close()
    return sent


async def _first_messages(http: aiohttp.ClientSession, url: str, rng: random.Random, cases: list[Case], n: int) -> int:
    """Malformed *first* messages, each on a fresh connection: a coded error, never an unhandled close."""
    cases = [c for c in cases if c[0] != "hello_channel_later"]  # a valid first message (it joins a channel)
    for _ in range(n):
        name, make, expected = rng.choice(cases)
        ws = await http.ws_connect(url + "/ws", max_msg_size=0)
        raw = make(rng)
        if isinstance(raw, bytes):
            await ws.send_bytes(raw)
        else:
            await ws.send_str(raw)
        reply = await _next_json(ws)
        assert reply["type"] == "error", (name, reply)
        _check_reply(reply, expected | {"hello_required"})
        await ws.close()
    return n


def _offer_bodies(rng: random.Random) -> list[tuple[str, bytes]]:
    video_less = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    bodies = [
        ("deep", ("[" * 8000).encode()),
        ("deep_object", ('{"a":' * 1400 + "1" + "}" * 1000).encode()),
        ("too_large", ("[" * 20000).encode()),
        ("huge_int", ('{"type":"offer","sdp":"x","idle_frames":' + "9" * 5000 + "}").encode()),
        ("not_json", b"{oops"),
        ("not_utf8", b'{"type":"offer","sdp":"\xff\xfe"}'),
        ("array", b"[]"),
        ("no_video", json.dumps({"type": "offer", "sdp": video_less}).encode()),
        ("garbage_sdp", json.dumps({"type": "offer", "sdp": "hello"}).encode()),
        ("surrogate_sdp", b'{"type":"offer","sdp":"v=0\\ud800"}'),
        ("surrogate_channel", b'{"type":"offer","sdp":"v=0","channel":"\\udc00"}'),
        ("bad_background", json.dumps({"type": "offer", "sdp": "v=0", "background": "#zzzzzz"}).encode()),
        ("wrong_type", json.dumps({"type": "answer", "sdp": "v=0"}).encode()),
    ]
    for _ in range(40):
        bodies.append(("mutated", _mutate(rng, json.dumps({"type": "offer", "sdp": video_less})).encode()))
    return bodies


async def _offers(http: aiohttp.ClientSession, url: str, rng: random.Random) -> int:
    n = 0
    for name, body in _offer_bodies(rng):
        async with http.post(url + "/offer", data=body, headers={"Content-Type": "application/json"}) as r:
            assert 400 <= r.status < 500, (name, r.status, await r.text())
            reply = await r.json()
            _check_reply(reply, None)
            assert "Error" not in reply["message"] and "Traceback" not in reply["message"], (name, reply)
        n += 1
    return n


def test_fuzz_every_reply_is_coded_and_nothing_crashes(caplog):
    rng = random.Random(SEED)
    cases = _cases()

    async def main() -> dict[str, int]:
        async with live_server(limits__message_rate=1e6, limits__message_burst=1_000_000,
                               limits__max_message_bytes=MAX_BYTES, limits__max_caption_chars=2000) as (url, server), \
                aiohttp.ClientSession() as http:
            counts = {"ws": 0, "first": 0, "offer": 0}
            for _ in range(ROUNDS):
                counts["ws"] += await _ws_round(http, url, rng, cases)
            counts["first"] = await _first_messages(http, url, rng, cases, 300)
            counts["offer"] = await _offers(http, url, rng)
            async with http.get(url + "/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with http.get(url + "/metrics") as r:
                metrics = await r.text()
            assert 'signstream_errors_total{code="internal_error"}' not in metrics
            return counts

    with caplog.at_level(logging.ERROR):
        counts = asyncio.run(asyncio.wait_for(main(), 120))
    assert counts["ws"] + counts["first"] >= 10_000, counts
    crashes = [r for r in caplog.records
               if r.levelno >= logging.ERROR and r.name.startswith(("server", "engines", "aiohttp"))]
    assert crashes == [], [r.getMessage() for r in crashes][:5]


@pytest.mark.parametrize("raw", ["9" * 5000, "[" * 5000, '{"type":"hello","language":"\\ud800"}'])
def test_a_bad_first_message_is_answered_not_dropped(raw):
    async def main():
        async with live_server(limits__max_message_bytes=MAX_BYTES) as (url, _), aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url + "/ws")
            await ws.send_str(raw)
            reply = await _next_json(ws)
            assert reply["type"] == "error" and reply["code"] in ("bad_json", "bad_text"), reply
            await ws.send_str('{"type":"hello","idle_frames":false}')
            assert (await _next_json(ws))["type"] == "ready"  # the session goes on
            await ws.close()
    asyncio.run(asyncio.wait_for(main(), 60))
