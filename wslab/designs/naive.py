"""The happy-path design: what a vague prompt gets (lesson 01).

"Write a Python WebSocket server and client" typically returns this: an
``async for`` loop that replies to each message, updates pushed from a
background task, a client that connects once and sends. It is correct on the
happy path, and lesson 01 measures the four ways it breaks.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import broadcast

from ..contract import Design


async def handler(websocket, app):
    # Push this client's updates in the background; nobody awaits this task.
    asyncio.create_task(push_updates(websocket, app))
    async for message in websocket:
        reply = await app.process(message)
        if reply is not None:
            await websocket.send(reply)


async def push_updates(websocket, app):
    async for update in app.outgoing():
        # broadcast() writes at once and never waits for a slow client.
        broadcast([websocket], update)


async def client(app):
    async with app.connect() as websocket:
        # Send in the background: fire and forget.
        asyncio.create_task(send_all(websocket, app))
        async for message in websocket:
            await app.deliver(message)


async def send_all(websocket, app):
    async for message in app.outgoing():
        await websocket.send(message)


DESIGN = Design(
    "naive",
    handler=handler,
    client=client,
    description="The happy-path handler and client a vague prompt gets: no reconnection, "
    "no acknowledgements, no backpressure, default keepalive.",
)
