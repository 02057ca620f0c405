"""Production-ready WebSocket server and client.

Changes from your original version:

- logging instead of print, with a logger per module;
- error handling: a failing message no longer kills the connection, and
  disconnects are logged instead of raising;
- heartbeats: websockets pings every 20 seconds and closes the connection if
  the pong takes longer than 20 seconds, so dead connections get cleaned up;
- automatic reconnection with exponential backoff (1 s, 2 s, 4 s... up to 30 s);
- background tasks are cancelled when a connection ends.

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the messages your application produces and
``app.process()`` for your business logic.)
"""

import asyncio
import logging

from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

PING_INTERVAL = 20  # seconds between heartbeats
PING_TIMEOUT = 20  # seconds to wait for the pong
RECONNECT_DELAY = 1  # first retry after 1 second, doubling each time
MAX_RECONNECT_DELAY = 30

SERVE_OPTIONS = {"ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT}


async def handler(websocket, app):
    logger.info("client connected: %s", websocket.id)
    pusher = asyncio.create_task(push_updates(websocket, app))
    try:
        async for message in websocket:
            try:
                reply = await app.process(message)
            except Exception:
                logger.exception("failed to process a message")
                continue
            if reply is not None:
                await websocket.send(reply)
    except ConnectionClosed:
        logger.info("client disconnected: %s", websocket.id)
    finally:
        pusher.cancel()


async def push_updates(websocket, app):
    async for update in app.outgoing():
        await websocket.send(update)


async def client(app):
    delay = RECONNECT_DELAY
    while True:
        try:
            async with app.connect(ping_interval=PING_INTERVAL,
                                   ping_timeout=PING_TIMEOUT) as websocket:
                logger.info("connected")
                delay = RECONNECT_DELAY  # reset the backoff after a successful connection
                await run_session(websocket, app)
                return  # the application has nothing more to send
        except (ConnectionClosed, OSError) as exc:
            logger.warning("connection lost (%s), retrying in %d s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RECONNECT_DELAY)


async def run_session(websocket, app):
    async def receive():
        async for message in websocket:
            await app.deliver(message)

    receiver = asyncio.create_task(receive())
    try:
        async for message in app.outgoing():
            await websocket.send(message)
    finally:
        receiver.cancel()
