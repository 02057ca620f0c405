"""Event stream over WebSocket with a planned shutdown: nothing lost, nothing left running.

Protocol (JSON text frames)::

    client -> server   {"session": "..."}            first frame of every connection
    client -> server   {"seq": 17, "body": "..."}     every event, numbered from 0
    server -> client   {"ack": 17}                    "event 17 is processed"

At a shutdown, where each event ends up:

Server (``serve()``'s ``close()`` sends 1001, going away, to every client, then waits
for every handler to return):
- an event being processed, or read and still in the inbox, was never acknowledged:
  the client still holds it and sends it again after reconnecting;
- every task a connection starts lives in one ``asyncio.TaskGroup`` in the handler:
  when the reader or the worker ends (the connection closed), the handler cancels
  the other and the group awaits both. No task outlives its connection, nothing
  holds ``wait_closed()`` up;
- the last sequence number processed per session is in the database (``app.store``),
  so an event sent again is acknowledged, not processed twice.

Client:
- every event is kept until acknowledged; after a close (1001, 1012, or a dropped
  connection) the client reconnects with backoff and jitter and resends them in order;
- asked to stop (``app.stopping``: SIGTERM in a real program), it takes no new event,
  waits up to STOP_TIMEOUT_S for the outstanding acknowledgements, closes with 1000
  and reports each event still unacknowledged (``app.reject``) instead of dropping it.

Cancellation is never swallowed: no bare ``except:``, no ``except BaseException``;
cleanup lives in ``finally`` blocks and ``async with``, which run on cancellation too.

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the events the application produces, ``app.process()`` for
the server's handling of one event and ``app.store`` for the server's database.)
"""

import asyncio
import json
import logging
import random
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from wslab.production.backoff import Backoff

logger = logging.getLogger(__name__)

INBOX_SIZE = 64  # events read and not processed yet, per connection
# A close waits this long for the peer's close frame (default 10 s): a shutdown
# is never held up by a peer that stopped answering.
CLOSE_TIMEOUT_S = 0.1
SERVE_OPTIONS = {"close_timeout": CLOSE_TIMEOUT_S}
# A stopping client waits this long for acknowledgements, then reports the rest.
STOP_TIMEOUT_S = 0.4
# How long the process gives the client to stop before cancelling it
# (the lab reads this name): the wait, the close, and a margin.
STOP_GRACE_S = STOP_TIMEOUT_S + CLOSE_TIMEOUT_S + 0.1


# --- server -----------------------------------------------------------------

async def handler(websocket, app):
    try:
        session = json.loads(await websocket.recv())["session"]
    except ConnectionClosed:
        return  # gone before saying hello: nothing to serve
    processed = app.store.setdefault("processed", {})  # session -> last seq processed
    inbox = asyncio.Queue(maxsize=INBOX_SIZE)

    async def read():
        try:
            async for frame in websocket:
                await inbox.put(json.loads(frame))
        except ConnectionClosed:
            pass  # closed (1001 at shutdown, or a dropped connection): the worker stops too

    async def work():
        while True:
            event = await inbox.get()
            if event["seq"] > processed.get(session, -1):
                await app.process(event["body"])
                processed[session] = event["seq"]
            try:
                await websocket.send(json.dumps({"ack": event["seq"]}))  # only once processed
            except ConnectionClosed:
                return  # not acknowledged: the client sends it again

    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(read())
        worker = tasks.create_task(work())
        # Whichever ends first, the connection is over: the reader when it closes,
        # the worker when an acknowledgement cannot be sent (then the reader may be
        # waiting for room in a full inbox that nobody will empty). Stop the other.
        # Events still in the inbox were never acknowledged: dropping them loses nothing.
        await asyncio.wait([reader, worker], return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        worker.cancel()


# --- client -----------------------------------------------------------------

class Outbox:
    """Events kept until acknowledged, by sequence number, oldest first."""

    def __init__(self):
        self.pending = {}  # seq -> event; dicts keep insertion order
        self.next_seq = 0
        self.changed = asyncio.Event()  # an event was added or acknowledged
        self.websocket = None  # the connection in use, if any

    def add(self, event):
        self.pending[self.next_seq] = event
        self.next_seq += 1
        self.changed.set()

    def ack(self, seq):
        self.pending.pop(seq, None)
        self.changed.set()

    def after(self, seq):
        return [(s, event) for s, event in self.pending.items() if s > seq]

    async def wait_empty(self):
        while self.pending:
            self.changed.clear()
            await self.changed.wait()


async def client(app):
    outbox = Outbox()
    async with asyncio.TaskGroup() as tasks:
        collector = tasks.create_task(collect(app, outbox))
        connection = tasks.create_task(stay_connected(app, outbox))
        await app.stopping.wait()  # SIGTERM in a real program
        collector.cancel()  # take no new event
        await stop(app, outbox)
        connection.cancel()


async def collect(app, outbox):
    async for event in app.outgoing():
        outbox.add(event)


async def stop(app, outbox):
    """Wait (bounded) for the acknowledgements, close with 1000, report the rest."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await outbox.wait_empty()
    except TimeoutError:
        pass  # the deadline passed: report what is left
    if outbox.websocket is not None:
        await outbox.websocket.close(1000, "client stopping")
    for event in outbox.pending.values():
        app.reject(event, "not acknowledged before the client stopped")
    logger.info("stopped; %d events reported undelivered", len(outbox.pending))


async def stay_connected(app, outbox):
    session = uuid.uuid4().hex
    backoff = Backoff(base_s=0.05, cap_s=1.0, rng=random.Random(app.seed))
    while not app.stopping.is_set():
        try:
            async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                await websocket.send(json.dumps({"session": session}))
                outbox.websocket = websocket
                backoff.reset()
                await exchange(websocket, outbox)
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
            logger.info("connection lost: %r", exc)
        finally:
            outbox.websocket = None
        await asyncio.sleep(backoff.next_delay())


async def exchange(websocket, outbox):
    """Send events and read acknowledgements until the connection closes."""
    async with asyncio.TaskGroup() as tasks:
        sender = tasks.create_task(send_events(websocket, outbox))
        reader = tasks.create_task(read_acks(websocket, outbox))
        await asyncio.wait([sender, reader], return_when=asyncio.FIRST_COMPLETED)
        sender.cancel()
        reader.cancel()


async def send_events(websocket, outbox):
    # A new connection starts from the oldest unacknowledged event.
    sent_upto = -1
    try:
        while True:
            for seq, event in outbox.after(sent_upto):
                await websocket.send(json.dumps({"seq": seq, "body": event}))
                sent_upto = seq
            outbox.changed.clear()
            if not outbox.after(sent_upto):
                await outbox.changed.wait()
    except ConnectionClosed:
        pass  # the reader sees the close too


async def read_acks(websocket, outbox):
    try:
        async for frame in websocket:
            outbox.ack(json.loads(frame)["ack"])
    except ConnectionClosed:
        pass  # closed: stay_connected reconnects
