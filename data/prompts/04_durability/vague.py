"""Event streaming over WebSocket, with automatic reconnection.

The client keeps events in an asyncio.Queue, so nothing is lost while the
connection is down: events wait in the queue and are sent as soon as the client
has reconnected. If a send fails, the same event is retried on the next
connection. Reconnection uses exponential backoff (0.05 s, doubling up to 1 s).

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the events the application produces and
``app.process()`` for the server's handling of one event.)
"""

import asyncio
import logging

from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger("event_stream")

RECONNECT_DELAY_S = 0.05
MAX_RECONNECT_DELAY_S = 1.0


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    """Handle one client: process every event it sends."""
    try:
        async for event in websocket:
            await app.process(event)
    except ConnectionClosed:
        logger.info("client disconnected")


# ---------------------------------------------------------------- client

async def client(app):
    """Stream the application's events to the server, reconnecting as needed."""
    queue: asyncio.Queue[str] = asyncio.Queue()

    async def collect_events():
        # Events go into the queue whether or not we are connected.
        async for event in app.outgoing():
            await queue.put(event)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(collect_events())
        await send_forever(app, queue)


async def send_forever(app, queue):
    delay = RECONNECT_DELAY_S
    unsent = None  # an event whose send failed: retried first after reconnecting
    while True:
        try:
            async with app.connect() as websocket:
                logger.info("connected")
                delay = RECONNECT_DELAY_S  # reset the backoff once connected
                while True:
                    if unsent is None:
                        unsent = await queue.get()
                    await websocket.send(unsent)
                    unsent = None  # sent successfully
        except (ConnectionClosed, InvalidHandshake, OSError) as exc:
            logger.info("connection lost (%s); reconnecting in %.2f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RECONNECT_DELAY_S)
