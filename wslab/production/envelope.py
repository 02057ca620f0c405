"""The production protocol's frames: JSON text, one object per frame (lessons 04, 10).

====================  ===========================================================
frame                 meaning
====================  ===========================================================
``hello``             client → server, first frame: ``session`` (a string the
                      client keeps across reconnections), ``down_next`` (the
                      next server→client number it expects), ``token`` (when
                      the server requires one)
``auth``              client → server: ``token``, a fresh token before the
                      current one expires (no reconnection needed)
``welcome``           server → client, answer to hello: ``up_next`` (the next
                      client→server number the server expects) and ``missed``
                      (server messages that fell beyond the replay window while
                      the client was away: gone, and said so)
``msg``               either way: ``seq`` (int ≥ 0) and ``body`` (the message),
                      or ``bodies`` (a list of messages numbered ``seq``, ``seq + 1``...)
``ack``               either way: ``seq``, cumulative ("all up to seq arrived");
                      ``resend: true`` when the receiver saw a gap (go back now)
``error``             server → client: ``code`` and ``detail``; see below
====================  ===========================================================

Bad input never crashes the server. Each case gets an error frame (the
connection stays open) or a close code:

========================================  ==========================================
input                                     answer
========================================  ==========================================
not JSON, not an object                   error ``bad_json``
unknown ``t``                             error ``unknown_type``
missing or wrongly typed field            error ``bad_field`` (names the field)
binary frame                              error ``binary_not_supported``
first frame is not a ``hello``            close 1008 (policy violation)
missing, invalid or expired token         close 4401: get a new token, reconnect
(at hello, on ``auth``, or on expiry)
revoked session                           close 4403: do not retry
more live sessions than ``max_sessions``   close 1013 (try again later): load shed
frame larger than ``max_size``            close 1009 (message too big), by websockets
more unacknowledged messages than the     close 1008 "flow control violated": that
window allows (a flood)                   client is cut, the others keep their service
superseded by a newer connection of the   close 4001 "superseded"
same session
========================================  ==========================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SUPERSEDED = 4001
UNAUTHORIZED = 4401  # as HTTP 401: authenticate (again)
FORBIDDEN = 4403  # as HTTP 403: revoked, do not retry


class BadFrame(ValueError):
    """A frame that does not fit the protocol: ``code`` says which rule it broke."""

    def __init__(self, code: str, detail: str) -> None:
        self.code, self.detail = code, detail
        super().__init__(f"{code}: {detail}")


@dataclass(frozen=True)
class Envelope:
    """One decoded protocol frame: its ``type`` and validated ``fields``
    (:class:`wslab.frames.Frame` is the raw WebSocket frame the proxy sees)."""

    type: str
    fields: dict[str, Any]


_FIELDS: dict[str, dict[str, type]] = {
    "hello": {"session": str, "down_next": int},
    "auth": {"token": str},
    "welcome": {"up_next": int},
    "msg": {"seq": int, "body": str},
    "ack": {"seq": int},
    "error": {"code": str, "detail": str},
}


def encode(kind: str, **fields: Any) -> str:
    return json.dumps({"t": kind, **fields})


# What a "msg" frame adds around its bodies: {"t": "msg", "seq": N, "bodies": [...]}.
FRAME_OVERHEAD_BYTES = 64


def body_size(body: str) -> int:
    """Bytes ``body`` takes inside a frame, escaped as JSON (quotes included)."""
    return len(json.dumps(body).encode()) + 2  # the ", " between bodies


def fits(body: str, max_size_bytes: int) -> bool:
    """Whether ``body`` fits in one frame the peer accepts (``max_size``)."""
    return body_size(body) + FRAME_OVERHEAD_BYTES <= max_size_bytes


def decode(data: str | bytes) -> Envelope:
    """Parse and validate one frame, or raise :class:`BadFrame`."""
    if not isinstance(data, str):
        raise BadFrame("binary_not_supported", "send JSON as text frames")
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise BadFrame("bad_json", f"not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise BadFrame("bad_json", "a frame is a JSON object")
    kind = value.get("t")
    if kind not in _FIELDS:
        raise BadFrame("unknown_type", f"unknown frame type {kind!r}")
    if kind == "msg" and "bodies" in value:
        return _batch(value)
    fields = {}
    for name, expected in _FIELDS[kind].items():
        field = value.get(name)
        if not isinstance(field, expected) or isinstance(field, bool) or (
                expected is int and field < 0):
            raise BadFrame("bad_field", f"{kind}.{name} must be {'an int >= 0' if expected is int else 'a string'}")
        fields[name] = field
    if kind == "hello" and isinstance(value.get("token"), str):
        fields["token"] = value["token"]  # optional: required by servers that authenticate
    if kind == "welcome":
        missed = value.get("missed", 0)
        fields["missed"] = missed if isinstance(missed, int) and not isinstance(missed, bool) else 0
    if kind == "ack" and value.get("resend") is True:
        fields["resend"] = True  # optional: "I saw a gap, go back now"
    return Envelope(kind, fields)


MAX_BATCH = 1024


def _batch(value: dict) -> Envelope:
    seq, bodies = value.get("seq"), value.get("bodies")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadFrame("bad_field", "msg.seq must be an int >= 0")
    if (not isinstance(bodies, list) or not 1 <= len(bodies) <= MAX_BATCH
            or not all(isinstance(b, str) for b in bodies)):
        raise BadFrame("bad_field", f"msg.bodies must be a list of 1 to {MAX_BATCH} strings")
    return Envelope("msg", {"seq": seq, "bodies": bodies})
