"""The message parser (every bad-input class, fuzzed with hypothesis), binary pose frames, and the
schemas printed in docs/protocol.md."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from server.protocol import (
    CLIENT_SCHEMAS,
    ERROR_CODES,
    SERVER_SCHEMAS,
    Caption,
    Hello,
    PoseFrame,
    ProtocolError,
    decode_binary_pose,
    encode,
    parse_client_message,
    schema_errors,
)

LIMIT = 4096


def _code(raw) -> str:
    with pytest.raises(ProtocolError) as exc:
        parse_client_message(raw, LIMIT)
    return exc.value.code


def test_valid_messages_parse_to_typed_messages_and_unknown_fields_are_ignored():
    assert parse_client_message('{"type":"hello","language":"gsg","format":"binary","x":1}', LIMIT) == \
        Hello(language="gsg", format="binary")
    assert parse_client_message(b'{"type":"caption","id":"c1","text":"Hi","final":true}', LIMIT) == \
        Caption("c1", "Hi", True)


@pytest.mark.parametrize("raw, code", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('"caption"', "bad_json"),
    ("[" * 100000 + "]" * 100000, "message_too_large"),
    (b"\xff\xfe\x00junk", "bad_utf8"),
    (b'{"type":"caption","id":"c","text":"\xc3\x28"}', "bad_utf8"),
    ('{"type":"dance"}', "unknown_type"),
    ('{"text":"no type"}', "bad_field"),
    ('{"type":7}', "bad_field"),
    ('{"type":"caption","id":"c1"}', "bad_field"),
    ('{"type":"caption","id":5,"text":"x"}', "bad_field"),
    ('{"type":"caption","id":"c","text":"x","final":"yes"}', "bad_field"),
    ('{"type":"caption","id":"","text":"x"}', "bad_field"),
    ('{"type":"hello","format":"xml"}', "bad_field"),
    ('{"type":"hello","language":1}', "bad_field"),
    ("x" * (LIMIT + 1), "message_too_large"),
])
def test_each_bad_input_class_has_its_stable_code(raw, code):
    assert _code(raw) == code


def test_deep_nesting_within_the_size_limit_is_bad_json_not_a_crash():
    assert _code("[" * 2000 + "]" * 2000) in ("bad_json",)
    deep = '{"type":"caption","id":"c","text":' + "[" * 1500 + "]" * 1500 + "}"
    assert _code(deep) in ("bad_json", "bad_field")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_messages = st.fixed_dictionaries({"type": st.sampled_from([*CLIENT_SCHEMAS, "junk"]) | st.text(max_size=5)},
                                  optional={k: _json for k in ("id", "text", "final", "language", "format", "token",
                                                                "idle_frames")})


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), _messages.map(json.dumps),
                 _messages.map(lambda m: json.dumps(m).encode())))
def test_fuzz_the_parser_only_ever_returns_a_message_or_a_protocol_error(raw):
    try:
        msg = parse_client_message(raw, LIMIT)
    except ProtocolError as exc:
        assert exc.code in ERROR_CODES and exc.message
        return
    assert type(msg).__name__ in ("Hello", "Caption", "Flush", "ConfigChange", "Ping")
    if isinstance(msg, Caption):
        assert isinstance(msg.text, str) and isinstance(msg.final, bool) and 1 <= len(msg.id) <= 64


def test_binary_pose_frames_round_trip_in_float16():
    rng = np.random.default_rng(0)
    frame = PoseFrame(7, 2, 123456, 4938.24, "fingerspelling", rng.normal(size=(50, 3)).astype(np.float32),
                      rng.uniform(size=50).astype(np.float32))
    data = encode(frame, "binary")
    assert isinstance(data, bytes) and len(data) == 28 + 50 * 4 * 2 and data[:4] == b"SSPF"
    back = decode_binary_pose(data)
    assert (back.unit, back.segment, back.frame, back.t, back.kind) == (7, 2, 123456, 4938.24, "fingerspelling")
    assert np.allclose(back.points, frame.points, atol=2e-3) and np.allclose(back.confidence, frame.confidence, atol=1e-3)
    as_json = json.loads(encode(frame, "json"))
    assert schema_errors(SERVER_SCHEMAS["pose"], as_json) == []
    with pytest.raises(ValueError):
        decode_binary_pose(data[:20])


def test_docs_print_every_schema_as_the_code_defines_it():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    printed = {}
    for name, body in re.findall(r"<!-- schema:(\S+) -->\s*```json\n(.*?)```", doc, re.S):
        printed[name] = json.loads(body)
    expected = {f"client.{k}": v for k, v in CLIENT_SCHEMAS.items()} | {f"server.{k}": v for k, v in SERVER_SCHEMAS.items()}
    assert printed == json.loads(json.dumps(expected))
    for code in ERROR_CODES:
        assert f"`{code}`" in doc
