"""Reliable order streaming over WebSockets with asyncio and websockets.

Every order gets a unique id. The server confirms each order it receives with an
``{"type": "ack", "id": ...}`` message. The client keeps every unconfirmed order
and resends it when no confirmation arrived within ``ACK_TIMEOUT`` seconds, so an
order is never lost, even if the connection drops: after reconnecting, the retry
loop sends everything still unconfirmed.

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the orders the application produces and ``app.process()``
for the server's handling of one order.)
"""

import asyncio
import json
import logging
import time
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

ACK_TIMEOUT = 0.3  # seconds to wait for a confirmation before resending
RETRY_INTERVAL = 0.1  # how often the client looks for unconfirmed orders
RECONNECT_DELAY = 0.1  # seconds between reconnection attempts


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    """Handle each order, then confirm it to the client."""
    try:
        async for raw in websocket:
            message = json.loads(raw)
            await app.process(message["order"])
            await websocket.send(json.dumps({"type": "ack", "id": message["id"]}))
    except ConnectionClosed:
        logger.info("client disconnected")


# ---------------------------------------------------------------- client

async def client(app):
    pending = {}  # order id -> {"order": ..., "sent_at": ...}, until confirmed
    outbox = asyncio.Queue()  # ids of orders to send now

    async def collect_orders():
        async for order in app.outgoing():
            order_id = str(uuid.uuid4())
            pending[order_id] = {"order": order, "sent_at": None}
            outbox.put_nowait(order_id)

    async def retry_unconfirmed():
        # Resend any order that was not confirmed in time.
        while True:
            await asyncio.sleep(RETRY_INTERVAL)
            now = time.monotonic()
            for order_id, entry in list(pending.items()):
                if entry["sent_at"] is not None and now - entry["sent_at"] > ACK_TIMEOUT:
                    entry["sent_at"] = now
                    outbox.put_nowait(order_id)

    async def send_orders(websocket):
        while True:
            order_id = await outbox.get()
            entry = pending.get(order_id)
            if entry is None:
                continue  # confirmed in the meantime
            entry["sent_at"] = time.monotonic()
            await websocket.send(json.dumps({"id": order_id, "order": entry["order"]}))

    async def read_confirmations(websocket):
        async for raw in websocket:
            message = json.loads(raw)
            if message.get("type") == "ack":
                pending.pop(message["id"], None)  # confirmed: forget it

    collector = asyncio.create_task(collect_orders())
    retrier = asyncio.create_task(retry_unconfirmed())
    try:
        while True:
            try:
                async with app.connect() as websocket:
                    logger.info("connected, %d orders unconfirmed", len(pending))
                    tasks = [asyncio.create_task(send_orders(websocket)),
                             asyncio.create_task(read_confirmations(websocket))]
                    try:
                        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
            except (ConnectionClosed, InvalidHandshake, OSError) as exc:
                logger.warning("connection lost: %s", exc)
            await asyncio.sleep(RECONNECT_DELAY)
    finally:
        collector.cancel()
        retrier.cancel()
