"""At-least-once event streaming over WebSocket: outbound queue, acknowledgements, resend.

Protocol (JSON text frames)::

    client -> server   {"seq": 17, "event": "..."}   every event, numbered from 0
    server -> client   {"ack": 17}                   "I have processed everything up to 17"

What happens to an event in flight:

- the connection drops: the event is still in the client's outbound queue
  (only an acknowledgement removes it), so it is resent after reconnecting;
- the server restarts: whatever it had read and not processed was never
  acknowledged, so the client resends it;
- an acknowledgement is lost: the client resends events the server already
  processed. The server then processes them a second time. De-duplication by
  sequence number is the next step; until then, processing must tolerate it.

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the events the application produces and
``app.process()`` for the server's handling of one event.)
"""

import asyncio
import json
import logging
import random
from collections import OrderedDict

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger("event_stream")

# Reconnection: a random delay between 0 and min(CAP, BASE * 2**attempt) (full
# jitter), so that clients cut off together do not come back together.
RECONNECT_BASE_S = 0.05
RECONNECT_CAP_S = 1.0

# Closing waits at most this long for the peer's close frame (default 10 s), so a
# restart or a dead client never holds a handler up for long.
CLOSE_TIMEOUT_S = 0.1
SERVE_OPTIONS = {"close_timeout": CLOSE_TIMEOUT_S}


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    """Process each event, then acknowledge it: never acknowledge before processing,
    or a restart between the two would lose an event the client has forgotten."""
    try:
        async for frame in websocket:
            message = json.loads(frame)
            await app.process(message["event"])
            await websocket.send(json.dumps({"ack": message["seq"]}))
    except ConnectionClosed:
        logger.info("client disconnected")


# ---------------------------------------------------------------- client

class OutboundQueue:
    """Events kept until acknowledged, by sequence number, oldest first."""

    def __init__(self):
        self.pending: OrderedDict[int, str] = OrderedDict()
        self.next_seq = 0
        self.added = asyncio.Event()

    def add(self, event: str) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.pending[seq] = event
        self.added.set()
        return seq

    def ack(self, upto: int) -> None:
        """Cumulative: forget every event numbered up to ``upto``."""
        while self.pending and next(iter(self.pending)) <= upto:
            self.pending.popitem(last=False)

    def after(self, seq: int) -> list[tuple[int, str]]:
        """The unacknowledged events numbered above ``seq``, oldest first."""
        return [(s, event) for s, event in self.pending.items() if s > seq]


async def client(app):
    queue = OutboundQueue()

    async def collect_events():
        # Events are queued whether or not we are connected.
        async for event in app.outgoing():
            queue.add(event)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(collect_events())
        await connect_forever(app, queue)


async def connect_forever(app, queue):
    attempt = 0
    while True:
        try:
            async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                attempt = 0
                logger.info("connected; resending %d unacknowledged events", len(queue.pending))
                await serve_connection(websocket, queue)
        except (ConnectionClosed, InvalidHandshake, OSError) as exc:
            logger.info("connection lost: %s", exc)
        delay = random.uniform(0, min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** attempt))
        attempt += 1
        await asyncio.sleep(delay)


async def serve_connection(websocket, queue):
    """Send and read acknowledgements concurrently until the connection closes."""
    sender = asyncio.create_task(send_events(websocket, queue))
    reader = asyncio.create_task(read_acks(websocket, queue))
    try:
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # One ended (the connection closed) or we are cancelled: stop both.
        sender.cancel()
        reader.cancel()
        results = await asyncio.gather(sender, reader, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
            raise result  # a bug, not a disconnection


async def send_events(websocket, queue):
    # A new connection has nothing on the wire: start from the oldest
    # unacknowledged event, then keep sending new ones as they are added.
    sent_upto = -1
    while True:
        for seq, event in queue.after(sent_upto):
            await websocket.send(json.dumps({"seq": seq, "event": event}))
            sent_upto = seq
        queue.added.clear()
        if not queue.after(sent_upto):
            await queue.added.wait()


async def read_acks(websocket, queue):
    async for frame in websocket:
        queue.ack(json.loads(frame)["ack"])
