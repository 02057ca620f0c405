"""WebSocket event server with a background worker, and a client that reconnects.

Server: every connection gets its own queue and a worker task, so receiving is
never blocked by processing. A heartbeat task lets the client know the server is
alive. When the client leaves, the worker is cleaned up.

Client: sends events, and reconnects automatically when the server restarts.

Shutdown: the server stops cleanly on Ctrl+C or SIGTERM (``serve()`` closes every
connection with 1001, going away); the client stops when its task is cancelled.

(As the lab runs it: ``app.process`` is the server's processing of one event,
``app.outgoing()`` yields the client's events, ``app.connect()`` stands for
``websockets.connect(URI)``; the lab starts and stops the server itself.)
"""

import asyncio
import json
import logging

from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 0.5  # seconds between heartbeats
RECONNECT_DELAY = 0.5  # seconds to wait before reconnecting


# --- server -----------------------------------------------------------------

async def process_events(queue, app):
    """Background worker: process the queued events one at a time."""
    while True:
        event = await queue.get()
        try:
            await app.process(event)
        except Exception as exc:
            logger.error("failed to process event: %s", exc)


async def heartbeat(websocket):
    """Send a heartbeat regularly so the client knows the server is alive."""
    while True:
        try:
            await websocket.send(json.dumps({"type": "heartbeat"}))
        except Exception as exc:
            logger.warning("heartbeat failed: %s", exc)
        await asyncio.sleep(HEARTBEAT_INTERVAL)


async def handler(websocket, app):
    queue = asyncio.Queue()
    worker = asyncio.create_task(process_events(queue, app))
    asyncio.create_task(heartbeat(websocket))
    try:
        async for message in websocket:
            await queue.put(message)  # never blocks: the worker processes in the background
    except ConnectionClosed:
        logger.info("client disconnected")
    finally:
        worker.cancel()  # clean up the worker when the client leaves


# --- client -----------------------------------------------------------------

async def send_events(websocket, app):
    async for event in app.outgoing():
        await websocket.send(event)


async def receive_messages(websocket):
    async for message in websocket:
        data = json.loads(message)
        if data.get("type") == "heartbeat":
            continue
        logger.info("server says: %s", data)


async def client(app):
    while True:
        try:
            async with app.connect() as websocket:
                logger.info("connected")
                # Send and receive at the same time
                await asyncio.gather(send_events(websocket, app), receive_messages(websocket))
        except Exception as exc:
            logger.warning("connection lost (%s), reconnecting in %s s", exc, RECONNECT_DELAY)
            await asyncio.sleep(RECONNECT_DELAY)
