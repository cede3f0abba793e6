"""What travels on the bus: a channel's server messages out of its owner, clients' messages into it.

Each bus message is one kind byte and its body:

  on a channel's out topic (owner → every process with viewers)
    P  a pose frame, lossless (float32), so a remote viewer's frame encodes to the owner's bytes
    R  a rotation frame as its two wire forms (binary, JSON): encoded once by the owner, written
       as they are by every process (server/rotation_stream.py: send_now)
    M  any other server message (unit, unit_status, error, ...): its JSON
    S  the owner's `ready` fields (every beat, for viewers that join anywhere), its ownership (process
       and a token of this taking of the lease) and, per
       process, the last of its clients' messages the owner has handled (their acknowledgement)
    E  the owner's session ended: the close code
  on a channel's in topic (every process → owner)
    C  a client's raw message, with the process and member it came from (replies go back to them)
       and the process's sequence number (acknowledged in S; a new owner is sent the unacknowledged)
    D  a process's demand: it has viewers of the channel, wanting pose and/or rotation frames
  on a process's own topic (owner → that process)
    A  a reply (ready, error, pong) to one of its members' messages
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.protocol import Message, PoseFrame, RotationFrame, decode_binary_rotations, encode

_POSE = struct.Struct("<IhIdH")  # unit, segment, frame, t, face values; then the kind, then float32 data
_LEN = struct.Struct("<I")
_JOINTS = 50


def pose(frame: PoseFrame) -> bytes:
    face = frame.face if frame.face is not None else np.zeros(0, np.float32)
    kind = frame.kind.encode()
    return (b"P" + _POSE.pack(frame.unit, frame.segment, frame.frame, frame.t, len(face)) + bytes([len(kind)]) + kind
            + np.asarray(frame.points, "<f4").tobytes() + np.asarray(frame.confidence, "<f4").tobytes()
            + np.asarray(face, "<f4").tobytes())


def rotations(frame: RotationFrame) -> bytes:
    binary = frame.wire("binary")
    text = frame.wire("json")
    assert isinstance(binary, bytes) and isinstance(text, str)
    return b"R" + _LEN.pack(len(binary)) + binary + text.encode()


def message(msg: Message) -> bytes:
    text = encode(msg, "json")
    assert isinstance(text, str)
    return b"M" + text.encode()


def state(fields: dict[str, Any], owner: str, acks: dict[str, int]) -> bytes:
    return b"S" + json.dumps({"ready": fields, "owner": owner, "acks": acks}).encode()


def ended(code: int) -> bytes:
    return b"E" + str(code).encode()


def client(process: str, member: int, raw: str | bytes, seq: int) -> bytes:
    head = json.dumps({"p": process, "k": member, "b": isinstance(raw, bytes), "s": seq}).encode()
    return b"C" + head + b"\n" + (raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))


def demand(process: str, poses: bool, rotations: bool) -> bytes:
    return b"D" + json.dumps({"p": process, "poses": poses, "rotations": rotations}).encode()


def reply(channel: str, member: int, msg: Message) -> bytes:
    return b"A" + json.dumps({"c": channel, "k": member}).encode() + b"\n" + message(msg)[1:]


@dataclass
class ClientMessage:
    process: str
    member: int
    raw: str | bytes
    seq: int


@dataclass
class Demand:
    process: str
    poses: bool
    rotations: bool


@dataclass
class Reply:
    channel: str
    member: int
    msg: Message


@dataclass
class State:
    fields: dict[str, Any]  # the owner's ready fields
    owner: str  # process#token: a process that takes a channel again is a new owner
    acks: dict[str, int]


@dataclass
class Ended:
    code: int


Decoded = PoseFrame | RotationFrame | Message | State | Ended | ClientMessage | Demand | Reply


def decode(data: bytes) -> Decoded:
    kind, body = data[:1], data[1:]
    if kind == b"P":
        unit, segment, frame, t, n_face = _POSE.unpack_from(body)
        at = _POSE.size
        n_kind = body[at]
        kind_name = body[at + 1:at + 1 + n_kind].decode()
        values = np.frombuffer(body, "<f4", offset=at + 1 + n_kind)
        points = values[:_JOINTS * 3].reshape(_JOINTS, 3).copy()
        confidence = values[_JOINTS * 3:_JOINTS * 4].copy()
        face = values[_JOINTS * 4:].copy() if n_face else None
        return PoseFrame(unit, segment, frame, t, kind_name, points, confidence, face)
    if kind == b"R":
        (n,) = _LEN.unpack_from(body)
        binary = body[_LEN.size:_LEN.size + n]
        frame = decode_binary_rotations(binary)
        frame._wire.update({"binary": binary, "json": body[_LEN.size + n:].decode()})  # the owner's bytes, as they are
        return frame
    if kind == b"M":
        fields = json.loads(body)
        return Message(fields.pop("type"), fields)
    if kind == b"S":
        s = json.loads(body)
        return State(s["ready"], s["owner"], s["acks"])
    if kind == b"E":
        return Ended(int(body))
    if kind == b"C":
        head, _, raw = body.partition(b"\n")
        h = json.loads(head)
        return ClientMessage(h["p"], h["k"], raw if h["b"] else raw.decode("utf-8", "surrogatepass"), h["s"])
    if kind == b"D":
        d = json.loads(body)
        return Demand(d["p"], d["poses"], d["rotations"])
    if kind == b"A":
        head, _, rest = body.partition(b"\n")
        h = json.loads(head)
        fields = json.loads(rest)
        return Reply(h["c"], h["k"], Message(fields.pop("type"), fields))
    raise ValueError(f"unknown bus message kind {kind!r}")
