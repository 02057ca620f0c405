"""Reliable WebSocket messaging: acknowledged, resent after a reconnect, processed once.

Asked for: "A Python websockets server and client that never lose a message
across disconnects and server restarts, never process one twice, reconnect
with exponential backoff and jitter, and notice a dead connection within a
second." Every message carries an id; the server acknowledges each one after
processing it and remembers the ids it has processed; the client keeps every
unacknowledged message and sends it again after reconnecting.
"""

import asyncio
import itertools
import json
import logging
import random
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

PING_INTERVAL = 0.25  # seconds: a dead connection is noticed within ~0.75 s
PING_TIMEOUT = 0.5
CLOSE_TIMEOUT = 0.1  # a dead peer never answers the close handshake: don't wait 10 s
KEEPALIVE = {"ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT,
             "close_timeout": CLOSE_TIMEOUT}
SERVE_OPTIONS = KEEPALIVE


# Server -------------------------------------------------------------------------

async def handler(websocket, app):
    hello = json.loads(await websocket.recv())
    # The ids this client's messages already processed. In production this is a
    # database table; app.store is the lab's stand-in that survives restarts.
    processed = app.store.setdefault(("processed", hello["client"]), set())
    pusher = asyncio.create_task(push_updates(websocket, app))
    try:
        async for raw in websocket:
            frame = json.loads(raw)
            if frame["id"] not in processed:
                reply = await app.process(frame["body"])
                processed.add(frame["id"])
                if reply is not None:
                    await websocket.send(json.dumps({"push": reply}))
            await websocket.send(json.dumps({"ack": frame["id"]}))
    finally:
        pusher.cancel()


async def push_updates(websocket, app):
    async for update in app.outgoing():
        await websocket.send(json.dumps({"push": update}))


# Client -------------------------------------------------------------------------

class ReliableClient:
    def __init__(self, app):
        self.app = app
        self.client_id = uuid.uuid4().hex
        self.outbox = asyncio.Queue()  # produced, not sent yet
        self.unacked = {}  # id -> body: sent, not acknowledged yet
        self.ids = itertools.count()

    async def run(self):
        producer = asyncio.create_task(self.take_outgoing())
        try:
            await self.connect_forever()
        finally:
            producer.cancel()

    async def take_outgoing(self):
        async for message in self.app.outgoing():
            await self.outbox.put((next(self.ids), message))

    async def connect_forever(self):
        attempt = 0
        while True:
            try:
                async with self.app.connect(**KEEPALIVE) as websocket:
                    attempt = 0
                    await websocket.send(json.dumps({"client": self.client_id}))
                    for msg_id, body in sorted(self.unacked.items()):
                        await websocket.send(json.dumps({"id": msg_id, "body": body}))
                    await self.serve_connection(websocket)
            except (ConnectionClosed, InvalidHandshake, OSError) as exc:
                logger.warning("connection lost: %s", exc)
            delay = random.uniform(0, min(2.0, 0.05 * 2 ** attempt))  # full jitter
            attempt += 1
            await asyncio.sleep(delay)

    async def serve_connection(self, websocket):
        tasks = [asyncio.create_task(self.send_loop(websocket)),
                 asyncio.create_task(self.receive_loop(websocket))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise what ended it
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def send_loop(self, websocket):
        while True:
            msg_id, body = await self.outbox.get()
            self.unacked[msg_id] = body  # kept until acknowledged
            await websocket.send(json.dumps({"id": msg_id, "body": body}))

    async def receive_loop(self, websocket):
        async for raw in websocket:
            frame = json.loads(raw)
            if "ack" in frame:
                self.unacked.pop(frame["ack"], None)
            else:
                await self.app.deliver(frame["push"])
        raise ConnectionError("the server closed the connection")


async def client(app):
    await ReliableClient(app).run()
