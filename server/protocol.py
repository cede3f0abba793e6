"""The live protocol: message types, their JSON schemas, parsing, validation, error codes, encoding.

One definition of each message: its JSON schema below. The parser validates client messages
against these schemas (a small validator for the subset we use), docs/protocol.md prints them,
and the tests check server output against them. Transports (WebSocket today, the WebRTC data
channel later) only move bytes; everything about the messages lives here.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engines.skeleton import NUM_JOINTS

VERSION = 1
Format = Literal["json", "binary"]

# Stable error codes → what they mean. Clients react to the code; the message is for people.
ERROR_CODES: dict[str, str] = {
    "bad_json": "the message is not valid JSON, or not a JSON object",
    "bad_utf8": "the message is not valid UTF-8",
    "message_too_large": "the message is larger than limits.max_message_bytes",
    "unknown_type": "the message's type is not one this server knows",
    "bad_field": "a field is missing, has the wrong type, or is out of range",
    "hello_required": "the first message of a session must be hello",
    "unknown_language": "the server signs no such language",
    "caption_too_long": "caption text is longer than limits.max_caption_chars",
    "rate_limited": "the session sends messages faster than limits.message_rate allows",
    "unauthorized": "a token is required and the one given is missing or wrong",
    "origin_not_allowed": "the page's Origin is not in limits.allowed_origins",
    "too_many_sessions": "the server holds limits.max_sessions sessions already",
    "idle_timeout": "nothing was received or signed for limits.idle_timeout_s",
    "shutting_down": "the server is shutting down and takes no new captions",
    "not_implemented": "this endpoint exists but is not implemented yet",
    "internal_error": "the server failed; the session goes on",
}

_STR_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_LANG = {"type": "string", "minLength": 2, "maxLength": 16, "description": "ISO 639-3 sign language code, e.g. ase, gsg"}

CLIENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "hello": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"const": "hello"},
            "language": _LANG,
            "format": {"enum": ["json", "binary"], "description": "how pose frames travel (default json)"},
            "idle_frames": {"type": "boolean", "description": "send rest-pose frames when idle (default true)"},
            "token": {"type": "string", "maxLength": 512, "description": "bearer token when the server needs one"},
            "channel": {"type": "string", "minLength": 1, "maxLength": 64,
                        "description": "join this channel: one caption stream and one render shared by its clients (default: a private session); on /ws only in the first message"},
            "background": {"type": "string", "minLength": 6, "maxLength": 7,
                           "description": "/offer only: video background #RRGGBB, e.g. a chroma key (default video.background; a channel keeps its first viewer's)"},
        },
    },
    "caption": {
        "type": "object",
        "required": ["type", "id", "text"],
        "properties": {
            "type": {"const": "caption"},
            "id": {**_STR_ID, "description": "caption line id: partials, the final and corrections of one line share it"},
            "text": {"type": "string", "description": "the whole text of the line so far"},
            "final": {"type": "boolean", "description": "the line is complete (default false)"},
            "language": _LANG,
        },
    },
    "flush": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"const": "flush"}},
        "description": "commit every uncommitted word now, as if each open line were final",
    },
    "config": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"const": "config"},
            "language": _LANG,
            "format": {"enum": ["json", "binary"]},
            "idle_frames": {"type": "boolean"},
        },
    },
    "ping": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"const": "ping"}},
        "description": "keeps a watching-only session from the idle timeout; answered by pong",
    },
}

_SEGMENT = {
    "type": "object",
    "required": ["word", "path", "kind", "gloss", "reason", "frames"],
    "properties": {
        "word": {"type": "string"},
        "path": {"enum": ["signllm", "lexicon", "text"]},
        "kind": {"enum": ["sign", "fingerspelling", "text"]},
        "gloss": {"type": "string"},
        "reason": {"type": "string"},
        "frames": {"type": "integer", "minimum": 0},
    },
}
_UNIT_ID = {"type": "integer", "minimum": 1, "description": "unit id, unique in the session"}
_FRAME_KINDS = ["rest", "transition", "sign", "fingerspelling"]

SERVER_SCHEMAS: dict[str, dict[str, Any]] = {
    "ready": {
        "type": "object",
        "required": ["type", "version", "session", "language", "languages", "fps", "format", "joints"],
        "properties": {
            "type": {"const": "ready"},
            "version": {"type": "integer"},
            "session": {"type": "integer"},
            "language": {"type": "string"},
            "languages": {"type": "array", "items": {"type": "string"}},
            "fps": {"type": "number"},
            "format": {"enum": ["json", "binary"]},
            "joints": {"type": "integer"},
        },
    },
    "unit": {
        "type": "object",
        "required": ["type", "unit", "caption", "text", "language", "segments"],
        "properties": {
            "type": {"const": "unit"},
            "unit": _UNIT_ID,
            "caption": {"type": "string"},
            "text": {"type": "string"},
            "language": {"type": "string"},
            "segments": {"type": "array", "items": _SEGMENT},
        },
    },
    "pose": {
        "type": "object",
        "required": ["type", "unit", "segment", "frame", "t", "kind", "points", "confidence"],
        "description": "binary form: see 'Binary pose frames'",
        "properties": {
            "type": {"const": "pose"},
            "unit": {"type": "integer", "minimum": 0, "description": "0 = no unit (rest pose)"},
            "segment": {"type": "integer", "minimum": -1, "description": "-1 = between segments"},
            "frame": {"type": "integer", "minimum": 0, "description": "index in the session's stream"},
            "t": {"type": "number", "description": "stream time in seconds = frame / fps"},
            "kind": {"enum": _FRAME_KINDS},
            "points": {"type": "array", "minItems": NUM_JOINTS, "maxItems": NUM_JOINTS,
                       "items": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}}},
            "confidence": {"type": "array", "minItems": NUM_JOINTS, "maxItems": NUM_JOINTS, "items": {"type": "number"}},
        },
    },
    "unit_status": {
        "type": "object",
        "required": ["type", "unit", "caption", "status", "reason", "frames", "segments"],
        "properties": {
            "type": {"const": "unit_status"},
            "unit": _UNIT_ID,
            "caption": {"type": "string"},
            "status": {"enum": ["signed", "fingerspelled", "shown_as_text", "cancelled", "failed"]},
            "reason": {"type": "string"},
            "frames": {"type": "integer", "minimum": 0, "description": "frames the engine produced for it"},
            "segments": {"type": "array", "items": _SEGMENT},
        },
    },
    "error": {
        "type": "object",
        "required": ["type", "code", "message"],
        "properties": {
            "type": {"const": "error"},
            "code": {"enum": sorted(ERROR_CODES)},
            "message": {"type": "string"},
        },
    },
    "closing": {
        "type": "object",
        "required": ["type", "reason", "grace_s"],
        "properties": {
            "type": {"const": "closing"},
            "reason": {"type": "string"},
            "grace_s": {"type": "number", "description": "units in flight finish within this, or are reported failed"},
        },
    },
    "pong": {"type": "object", "required": ["type"], "properties": {"type": {"const": "pong"}}},
}


class ProtocolError(Exception):
    """A client message or request that breaks the protocol; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


# --- schema validation (the subset of JSON Schema the schemas above use) -----------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,), "null": (type(None),),
}


def schema_errors(schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """What is wrong with `value` under `schema`, as 'field: problem' lines (empty: valid)."""
    name = where or "message"
    if "const" in schema and value != schema["const"]:
        return [f"{name}: must be {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{name}: must be one of {', '.join(map(str, schema['enum']))}"]
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
        if kind == "number" and ok and not math.isfinite(value):
            ok = False
        if not ok:
            return [f"{name}: must be {'a finite number' if kind == 'number' else 'a' + ('n' if kind[0] in 'aeiou' else '') + ' ' + kind}"]
    errors: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{name}: must have at least {schema['minLength']} characters")
        if len(value) > schema.get("maxLength", math.inf):
            errors.append(f"{name}: must have at most {schema['maxLength']} characters")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", -math.inf):
            errors.append(f"{name}: must be at least {schema['minimum']}")
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
            errors.append(f"{name}: wrong number of items ({len(value)})")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(schema["items"], item, f"{name}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where + '.' if where else ''}{key}: missing")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += schema_errors(sub, value[key], f"{where + '.' if where else ''}{key}")
    return errors


# --- client messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    language: str | None = None
    format: Format = "json"
    idle_frames: bool = True
    token: str | None = None
    channel: str | None = None  # used by the transports (server/channels.py), not by the session
    background: str | None = None


@dataclass(frozen=True)
class Caption:
    id: str
    text: str
    final: bool = False
    language: str | None = None


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class ConfigChange:
    language: str | None = None
    format: Format | None = None
    idle_frames: bool | None = None


@dataclass(frozen=True)
class Ping:
    pass


ClientMessage = Hello | Caption | Flush | ConfigChange | Ping
_CLASSES: dict[str, type] = {"hello": Hello, "caption": Caption, "flush": Flush, "config": ConfigChange, "ping": Ping}


def parse_client_message(raw: str | bytes, max_bytes: int) -> ClientMessage:
    """Bytes or text off the wire → a typed message, or ProtocolError with a stable code.

    Unknown fields are ignored (a newer client may send more); known fields must match the schema.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError("message_too_large", f"message of {size} bytes; the limit is {max_bytes}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bad_utf8", f"not UTF-8 at byte {exc.start}") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}"[:200]) from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", f"a message is a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_field", "type: missing or not a string")
    schema = CLIENT_SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r} (known: {', '.join(CLIENT_SCHEMAS)})")
    errors = schema_errors(schema, data)
    if errors:
        raise ProtocolError("bad_field", f"{kind}: " + "; ".join(errors[:5]))
    cls = _CLASSES[kind]
    args = {k: v for k, v in data.items() if k in schema["properties"] and k != "type"}
    try:
        return cls(**args)
    except TypeError as exc:  # pragma: no cover - the schema and the dataclass disagree
        raise ProtocolError("bad_field", str(exc)) from None


# --- server messages --------------------------------------------------------------------------

@dataclass
class PoseFrame:
    """One output frame of a session's stream, in canonical space."""

    unit: int
    segment: int
    frame: int
    t: float
    kind: str  # one of _FRAME_KINDS
    points: np.ndarray  # (50, 3)
    confidence: np.ndarray  # (50,)


@dataclass
class Message:
    """Any other server message: its type and its fields, as the schema says."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


ServerMessage = PoseFrame | Message


def error_message(code: str, message: str) -> Message:
    assert code in ERROR_CODES, code
    return Message("error", {"code": code, "message": message})


# Binary pose frame: little-endian header, then float16 (joints, 4) = x, y, z, confidence.
MAGIC = b"SSPF"
HEADER = struct.Struct("<4sBBhIIdHH")  # magic, version, kind, segment, unit, frame, t, joints, channels
_KIND_CODES = {k: i for i, k in enumerate(_FRAME_KINDS)}


def encode(msg: ServerMessage, fmt: Format) -> str | bytes:
    """A server message as it goes on the wire: JSON text, or binary for pose frames in binary format."""
    if isinstance(msg, PoseFrame):
        if fmt == "binary":
            body = np.concatenate([msg.points, msg.confidence[:, None]], axis=1).astype("<f2")
            head = HEADER.pack(MAGIC, VERSION, _KIND_CODES[msg.kind], msg.segment, msg.unit, msg.frame, msg.t,
                               len(body), body.shape[1])
            return head + body.tobytes()
        return json.dumps({"type": "pose", "unit": msg.unit, "segment": msg.segment, "frame": msg.frame,
                           "t": round(msg.t, 4), "kind": msg.kind,
                           "points": np.round(msg.points.astype(np.float64), 4).tolist(),
                           "confidence": np.round(msg.confidence.astype(np.float64), 3).tolist()},
                          separators=(",", ":"))
    return json.dumps({"type": msg.type, **msg.fields}, separators=(",", ":"), ensure_ascii=False)


def decode_binary_pose(data: bytes) -> PoseFrame:
    """The inverse of encode(frame, 'binary'), for clients and tests."""
    if len(data) < HEADER.size:
        raise ValueError(f"binary pose frame of {len(data)} bytes is shorter than its header")
    magic, version, kind, segment, unit, frame, t, joints, channels = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a version {VERSION} pose frame (magic {magic!r}, version {version})")
    body = np.frombuffer(data, dtype="<f2", offset=HEADER.size).astype(np.float32)
    if body.size != joints * channels or channels != 4:
        raise ValueError(f"body holds {body.size} values, header says {joints}×{channels}")
    body = body.reshape(joints, channels)
    return PoseFrame(unit, segment, frame, t, _FRAME_KINDS[kind], body[:, :3], body[:, 3])
