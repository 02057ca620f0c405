"""A WebSocket server that processes messages in the background.

Each connection gets a producer (reads from the socket into a queue) and a
consumer (processes queued messages and sends back the result), so slow
processing never blocks reading.
"""

import asyncio
import logging

from websockets.asyncio.server import serve

logger = logging.getLogger(__name__)


async def process(message: str) -> str:
    await asyncio.sleep(0.1)  # simulate slow work (a database, a model...)
    return message.upper()


async def producer(websocket, queue: asyncio.Queue) -> None:
    async for message in websocket:
        await queue.put(message)


async def consumer(websocket, queue: asyncio.Queue) -> None:
    while True:
        message = await queue.get()
        result = await process(message)
        await websocket.send(result)
        queue.task_done()


async def handler(websocket) -> None:
    logger.info("client connected: %s", websocket.id)
    queue = asyncio.Queue()
    await asyncio.gather(producer(websocket, queue), consumer(websocket, queue))


async def main() -> None:
    async with serve(handler, "0.0.0.0", 8765, ping_interval=20, ping_timeout=20) as server:
        await server.serve_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
