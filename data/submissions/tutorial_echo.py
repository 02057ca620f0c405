"""A WebSocket echo server that also broadcasts to every connected client.

Run it with ``python tutorial_echo.py`` and connect to ws://localhost:8765.
"""

import asyncio

from websockets.asyncio.server import serve

# Keep track of every connected client so we can broadcast to all of them.
CLIENTS = set()


async def handler(websocket, path):
    CLIENTS.add(websocket)
    print(f"New client connected from {websocket.remote_address}")
    async for message in websocket:
        print(f"Received: {message}")
        await websocket.send(f"Echo: {message}")
        for client in CLIENTS:
            if client is not websocket:
                await client.send(message)
    CLIENTS.remove(websocket)
    print("Client disconnected")


async def main():
    async with serve(handler, "localhost", 8765):
        print("Server running on ws://localhost:8765")
        await asyncio.Future()  # run forever


asyncio.run(main())
