"""The production protocol's frames: JSON text, one object per frame (lessons 04, 09, 10).

====================  ===========================================================
frame                 meaning
====================  ===========================================================
``hello``             client → server, first frame: ``session`` (a string the
                      client keeps across reconnections: unguessable, and
                      owned by the token's subject that opened it),
                      ``down_next`` (the next server→client number it
                      expects), ``token`` (when the server requires one)
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

Bad input never crashes the server (no 1011, no exception out of the
handler). :func:`decode` applies its limits before anything is parsed, and
before the client has authenticated: the frame's length, its nesting depth
(counted on the raw text) and the size of its numbers (checked by
``json.loads``' own ``parse_int`` hook, before ``int()`` runs). Each case gets
an error frame (the connection stays open) or a close code:

========================================  ==========================================
input                                     answer
========================================  ==========================================
not JSON, not an object                   error ``bad_json``
longer than ``MAX_FRAME_CHARS``           error ``too_large`` (not parsed)
nested deeper than ``MAX_DEPTH``, or      error ``too_deep`` (not parsed)
more than ``MAX_BRACKETS`` brackets
outside strings
an integer beyond ±``MAX_INT`` (2**53)    error ``bad_number`` (not converted)
unknown ``t``                             error ``unknown_type``
missing or wrongly typed field            error ``bad_field`` (names the field)
binary frame                              error ``binary_not_supported``
more than ``max_bad_frames`` of the       close 1008 "too many bad frames": one
above on one connection                   client cannot make the server answer it
                                          forever while the others wait
first frame is not a ``hello`` (or any    close 1008 (policy violation)
frame above in its place)
a ``hello`` whose ``session`` is longer   close 1008: the session store keeps ids,
than ``max_session_id_chars``             so their length is bounded too
missing, invalid or expired token         close 4401: get a new token, reconnect
(at hello, on ``auth``, or on expiry)
revoked session                           close 4403: do not retry
a ``hello`` resuming a session that       close 4409 "session not yours": nothing
belongs to another subject (the token's   about that session is said (no
subject; servers that require tokens)     ``up_next``), its owner is not disturbed
more live sessions than ``max_sessions``  close 1013 (try again later): load shed
a new session when the store is full      close 1013: the store evicts the longest
of sessions that all have a live          idle session first; only when every
connection (``max_sessions_total``, or    session has a live connection is the
``max_sessions_per_subject``)             newcomer refused
frame larger than ``max_size``            close 1009 (message too big), by websockets
more unacknowledged messages than the     close 1008 "flow control violated": that
window allows (a flood)                   client is cut, the others keep their service
superseded by a newer connection of the   close 4001 "superseded"
same session (of the same subject)
========================================  ==========================================

Why 4409 and not 4403 or 1008: 4403 tells a client that its subject was
revoked and that it must stop for good, which is false here (the attacker's
own sessions are fine); 1008 says "your frames break the protocol", and the
hello was well formed. 4409, as HTTP 409 Conflict, says exactly this: that
session id is someone else's. The close reason is one fixed text, whatever
that session holds or whether a connection serves it now.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

SUPERSEDED = 4001
UNAUTHORIZED = 4401  # as HTTP 401: authenticate (again)
FORBIDDEN = 4403  # as HTTP 403: revoked, do not retry
NOT_YOUR_SESSION = 4409  # as HTTP 409 Conflict: that session id belongs to another subject

# Limits applied before parsing (see the module docstring). The protocol's own
# frames are at most 2 deep ({"t": "msg", "bodies": [...]}) and number
# messages from 0: these leave room for any field a peer adds, and nothing more.
MAX_FRAME_CHARS = 1 << 20  # as the library's max_size: a frame is at least this many bytes
MAX_DEPTH = 32
MAX_BRACKETS = 1024  # outside strings; each round of the depth check is then cheap
MAX_INT = 2**53  # the largest integer every JSON peer (JavaScript's doubles) reads exactly
_MAX_INT_DIGITS = len(str(MAX_INT))  # a longer run of digits is refused before int() sees it


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
    """Parse and validate one frame, or raise :class:`BadFrame`: never any
    other exception, whatever ``data`` is (tests/test_fuzz.py checks this).

    The frame's length, nesting depth and number sizes are checked before or
    while parsing, so a hostile frame costs time linear in its length, and
    little of it: a 5,000-digit integer is not converted, a 200,000-deep
    array is not descended."""
    if not isinstance(data, str):
        raise BadFrame("binary_not_supported", "send JSON as text frames")
    if len(data) > MAX_FRAME_CHARS:
        raise BadFrame("too_large", f"a frame is at most {MAX_FRAME_CHARS} characters")
    if _too_deep(data):
        raise BadFrame("too_deep", f"a frame holds at most {MAX_BRACKETS} pairs of brackets "
                                   f"outside its strings, nested at most {MAX_DEPTH} deep")
    try:
        value = json.loads(data, parse_int=_bounded_int)
    except BadFrame:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise BadFrame("bad_json", f"not JSON: {getattr(exc, 'msg', exc)}") from None
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

# A JSON string, escapes included, or what is left of an unterminated one: it
# always matches from a quote, so skipping strings is one linear pass.
_STRING = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*\\?(?:"|\Z)')
_NOT_BRACKET = re.compile(r'[^\[\]{}]+')


def _too_deep(data: str) -> bool:
    """Whether ``data`` holds more than :data:`MAX_BRACKETS` brackets outside
    its strings, or nests them deeper than :data:`MAX_DEPTH`, or they do not
    pair up (which json.loads would refuse anyway).

    Counting the opening brackets settles almost every frame at once. Beyond
    the limit, the strings are cut out (brackets inside message bodies do not
    count), and the empty pairs removed round after round: each round takes
    one level off, so ``MAX_DEPTH`` rounds empty a frame within the limit.
    Each step is a pass of C code over the text, none a Python loop per
    character: a megabyte costs milliseconds."""
    if data.count("[") + data.count("{") <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", data))
    if len(brackets) > 2 * MAX_BRACKETS:
        return True
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        brackets = brackets.replace("[]", "").replace("{}", "")
    return bool(brackets)


def _bounded_int(digits: str) -> int:
    """``json.loads``' ``parse_int``: refuse an integer beyond ±:data:`MAX_INT`
    from its length first (``int()`` of a long string takes quadratic time, and
    beyond 4,300 digits raises a ValueError of its own)."""
    if len(digits.lstrip("-")) > _MAX_INT_DIGITS or abs(value := int(digits)) > MAX_INT:
        raise BadFrame("bad_number", f"integers are at most {MAX_INT} in absolute value")
    return value


def _batch(value: dict) -> Envelope:
    seq, bodies = value.get("seq"), value.get("bodies")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadFrame("bad_field", "msg.seq must be an int >= 0")
    if (not isinstance(bodies, list) or not 1 <= len(bodies) <= MAX_BATCH
            or not all(isinstance(b, str) for b in bodies)):
        raise BadFrame("bad_field", f"msg.bodies must be a list of 1 to {MAX_BATCH} strings")
    return Envelope("msg", {"seq": seq, "bodies": bodies})
