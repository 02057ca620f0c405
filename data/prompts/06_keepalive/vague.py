"""WebSocket client and server that keep the connection alive and reconnect.

The client uses the reconnection built into websockets: iterating over
``connect()`` yields a new connection each time the previous one is lost, with
exponential backoff between attempts. Keepalive is built in too: websockets
sends a ping every 20 seconds and closes the connection if no pong arrives
within 20 seconds, so idle connections stay open through proxies and dead
ones are detected automatically. No extra configuration is needed.
"""

import logging

from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)


async def handler(websocket, app):
    """Receive updates from one client until it disconnects."""
    try:
        async for message in websocket:
            await app.process(message)
    except ConnectionClosed:
        logger.info("client disconnected")


async def client(app):
    """Send every update; reconnect automatically if the connection drops."""
    # app.connect() is websockets.connect(uri): iterating over it reconnects.
    async for websocket in app.connect():
        try:
            async for message in app.outgoing():
                await websocket.send(message)
            return  # nothing more to send
        except ConnectionClosed:
            logger.warning("connection lost, reconnecting...")
            continue
