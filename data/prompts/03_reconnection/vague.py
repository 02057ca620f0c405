"""WebSocket client that reconnects automatically when the connection drops.

If the server restarts or the network fails, the client waits a moment and
connects again, forever. Sending and receiving run side by side with
``asyncio.gather``.

(Lesson 03's storm runs at a hundredth of production's time scale:
``RECONNECT_DELAY`` stands for 1 s.)
"""

import asyncio
import logging

logger = logging.getLogger(__name__)

RECONNECT_DELAY = 0.01  # seconds to wait before reconnecting


async def handler(websocket, app):
    """Server: process every message the client sends."""
    async for message in websocket:
        reply = await app.process(message)
        if reply is not None:
            await websocket.send(reply)


async def send_messages(websocket, app):
    async for message in app.outgoing():
        await websocket.send(message)


async def receive_messages(websocket, app):
    async for message in websocket:
        await app.deliver(message)


async def client(app):
    """Client: stay connected; reconnect whenever the connection is lost."""
    while True:
        try:
            async with app.connect() as websocket:
                logger.info("Connected to %s", app.uri)
                await asyncio.gather(
                    send_messages(websocket, app),
                    receive_messages(websocket, app),
                )
        except Exception as exc:  # server down, network error, connection closed...
            logger.info("Connection lost (%s). Reconnecting in %s s...", exc, RECONNECT_DELAY)
        await asyncio.sleep(RECONNECT_DELAY)
