"""Event streaming over WebSocket with tokens that expire and sessions that can be revoked.

Lifecycle of one client::

    +-> fetch a token -> connect -> auth frame -> open <---------------------+
    |                                              |  at 60 % of the token's |
    |                                              |  remaining life: a new  |
    |                                              +- token in an auth frame +
    |                                              |  (same connection)
    |                                              v  closed
    +--- 4401: at once; any other code: after a backoff (full jitter)
         4403, or the provider refuses a token: stop

Close codes, and what the client does:

======  ======================================  ============================================
code    the server means                        the client
======  ======================================  ============================================
4401    no valid token (missing, expired)       gets a new token and reconnects at once
                                                (twice in a row: backs off, something is off)
4403    the session was revoked                 stops for good and reports every queued
                                                event as not delivered; no retry
other   the connection failed (network,         reconnects with exponential backoff and full
        server restart, ...)                    jitter, then resends what is unacknowledged
======  ======================================  ============================================

The identity provider refusing a token (the session is revoked) is handled like 4403.

Protocol (JSON text frames)::

    client -> server   {"type": "auth", "token": "...", "session": "..."}  first frame
    client -> server   {"type": "auth", "token": "..."}                    every refresh
    client -> server   {"type": "event", "seq": 17, "body": "..."}          numbered from 0
    server -> client   {"type": "ack", "seq": 17}          processed everything up to 17

Audit:

- An expired or revoked token cannot keep a session alive: the server re-verifies the
  connection's current token every RECHECK_S and at its expiry, whatever the client does.
- A refresh loses nothing: it is one more frame on the open connection. If the connection
  closes anyway, every unacknowledged event is still in the outbox and is resent; the
  server skips sequence numbers it has already processed.
- A refused client never loops: 4403 stops it; 4401 reconnects at once only once in a row.

(In the lab, ``app.fetch_token()`` stands for the identity provider, ``app.verify_token()``
for ``jwt.decode(...)`` plus the revocation check, and ``app.now()`` for the clock tokens
are stamped with. Tokens live 0.6 s instead of 15 minutes, so the timers are scaled down.)
"""

import asyncio
import json
import logging
import random
import uuid
from collections import OrderedDict

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from wslab.auth import token_expires_s  # the token's "exp" claim (read, not verified)
from wslab.errors import AuthError, TokenRevoked

logger = logging.getLogger(__name__)

UNAUTHORIZED = 4401  # as HTTP 401: authenticate (again)
FORBIDDEN = 4403  # as HTTP 403: revoked, do not retry

REFRESH_AT = 0.6  # refresh when this fraction of the token's remaining life has passed
RECHECK_S = 0.25  # the server re-verifies the current token at least this often
AUTH_TIMEOUT_S = 2.0  # the first frame (the token) must come within this
RECONNECT_BASE_S, RECONNECT_CAP_S = 0.05, 1.0  # full jitter in [0, min(cap, base * 2**n)]
STABLE_S = 1.0  # a connection that stayed up this long resets the backoff
CLOSE_TIMEOUT_S = 0.1  # do not wait 10 s (the default) for a close handshake
SERVE_OPTIONS = {"close_timeout": CLOSE_TIMEOUT_S}


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    try:
        hello = json.loads(await asyncio.wait_for(websocket.recv(), AUTH_TIMEOUT_S))
        app.verify_token(hello["token"])
    except AuthError as exc:  # invalid or expired: 4401; revoked: 4403
        await websocket.close(exc.close_code, str(exc))
        return
    except (TimeoutError, KeyError, TypeError, ValueError):
        await websocket.close(UNAUTHORIZED, "send a token first")
        return
    except ConnectionClosed:
        return
    # What was processed, per session (a database in production): resent events are skipped.
    session = app.state.setdefault(hello["session"], {"processed": -1})
    current = {"token": hello["token"]}

    async def guard():
        """Close the connection when its current token expires or is revoked."""
        while True:
            try:
                claims = app.verify_token(current["token"])
            except AuthError as exc:
                logger.info("closing %d: %s", exc.close_code, exc)
                await websocket.close(exc.close_code, str(exc))
                return
            await asyncio.sleep(min(RECHECK_S, claims.expires_s - app.now()))

    async def receive():
        async for raw in websocket:
            frame = json.loads(raw)
            if frame["type"] == "auth":  # a refresh: the new token must verify too
                try:
                    app.verify_token(frame["token"])
                except AuthError as exc:
                    await websocket.close(exc.close_code, str(exc))
                    return
                current["token"] = frame["token"]
            elif frame["type"] == "event":
                if frame["seq"] == session["processed"] + 1:  # else: a resent copy
                    await app.process(frame["body"])
                    session["processed"] = frame["seq"]
                await websocket.send(json.dumps({"type": "ack", "seq": session["processed"]}))

    guard_task = asyncio.create_task(guard())
    try:
        await receive()
    except ConnectionClosed:
        logger.info("client disconnected")
    finally:
        guard_task.cancel()


# ---------------------------------------------------------------- client

class SessionRevoked(Exception):
    """The identity provider refused a new token: this session is over."""


class Outbox:
    """Events kept until the server acknowledges them, oldest first."""

    def __init__(self):
        self.pending: OrderedDict[int, str] = OrderedDict()
        self.next_seq = 0
        self.added = asyncio.Event()

    def add(self, body: str) -> None:
        self.pending[self.next_seq] = body
        self.next_seq += 1
        self.added.set()

    def ack(self, upto: int) -> None:
        """Cumulative: forget every event numbered up to ``upto``."""
        while self.pending and next(iter(self.pending)) <= upto:
            self.pending.popitem(last=False)

    def after(self, seq: int) -> list[tuple[int, str]]:
        return [(s, body) for s, body in self.pending.items() if s > seq]


async def client(app):
    outbox = Outbox()

    async def collect():  # events are kept whether or not we are connected
        async for body in app.outgoing():
            outbox.add(body)

    collector = asyncio.create_task(collect())
    try:
        await connect_until_revoked(app, outbox, uuid.uuid4().hex)
    finally:
        collector.cancel()
    # Revoked: nothing queued will be delivered. Say so, now and for every later event.
    for body in outbox.pending.values():
        app.reject(body, "session revoked")
    async for body in app.outgoing():
        app.reject(body, "session revoked")


async def connect_until_revoked(app, outbox, session_id):
    loop = asyncio.get_running_loop()
    failures = 0  # attempts since the last connection that stayed up STABLE_S
    refused_in_a_row = 0  # 4401s in a row
    while True:
        try:
            token = await app.fetch_token()
        except TokenRevoked:
            logger.error("the identity provider refused a token: session revoked")
            return
        code, started = None, loop.time()
        try:
            async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                await websocket.send(json.dumps({"type": "auth", "token": token,
                                                 "session": session_id}))
                await stream(app, websocket, outbox, token)
        except SessionRevoked:
            logger.error("session revoked while connected: stopping")
            return
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            logger.info("connection closed: %s", exc)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            logger.warning("cannot connect: %s", exc)
        if code == FORBIDDEN:
            logger.error("session revoked (4403): not reconnecting")
            return
        refused_in_a_row = refused_in_a_row + 1 if code == UNAUTHORIZED else 0
        if refused_in_a_row == 1:
            continue  # the token expired: a new one, and straight back
        if loop.time() - started >= STABLE_S:
            failures = 0  # it held: start again from short delays
        delay = random.uniform(0, min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** failures))
        failures += 1
        await asyncio.sleep(delay)


async def stream(app, websocket, outbox, token):
    """Send events, read acknowledgements and refresh the token until the connection ends."""
    tasks = [asyncio.create_task(send_events(websocket, outbox)),
             asyncio.create_task(read_acks(websocket, outbox)),
             asyncio.create_task(refresh_token(app, websocket, token))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()  # ConnectionClosed or SessionRevoked, for the caller


async def send_events(websocket, outbox):
    # A new connection has nothing on the wire: resend from the oldest unacknowledged.
    sent_upto = -1
    while True:
        for seq, body in outbox.after(sent_upto):
            await websocket.send(json.dumps({"type": "event", "seq": seq, "body": body}))
            sent_upto = seq
        outbox.added.clear()
        if not outbox.after(sent_upto):
            await outbox.added.wait()


async def read_acks(websocket, outbox):
    while True:  # recv() raises ConnectionClosed, with the close code, when it ends
        frame = json.loads(await websocket.recv())
        if frame["type"] == "ack":
            outbox.ack(frame["seq"])


async def refresh_token(app, websocket, token):
    """Send a fresh token on the open connection before the current one expires."""
    while True:
        await asyncio.sleep(REFRESH_AT * max(0.0, token_expires_s(token) - app.now()))
        try:
            token = await app.fetch_token()
        except TokenRevoked:
            await websocket.close(1000, "session revoked")
            raise SessionRevoked() from None
        await websocket.send(json.dumps({"type": "auth", "token": token}))
        logger.info("token refreshed in-band")
