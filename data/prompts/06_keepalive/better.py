"""Updates from client to server over WebSocket, robust to silently dropped flows.

Failure modes and how this code handles them:

1. A NAT or load balancer forgets the flow: bytes vanish, no socket closes, no
   error anywhere. -> Keepalive on both sides: a ping every PING_INTERVAL_S; no
   pong within PING_TIMEOUT_S and websockets closes the connection (1011).
   At worst the dead flow goes unnoticed for PING_INTERVAL_S + PING_TIMEOUT_S
   (it dies just after a pong: a whole interval, then the whole timeout).
2. A latency spike makes pongs late. -> PING_TIMEOUT_S is longer than the worst
   round trip (0.7 s) with a margin, so a slow pong is never taken for a dead peer.
3. Pings wait behind data when the server reads slowly. -> The same margin, and
   the server acknowledges as it processes, so the client never floods it.
4. After the keepalive gives up, websockets waits close_timeout (default 10 s)
   for a closing handshake that a dead network swallows. -> CLOSE_TIMEOUT_S.
5. Updates sent into the dead flow are gone. -> Each update is kept until the
   server acknowledges it and resent after reconnecting; the server skips
   sequence numbers it has already processed.

The values (target: the code hears of a dead connection within 10 s):
    CLOSE_TIMEOUT_S = 1.0 s  a closing handshake is one round trip: 0.7 s at worst
    PING_TIMEOUT_S  = 3.0 s  worst round trip 0.7 s, with room for a pong that
                             waits behind data or a busy event loop
    PING_INTERVAL_S = 6.0 s  what the target leaves: 10 - 1.0 - 3.0
    worst case: unnoticed for 6 + 3 = 9 s, and the code hears of it 1 s later: 10 s.
"""

import asyncio
import json
import logging
import random
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

PING_INTERVAL_S = 6.0
PING_TIMEOUT_S = 3.0
CLOSE_TIMEOUT_S = 1.0
OPEN_TIMEOUT_S = 5.0  # a handshake through a spike takes a few round trips
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0

KEEPALIVE = {
    "ping_interval": PING_INTERVAL_S,
    "ping_timeout": PING_TIMEOUT_S,
    "close_timeout": CLOSE_TIMEOUT_S,
}
SERVE_OPTIONS = dict(KEEPALIVE)  # the server pings too: it must notice dead clients


# Server -------------------------------------------------------------------------

async def handler(websocket, app):
    """Process each update once, in order, and acknowledge it (cumulatively)."""
    try:
        async for raw in websocket:
            update = json.loads(raw)
            # The next sequence number expected from this client session.
            session = app.state.setdefault(update["session"], {"next": 0})
            if update["seq"] == session["next"]:
                await app.process(update["body"])
                session["next"] += 1
            # An older number is a resend of something already processed: skip it,
            # but acknowledge again (the first acknowledgement may have been lost).
            await websocket.send(json.dumps({"ack": session["next"] - 1}))
    except ConnectionClosed as exc:
        logger.info("client gone: %s", exc)


# Client -------------------------------------------------------------------------

class Outbox:
    """Updates kept until the server acknowledges them, by sequence number."""

    def __init__(self):
        self.unacked = {}  # seq -> update, in order
        self.next_seq = 0
        self._added = asyncio.Event()

    def add(self, update):
        self.unacked[self.next_seq] = update
        self.next_seq += 1
        self._added.set()

    def acknowledge(self, seq):
        """The server has everything up to ``seq``: forget it."""
        for done in [s for s in self.unacked if s <= seq]:
            del self.unacked[done]

    async def from_oldest(self):
        """Every unacknowledged update in order, then each new one as it comes."""
        seq = min(self.unacked, default=self.next_seq)
        while True:
            while seq >= self.next_seq:
                self._added.clear()
                await self._added.wait()
            if seq in self.unacked:
                yield seq, self.unacked[seq]
            seq += 1


async def client(app):
    session = uuid.uuid4().hex
    outbox = Outbox()
    rng = random.Random(app.seed)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(collect(app, outbox))
        attempt = 0
        while True:
            try:
                async with app.connect(**KEEPALIVE, open_timeout=OPEN_TIMEOUT_S) as websocket:
                    attempt = 0
                    await exchange(websocket, session, outbox)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                logger.info("connection lost (%s); %d update(s) to resend",
                            exc, len(outbox.unacked))
            # Exponential backoff with full jitter: clients do not come back in lockstep.
            delay = rng.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt))
            attempt += 1
            await asyncio.sleep(delay)


async def collect(app, outbox):
    """Take each update the application produces into the outbox."""
    async for update in app.outgoing():
        outbox.add(update)


async def exchange(websocket, session, outbox):
    """Send from the oldest unacknowledged update on, read acknowledgements,
    until the connection closes (keepalive included)."""

    async def send_all():
        async for seq, update in outbox.from_oldest():
            await websocket.send(json.dumps({"session": session, "seq": seq, "body": update}))

    sender = asyncio.create_task(send_all())
    try:
        async for raw in websocket:
            outbox.acknowledge(json.loads(raw)["ack"])
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
