"""Sensor ingestion over WebSockets.

The server gives each connection two tasks: a reader that receives readings
and puts them on a queue, and a worker that saves them to the database. The
reader never waits for a save, so slow database writes never hold up the
connection. The client streams its sensor's readings as they come.
"""

import asyncio
import logging

logger = logging.getLogger(__name__)


async def handler(websocket, app):
    logger.info("sensor connected: %s", websocket.id)
    queue = asyncio.Queue()  # readings waiting to be saved

    async def worker():
        while True:
            reading = await queue.get()
            await app.process(reading)  # save to the database (a few ms)
            queue.task_done()

    worker_task = asyncio.create_task(worker())
    try:
        async for reading in websocket:
            await queue.put(reading)  # returns at once: receiving never waits
        await queue.join()  # save what is left before the handler returns
    finally:
        worker_task.cancel()


async def client(app):
    async with app.connect() as websocket:  # websockets.connect("ws://localhost:8765")
        async for reading in app.outgoing():  # the sensor's readings
            await websocket.send(reading)
