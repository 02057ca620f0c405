"""Exactly-once, in-order order streaming over WebSocket: sessions, sequence numbers,
de-duplication, go-back-N resend.

Protocol (JSON text frames)::

    client -> server   {"type": "hello", "session": "3f2a..."}     first frame of every connection
    server -> client   {"type": "welcome", "next": 17}              the next number it expects
    client -> server   {"type": "order", "seq": 17, "order": "..."}
    server -> client   {"type": "ack", "seq": 17}                   everything up to 17 is processed

What happens to an order when:

- its acknowledgement is lost: the client resends it (no acknowledgement for
  ``ACK_TIMEOUT_S``, or a reconnection). The server sees a number below the one it
  expects: a duplicate. It skips it and acknowledges again, so the client stops resending;
- it arrives twice: the same, it is processed once;
- it arrives before the one ahead of it: the server skips it too (it expects the
  earlier number); the client, still without an acknowledgement, goes back and resends
  from its oldest unacknowledged order, so orders are processed in the client's order;
- the server restarts between processing it and acknowledging it: the next expected
  number lives in durable storage and moved with the processing, so the resent copy
  is recognised as a duplicate by the restarted server.

"In order" means per session: one client's orders are processed in the order that
client produced them. Between clients there is no order to keep: the server
interleaves sessions as their frames arrive. A single global order would need one
sequencer that numbers orders as it accepts them.

In production, processing an order and moving the session's counter must commit
together (one database transaction); otherwise a crash between the two processes the
order again. (In the lab, ``app.store`` stands for that database: it survives a
restart, while ``app.state`` and globals are memory. ``app.connect()`` stands for
``websockets.connect(URI)``, ``app.outgoing()`` for the orders the application
produces and ``app.process()`` for the server's handling of one order.)
"""

import asyncio
import json
import logging
import random
import uuid
from collections import OrderedDict

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

ACK_TIMEOUT_S = 0.2  # no acknowledgement for this long: go back and resend
RECONNECT_BASE_S = 0.05  # full-jitter backoff: uniform(0, min(CAP, BASE * 2**attempt))
RECONNECT_CAP_S = 1.0
CLOSE_TIMEOUT_S = 0.1  # do not wait 10 s (the default) for a dead peer's close frame
SERVE_OPTIONS = {"close_timeout": CLOSE_TIMEOUT_S}


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    # session id -> next expected seq. Durable: it must survive a restart.
    next_expected = app.store.setdefault("next_expected", {})
    # An older connection of the same session may still be processing: one at a time.
    locks = app.state.setdefault("session_locks", {})
    try:
        hello = json.loads(await websocket.recv())
        session = hello["session"]
        lock = locks.setdefault(session, asyncio.Lock())
        await websocket.send(json.dumps({"type": "welcome",
                                         "next": next_expected.get(session, 0)}))
        async for raw in websocket:
            frame = json.loads(raw)
            seq = frame["seq"]
            async with lock:
                expected = next_expected.get(session, 0)
                if seq == expected:
                    await app.process(frame["order"])
                    next_expected[session] = expected + 1
                elif seq < expected:
                    logger.info("duplicate %s skipped (expected %s)", seq, expected)
                else:
                    logger.info("order %s came too early (expected %s): skipped", seq, expected)
                processed_upto = next_expected.get(session, 0) - 1
            # Acknowledge every frame, duplicates included: cumulative, after processing.
            await websocket.send(json.dumps({"type": "ack", "seq": processed_upto}))
    except ConnectionClosed:
        logger.info("client disconnected")


# ---------------------------------------------------------------- client

class OutboundOrders:
    """Orders kept until acknowledged, numbered 0, 1, 2... within the session."""

    def __init__(self):
        self.pending: OrderedDict[int, str] = OrderedDict()
        self.next_seq = 0
        self.changed = asyncio.Event()  # an order was added or acknowledged
        self.progress_at = 0.0  # when the oldest pending order last moved

    def add(self, order: str) -> None:
        if not self.pending:
            self.progress_at = asyncio.get_running_loop().time()
        self.pending[self.next_seq] = order
        self.next_seq += 1
        self.changed.set()

    def ack(self, upto: int) -> None:
        """Cumulative: forget every order numbered up to ``upto``."""
        removed = False
        while self.pending and next(iter(self.pending)) <= upto:
            self.pending.popitem(last=False)
            removed = True
        if removed:
            self.progress_at = asyncio.get_running_loop().time()
            self.changed.set()

    def after(self, seq: int) -> list[tuple[int, str]]:
        return [(s, order) for s, order in self.pending.items() if s > seq]


async def client(app):
    session = uuid.uuid4().hex  # one session for the client's whole life
    orders = OutboundOrders()

    async def collect_orders():
        async for order in app.outgoing():
            orders.add(order)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(collect_orders())
        await connect_forever(app, session, orders)


async def connect_forever(app, session, orders):
    attempt = 0
    while True:
        try:
            async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                await websocket.send(json.dumps({"type": "hello", "session": session}))
                welcome = json.loads(await websocket.recv())
                orders.ack(welcome["next"] - 1)  # the server has processed these already
                attempt = 0
                await serve_connection(websocket, orders)
        except (ConnectionClosed, InvalidHandshake, OSError) as exc:
            logger.info("connection lost: %s", exc)
        delay = random.uniform(0, min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** attempt))
        attempt += 1
        await asyncio.sleep(delay)


async def serve_connection(websocket, orders):
    sender = asyncio.create_task(send_orders(websocket, orders))
    reader = asyncio.create_task(read_acks(websocket, orders))
    try:
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sender.cancel()
        reader.cancel()
        results = await asyncio.gather(sender, reader, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
            raise result  # a bug, not a disconnection


async def send_orders(websocket, orders):
    loop = asyncio.get_running_loop()
    sent_upto = -1  # a new connection has nothing on the wire: start from the oldest
    while True:
        for seq, order in orders.after(sent_upto):
            await websocket.send(json.dumps({"type": "order", "seq": seq, "order": order}))
            sent_upto = seq
        if orders.pending and loop.time() - orders.progress_at > ACK_TIMEOUT_S:
            # No acknowledgement for a while: an order or its acknowledgement was
            # lost. Go back and resend every unacknowledged order, oldest first.
            logger.info("no acknowledgement: resending from %d", next(iter(orders.pending)))
            orders.progress_at = loop.time()
            sent_upto = -1
            continue
        orders.changed.clear()
        try:
            await asyncio.wait_for(orders.changed.wait(), ACK_TIMEOUT_S / 4)
        except TimeoutError:
            pass


async def read_acks(websocket, orders):
    async for raw in websocket:
        frame = json.loads(raw)
        if frame.get("type") == "ack":
            orders.ack(frame["seq"])
