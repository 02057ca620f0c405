"""A WebSocket client that reconnects automatically, and its server.

Asked for: "Make the client reconnect automatically if the connection drops,
with exponential backoff." The client keeps one connection open and, when it
drops, reconnects after an exponentially growing, jittered delay. Messages
are sent as soon as they are produced.
"""

import asyncio
import logging
import random

from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

BASE_DELAY = 0.05  # seconds
MAX_DELAY = 2.0


async def handler(websocket, app):
    pusher = asyncio.create_task(push_updates(websocket, app))
    try:
        async for message in websocket:
            reply = await app.process(message)
            if reply is not None:
                await websocket.send(reply)
    finally:
        pusher.cancel()


async def push_updates(websocket, app):
    async for update in app.outgoing():
        await websocket.send(update)


class ReconnectingClient:
    def __init__(self, app):
        self.app = app
        self.websocket = None

    async def run(self):
        sender = None
        attempt = 0
        try:
            while True:
                try:
                    async with self.app.connect() as websocket:
                        self.websocket = websocket
                        attempt = 0
                        logger.info("connected")
                        if sender is None:  # start sending once connected
                            sender = asyncio.create_task(self.send_outgoing())
                        async for message in websocket:
                            await self.app.deliver(message)
                except Exception as exc:
                    logger.warning("connection lost: %s", exc)
                finally:
                    self.websocket = None
                delay = min(MAX_DELAY, BASE_DELAY * 2 ** attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                logger.info("reconnecting in %.2f s", delay)
                await asyncio.sleep(delay)
        finally:
            if sender is not None:
                sender.cancel()

    async def send_outgoing(self):
        async for message in self.app.outgoing():
            if self.websocket is None:
                logger.warning("not connected, dropping message")
                continue
            try:
                await self.websocket.send(message)
            except ConnectionClosed:
                logger.warning("send failed, connection closed")


async def client(app):
    await ReconnectingClient(app).run()
