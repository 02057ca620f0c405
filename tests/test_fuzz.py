"""Fuzzing the production server's message handling with generated bad frames.

Each example is a real lab run: a client says hello, sends the generated
frames, and then a second client with a fresh session sends one real message.
The server must never crash (no exception escapes its handler), answer every
frame with an error frame or one of the documented close codes, and keep
serving: the real message is delivered.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wslab
from wslab import Design, Workload
from wslab.production import envelope, server

pytestmark = pytest.mark.timeout(120)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
frame_objects = st.fixed_dictionaries(
    {"t": st.sampled_from(["msg", "ack", "hello", "welcome", "error", "auth", "", "MSG"])},
    optional={"seq": json_values, "body": json_values, "session": json_values,
              "down_next": json_values, "code": json_values},
)
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    frame_objects.map(lambda obj: json.dumps(obj, allow_nan=True)),
)

ALLOWED_CLOSES = {None, 1000, 1001, 1008, 1009, envelope.SUPERSEDED,  # never 1011
                  envelope.UNAUTHORIZED, envelope.FORBIDDEN}


def run_fuzz(sent_frames: list) -> tuple[wslab.Run, dict]:
    seen: dict = {"close": None, "errors": 0}

    async def client(app):
        async with app.connect() as websocket:
            if app.client_id == 0:
                await websocket.send(envelope.encode("hello", session="fuzz", down_next=0,
                                                     token=await app.fetch_token()))
                for frame in sent_frames:
                    await websocket.send(frame)
                await websocket.send(envelope.encode("ack", seq=0))  # a last, valid frame
                try:
                    async for data in websocket:
                        reply = json.loads(data)
                        seen["errors"] += reply.get("t") == "error"
                except Exception:
                    pass
                seen["close"] = websocket.close_code
            else:
                await websocket.send(envelope.encode("hello", session="honest", down_next=0,
                                                     token=await app.fetch_token()))
                await websocket.recv()  # welcome
                body = await app.next_message()
                await websocket.send(envelope.encode("msg", seq=0, body=body))
                while json.loads(await websocket.recv())["t"] != "ack":
                    pass

    design = Design("fuzz", handler=server.handler, client=client,
                    serve_options=server.serve_options())
    # Both clients run at once: the honest one is served while the fuzzer is.
    run = wslab.run(design, workload=Workload(count=1, rate_per_s=1), clients=2, faults=[],
                    settle_s=0.6)
    return run, seen


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_the_server_survives_any_frames(sent_frames):
    run, seen = run_fuzz(sent_frames)
    handler_errors = [e for e in run.errors if e.where.startswith("server handler")]
    assert handler_errors == [], handler_errors
    assert seen["close"] in ALLOWED_CLOSES, seen
    honest = [r for r in run.ledger.records.values() if r.msg_id.startswith("u1.")]
    assert honest and all(r.deliveries for r in honest), "the server stopped serving others"


# envelope.decode alone: anything in, an Envelope or a BadFrame out ------------------

# Each example is one draw of a few bytes (cheap: 10,000 examples take seconds), read
# by frame_from as one of several kinds of input: pieces of frames glued at random
# (brackets that do not pair up, strings that do not end, escapes), deep nesting,
# integers too long to convert, arbitrary text, binary, and frames of every type
# with fields of every JSON type (some valid).
PIECES = ['{', '}', '[', ']', '"', '\\', '\\"', '\\u', '\\ud800', ':', ',', ' ', '"t"', '"msg"',
          '"ack"', '"hello"', '"welcome"', '"seq"', '"body"', '"bodies"', '"session"',
          '"down_next"', '"token"', '"resend"', '0', '-1', '1.5', '1e999', '9' * 30, 'true',
          'null', 'NaN', '-Infinity', 'x', '\x00', '\udfff', '"\u00e9"', '{"t": "msg", ',
          '{"t": "ack", "seq": ', '{"t": "hello", "session": "s", "down_next": ']
OPENERS = ["[", "{", '{"a":', '[{"t":', '{"t": "msg", "seq": 0, "bodies": [']
TYPES = ["msg", "ack", "hello", "welcome", "auth", "error", "", "MSG"]
FIELDS = ["seq", "body", "bodies", "session", "down_next", "token", "up_next", "code", "detail",
          "resend", "missed"]
VALUES = ["0", "7", "-1", str(2**53), str(2**53 + 1), "1.5", '"x"', '""', "true", "false",
          "null", "[]", "{}", '["a"]', '["a", 1]', '["a", "b"]', "NaN", "1e999"]


def frame_from(b: bytes) -> str | bytes:
    kind, rest = (b[0] % 6, b[1:]) if b else (0, b"")
    glued = "".join(PIECES[i % len(PIECES)] for i in rest[3:])
    number = int.from_bytes(rest[:2], "big")
    if kind == 0:
        return "".join(PIECES[i % len(PIECES)] for i in rest)
    if kind == 1:
        return OPENERS[rest[2] % len(OPENERS) if len(rest) > 2 else 0] * (number % 5001) + glued
    if kind == 2:
        return '{"t": "ack", "seq": ' + "-" * (number % 2) + "9" * (number % 6001) + glued
    if kind == 3:
        return rest.decode("latin-1")
    if kind == 4:
        return rest
    pairs = [f'"{FIELDS[k % len(FIELDS)]}": {VALUES[v % len(VALUES)]}'
             for k, v in zip(rest[1::2], rest[2::2])]
    return "{" + ", ".join([f'"t": "{TYPES[rest[0] % len(TYPES)] if rest else "msg"}"', *pairs]) + "}"


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=24).map(frame_from))
def test_decode_returns_an_envelope_or_raises_bad_frame(data):
    try:
        result = envelope.decode(data)
    except envelope.BadFrame as exc:
        assert exc.code in {"bad_json", "too_large", "too_deep", "bad_number", "unknown_type",
                            "bad_field", "binary_not_supported"}, exc.code
        return
    assert isinstance(result, envelope.Envelope)
