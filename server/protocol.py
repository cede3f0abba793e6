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
from typing import Any, Literal, Protocol

import numpy as np

from engines.frame import PoseFrame  # a session's output frames, as the timeline gives them out
from engines.skeleton import NUM_JOINTS

VERSION = 1
Format = Literal["json", "binary"]
Frames = Literal["poses", "rotations", "none"]  # what a frame carries: keypoints, the avatar's bone rotations; none: no frames

# Stable error codes → what they mean. Clients react to the code; the message is for people.
ERROR_CODES: dict[str, str] = {
    "bad_json": "the message is not valid JSON, or not a JSON object",
    "bad_utf8": "the message is not valid UTF-8",
    "message_too_large": "the message is larger than limits.max_message_bytes",
    "unknown_type": "the message's type is not one this server knows",
    "bad_field": "a field is missing, has the wrong type, or is out of range",
    "bad_text": "a text field holds what is not text (a lone surrogate such as \\ud800, a NUL)",
    "hello_required": "the first message of a session must be hello",
    "unknown_language": "the server signs no such language",
    "caption_too_long": "caption text is longer than limits.max_caption_chars",
    "rate_limited": "the session sends messages faster than limits.message_rate allows",
    "unauthorized": "a token is required and the one given is missing or wrong",
    "origin_not_allowed": "the page's Origin is not in limits.allowed_origins",
    "too_many_sessions": "the server holds limits.max_sessions sessions already",
    "idle_timeout": "nothing was received or signed for limits.idle_timeout_s",
    "hello_timeout": "no hello within limits.hello_timeout_s of connecting",
    "slow_client": "the client does not read: its queued messages passed limits.outbox_bytes",
    "shutting_down": "the server is shutting down and takes no new captions",
    "not_implemented": "this endpoint exists but is not implemented yet",
    "internal_error": "the server failed; the session goes on",
    "cluster_unavailable": "the channel bus (cluster.redis) is unreachable: the channel's captions and frames wait for it",
    "no_video": "POST /sfu/offer: no one publishes this channel's video into Janus (is the channel open?)",
}

_STR_ID = {"type": "string", "minLength": 1, "maxLength": 64}
# The non-manual track, optional (older servers send none): values in engines/nonmanual.py CHANNELS order.
_FACE = {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 1},
         "description": "non-manual values: brow_raise, brow_furrow, blink, squint, head_nod, head_shake, head_tilt, "
                        "mouth_open, mouth_spread, mouth_round, breath, sway ([-1, 1] for head, breath, sway; else [0, 1])"}
_LANG = {"type": "string", "minLength": 2, "maxLength": 16, "description": "ISO 639-3 sign language code, e.g. ase, gsg"}

CLIENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "hello": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"const": "hello"},
            "language": _LANG,
            "format": {"enum": ["json", "binary"], "description": "how pose frames travel (default json)"},
            "frames": {"enum": ["poses", "rotations", "none"],
                       "description": "what each frame carries: the 50 keypoints (default), or the avatar's bone rotations for a page that draws the avatar (see 'Rotation frames'); none: no frames, only the messages (a caption feed, a page showing the video from elsewhere)"},
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
        "path": {"enum": ["notation", "signllm", "lexicon", "text"]},
        "kind": {"enum": ["sign", "fingerspelling", "text"]},
        "gloss": {"type": "string"},
        "reason": {"type": "string"},
        "frames": {"type": "integer", "minimum": 0},
    },
}
_UNIT_ID = {"type": "integer", "minimum": 1, "description": "unit id, unique in the session"}
_FRAME_KINDS = ["rest", "transition", "sign", "fingerspelling"]
# What a pose frame and a rotations frame both say about their place in the stream.
_FRAME_FIELDS: dict[str, Any] = {
    "unit": {"type": "integer", "minimum": 0, "description": "0 = no unit (rest pose)"},
    "segment": {"type": "integer", "minimum": -1, "description": "-1 = between segments"},
    "frame": {"type": "integer", "minimum": 0, "description": "index in the session's stream"},
    "t": {"type": "number", "description": "stream time in seconds = frame / fps"},
    "kind": {"enum": _FRAME_KINDS},
}

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
            "frames": {"enum": ["poses", "rotations", "none"], "description": "what this client's frames carry (absent: poses)"},
            "bones": {"type": "array", "items": {"type": "string"},
                      "description": "rotations only: VRM humanoid names, the order of every rotations frame"},
            "avatar": {
                "type": "object",
                "description": "rotations only: what the page needs to draw the same picture as the server",
                "required": ["url", "joints", "hips", "turn", "camera", "background"],
                "properties": {
                    "url": {"type": "string", "description": "the avatar's glTF (the server's own avatar)"},
                    "joints": {"type": "array", "items": {"type": "integer", "minimum": 0},
                               "description": "per bone of `bones`: its index in the glTF skin's joints"},
                    "hips": {"type": "integer", "minimum": -1, "description": "the hips' index in the skin's joints (-1: none)"},
                    "turn": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"},
                             "description": "quaternion x, y, z, w taking the file's axes to canonical ones (y up, facing +z)"},
                    "camera": {
                        "type": "object",
                        "required": ["position", "yfov", "znear", "zfar"],
                        "properties": {
                            "position": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}},
                            "yfov": {"type": "number", "description": "vertical field of view, radians; looking down -z"},
                            "znear": {"type": "number"},
                            "zfar": {"type": "number"},
                        },
                    },
                    "background": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"},
                                   "description": "the server's video background, linear RGB 0-1"},
                },
            },
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
            **_FRAME_FIELDS,
            "points": {"type": "array", "minItems": NUM_JOINTS, "maxItems": NUM_JOINTS,
                       "items": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}}},
            "confidence": {"type": "array", "minItems": NUM_JOINTS, "maxItems": NUM_JOINTS, "items": {"type": "number"}},
            "face": _FACE,
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
    "rotations": {
        "type": "object",
        "required": ["type", "unit", "segment", "frame", "t", "kind", "rotations", "root"],
        "description": "hello.frames = rotations; binary form: see 'Rotation frames'",
        "properties": {
            "type": {"const": "rotations"},
            **_FRAME_FIELDS,
            "rotations": {"type": "array", "description": "per bone of ready.bones: local rotation x, y, z, w",
                          "items": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}}},
            "root": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"},
                     "description": "the hips' displacement from their rest position, canonical axes, avatar units"},
            "face": _FACE,
        },
    },
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
    if isinstance(value, str) and not _is_text(value):
        return [f"{name}: {_NOT_TEXT}"]
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


_NOT_TEXT = "holds a lone surrogate or a NUL, not text"


def _is_text(value: str) -> bool:
    """No lone surrogates (json.loads makes them from escapes such as "\\ud800"; they cannot be
    encoded as UTF-8, so they would break every reply that echoes the field) and no NUL."""
    if value.isascii():
        return "\x00" not in value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


# --- client messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    language: str | None = None
    format: Format = "json"
    idle_frames: bool = True
    token: str | None = None
    frames: Frames = "poses"  # used by the transports (server/rotation_stream.py), not by the session
    channel: str | None = None  # used by the transports (server/transports/channels.py), not by the session
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
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}"[:200]) from None
    except RecursionError:
        raise ProtocolError("bad_json", "not valid JSON: nested too deeply") from None
    except Exception as exc:  # ValueError (an integer of over 4,300 digits), MemoryError...: still bad JSON
        raise ProtocolError("bad_json", f"not valid JSON ({type(exc).__name__})") from None
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
        code = "bad_text" if all(e.endswith(_NOT_TEXT) for e in errors) else "bad_field"
        raise ProtocolError(code, f"{kind}: " + "; ".join(errors[:5]))
    cls = _CLASSES[kind]
    args = {k: v for k, v in data.items() if k in schema["properties"] and k != "type"}
    try:
        return cls(**args)
    except TypeError as exc:  # pragma: no cover - the schema and the dataclass disagree
        raise ProtocolError("bad_field", str(exc)) from None


# --- server messages --------------------------------------------------------------------------

@dataclass
class Message:
    """Any other server message: its type and its fields, as the schema says."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class RotationFrame:
    """One output frame as the avatar's local bone rotations (after retargeting), for a page that
    draws the avatar. Encoded once per format however many clients get it (`wire` caches)."""

    unit: int
    segment: int
    frame: int
    t: float
    kind: str  # one of _FRAME_KINDS
    rotations: np.ndarray  # (B, 4) x, y, z, w per bone of the ready message's `bones`
    root: np.ndarray  # (3,) hips displacement from rest, canonical axes
    face: np.ndarray | None = None  # the non-manual track, as on PoseFrame
    _wire: dict[str, str | bytes] = field(default_factory=dict, repr=False, compare=False)

    def wire(self, fmt: Format) -> str | bytes:
        data = self._wire.get(fmt)
        if data is None:
            data = self._wire[fmt] = _encode_rotations(self, fmt)
        return data

    def ws_frame(self, fmt: Format) -> bytes:
        """The whole WebSocket frame (server to client: unmasked, uncompressed), the same bytes for
        every client, so a fan-out to N clients is N socket writes and nothing else."""
        key = f"ws-{fmt}"
        data = self._wire.get(key)
        if data is None:
            payload = self.wire(fmt)
            payload = payload.encode("utf-8") if isinstance(payload, str) else payload
            opcode = 0x82 if fmt == "binary" else 0x81  # FIN + binary / text
            n = len(payload)
            head = (struct.pack("!BB", opcode, n) if n < 126 else struct.pack("!BBH", opcode, 126, n) if n < 65536
                    else struct.pack("!BBQ", opcode, 127, n))
            data = self._wire[key] = head + payload
        assert isinstance(data, bytes)
        return data


ServerMessage = PoseFrame | RotationFrame | Message


class Outlet(Protocol):
    """Where a session's output goes: the one hand-off from a session to whatever carries it to
    clients (a /ws outbox, a channel's members, a WebRTC peer, a file being rendered)."""

    def put(self, msg: ServerMessage) -> None:
        """Every server message, frames included; never blocks."""

    def end(self, code: int) -> None:
        """The stream is over: flush what was put, then close with `code`."""


def error_message(code: str, message: str) -> Message:
    assert code in ERROR_CODES, code
    return Message("error", {"code": code, "message": message})


# Binary pose frame: little-endian header, then float16 (joints, 4) = x, y, z, confidence.
MAGIC = b"SSPF"
HEADER = struct.Struct("<4sBBhIIdHH")  # magic, version, kind, segment, unit, frame, t, joints, channels
_KIND_CODES = {k: i for i, k in enumerate(_FRAME_KINDS)}


def encode(msg: ServerMessage, fmt: Format) -> str | bytes:
    """A server message as it goes on the wire: JSON text, or binary for pose frames in binary format."""
    if isinstance(msg, RotationFrame):
        return msg.wire(fmt)
    if isinstance(msg, PoseFrame):
        if fmt == "binary":
            body = np.concatenate([msg.points, msg.confidence[:, None]], axis=1).astype("<f2")
            head = HEADER.pack(MAGIC, VERSION, _KIND_CODES[msg.kind], msg.segment, msg.unit, msg.frame, msg.t,
                               len(body), body.shape[1])
            return head + body.tobytes() + _face_trailer(msg.face)
        return json.dumps({"type": "pose", "unit": msg.unit, "segment": msg.segment, "frame": msg.frame,
                           "t": round(msg.t, 4), "kind": msg.kind,
                           "points": np.round(msg.points.astype(np.float64), 4).tolist(),
                           "confidence": np.round(msg.confidence.astype(np.float64), 3).tolist(),
                           **_face_json(msg.face)},
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
    face, body = _split_face(body, joints * channels)
    if body.size != joints * channels or channels != 4:
        raise ValueError(f"body holds {body.size} values, header says {joints}×{channels}")
    body = body.reshape(joints, channels)
    return PoseFrame(unit, segment, frame, t, _FRAME_KINDS[kind], body[:, :3], body[:, 3], face)


# The non-manual track (engines/nonmanual.py CHANNELS) rides after a binary frame's body as a
# trailer: float16 count N, then N float16 values. A frame without it is the older format.
def _face_trailer(face: np.ndarray | None) -> bytes:
    if face is None:
        return b""
    return np.concatenate([[len(face)], face]).astype("<f2").tobytes()


def _face_json(face: np.ndarray | None) -> dict[str, list[float]]:
    return {} if face is None else {"face": np.round(np.asarray(face, np.float64), 3).tolist()}


def _split_face(body: np.ndarray, size: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(face, body) from the float16 values after a header: the trailer, if there is one."""
    if body.size > size and body.size == size + 1 + int(body[size]):
        return body[size + 1:], body[:size]
    return None, body


# Binary rotation frame: the pose frame's header with magic SSRF and channels 4 (a quaternion a
# bone), then float16 (bones, 4) rotations and float16 (3,) root displacement.
ROTATIONS_MAGIC = b"SSRF"


def _encode_rotations(msg: RotationFrame, fmt: Format) -> str | bytes:
    if fmt == "binary":
        head = HEADER.pack(ROTATIONS_MAGIC, VERSION, _KIND_CODES[msg.kind], msg.segment, msg.unit, msg.frame, msg.t,
                           len(msg.rotations), 4)
        return (head + msg.rotations.astype("<f2").tobytes() + msg.root.astype("<f2").tobytes()
                + _face_trailer(msg.face))
    return json.dumps({"type": "rotations", "unit": msg.unit, "segment": msg.segment, "frame": msg.frame,
                       "t": round(msg.t, 4), "kind": msg.kind,
                       "rotations": np.round(msg.rotations.astype(np.float64), 4).tolist(),
                       "root": np.round(msg.root.astype(np.float64), 4).tolist(), **_face_json(msg.face)},
                      separators=(",", ":"))


def decode_binary_rotations(data: bytes) -> RotationFrame:
    """The inverse of encode(rotation frame, 'binary'), for clients and tests."""
    if len(data) < HEADER.size:
        raise ValueError(f"binary rotation frame of {len(data)} bytes is shorter than its header")
    magic, version, kind, segment, unit, frame, t, bones, channels = HEADER.unpack_from(data)
    if magic != ROTATIONS_MAGIC or version != VERSION or channels != 4:
        raise ValueError(f"not a version {VERSION} rotation frame (magic {magic!r}, version {version}, channels {channels})")
    body = np.frombuffer(data, dtype="<f2", offset=HEADER.size).astype(np.float32)
    face, body = _split_face(body, bones * 4 + 3)
    if body.size != bones * 4 + 3:
        raise ValueError(f"body holds {body.size} values, header says {bones} bones")
    return RotationFrame(unit, segment, frame, t, _FRAME_KINDS[kind], body[:-3].reshape(bones, 4), body[-3:], face)
