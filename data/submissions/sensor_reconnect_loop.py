"""A sensor client that streams readings and reconnects automatically.

Readings are taken from a queue and sent as JSON; if the server goes away the
client logs the error, waits a moment and connects again.
"""

import asyncio
import json
import logging
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("sensor")
URI = "ws://localhost:8765/readings"


async def stream_readings(websocket, readings: asyncio.Queue) -> None:
    while True:
        reading = await readings.get()
        await websocket.send(json.dumps(reading))


async def run_client(readings: asyncio.Queue) -> None:
    while True:
        try:
            async with connect(URI, ping_interval=20, ping_timeout=10) as websocket:
                log.info("connected to %s", URI)
                await stream_readings(websocket, readings)
        except (ConnectionClosed, OSError) as exc:
            log.warning("connection lost (%s); reconnecting in 1 second", exc)
            await asyncio.sleep(1)


async def main() -> None:
    readings: asyncio.Queue = asyncio.Queue(maxsize=1000)

    async def sample() -> None:
        while True:
            await readings.put({"t": time.time(), "celsius": 21.5})
            await asyncio.sleep(0.5)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(sample())
        tasks.create_task(run_client(readings))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
