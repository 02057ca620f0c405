"""At-least-once WebSocket delivery with a bounded send window.

Asked for: "A websockets client that never loses a message: the server must
acknowledge each one, the client resends anything unacknowledged after a
timeout or a reconnect, and at most 32 messages may be unacknowledged at a
time so a slow server cannot make it use unbounded memory."
"""

import asyncio
import json
import logging
import random
import time

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

WINDOW = 32  # messages in flight at most
ACK_TIMEOUT = 0.3  # seconds before an unacknowledged message is sent again


async def handler(websocket, app):
    async def push_updates():
        async for update in app.outgoing():
            await websocket.send(json.dumps({"type": "push", "body": update}))

    pusher = asyncio.create_task(push_updates())
    try:
        async for raw in websocket:
            message = json.loads(raw)
            reply = await app.process(message["body"])
            if reply is not None:
                await websocket.send(json.dumps({"type": "push", "body": reply}))
            await websocket.send(json.dumps({"type": "ack", "id": message["id"]}))
    finally:
        pusher.cancel()


async def client(app):
    pending = {}  # id -> [body, time last sent]
    window = asyncio.Semaphore(WINDOW)
    ready = asyncio.Queue()  # ids to send on the current connection
    next_id = 0

    async def produce():
        nonlocal next_id
        async for body in app.outgoing():
            await window.acquire()  # wait while WINDOW messages are unacknowledged
            pending[next_id] = [body, None]
            ready.put_nowait(next_id)
            next_id += 1

    async def send(websocket):
        while True:
            msg_id = await ready.get()
            if msg_id in pending:
                pending[msg_id][1] = time.monotonic()
                await websocket.send(json.dumps({"id": msg_id, "body": pending[msg_id][0]}))

    async def receive(websocket):
        async for raw in websocket:
            message = json.loads(raw)
            if message["type"] == "ack":
                if pending.pop(message["id"], None) is not None:
                    window.release()
            else:
                await app.deliver(message["body"])

    async def resend_late():
        while True:
            await asyncio.sleep(ACK_TIMEOUT / 3)
            now = time.monotonic()
            for msg_id, (_, sent) in list(pending.items()):
                if sent is not None and now - sent > ACK_TIMEOUT:
                    pending[msg_id][1] = now
                    ready.put_nowait(msg_id)

    producer = asyncio.create_task(produce())
    attempt = 0
    try:
        while True:
            try:
                async with app.connect() as websocket:
                    attempt = 0
                    for msg_id in sorted(pending):  # everything unacknowledged, again
                        ready.put_nowait(msg_id)
                    tasks = [asyncio.create_task(job) for job in
                             (send(websocket), receive(websocket), resend_late())]
                    try:
                        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
            except (ConnectionClosed, InvalidHandshake, OSError) as exc:
                logger.warning("connection lost: %s", exc)
            await asyncio.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
            attempt += 1
    finally:
        producer.cancel()
