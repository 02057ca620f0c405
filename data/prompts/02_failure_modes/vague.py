"""A WebSocket server that processes messages and pushes updates, and its client.

What "Write a Python WebSocket server and client using the websockets library"
typically returns: a handler that loops over incoming messages, a background
task for updates, a client that connects and sends.
"""

import asyncio


async def handler(websocket, app):
    updates = asyncio.create_task(send_updates(websocket, app))
    try:
        async for message in websocket:
            reply = await app.process(message)
            if reply is not None:
                await websocket.send(reply)
    finally:
        updates.cancel()


async def send_updates(websocket, app):
    async for update in app.outgoing():
        await websocket.send(update)


async def client(app):
    async with app.connect() as websocket:
        sender = asyncio.create_task(send_messages(websocket, app))
        try:
            async for message in websocket:
                await app.deliver(message)
        finally:
            sender.cancel()


async def send_messages(websocket, app):
    async for message in app.outgoing():
        await websocket.send(message)
