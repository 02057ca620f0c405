"""A simple WebSocket chat server and client with websockets.

Asked for: "Write a Python WebSocket server and client with the websockets
library." The server replies to every message and pushes updates; the client
sends its messages and hands on what comes back.

(Adapted to wslab's design contract: ``app.process`` is the server's business
logic, ``app.outgoing()`` what each side has to send, ``app.deliver`` what the
client does with a message.)
"""

import asyncio

CLIENTS = set()  # everyone connected, for broadcasting


async def handler(websocket, app):
    CLIENTS.add(websocket)
    try:
        await asyncio.gather(receive_messages(websocket, app), push_updates(websocket, app))
    finally:
        CLIENTS.discard(websocket)


async def receive_messages(websocket, app):
    async for message in websocket:
        reply = await app.process(message)
        if reply is not None:
            await websocket.send(reply)


async def push_updates(websocket, app):
    async for update in app.outgoing():
        await websocket.send(update)


async def client(app):
    async with app.connect() as websocket:

        async def send_messages():
            async for message in app.outgoing():
                await websocket.send(message)

        async def receive_messages():
            async for message in websocket:
                await app.deliver(message)

        await asyncio.gather(send_messages(), receive_messages())
