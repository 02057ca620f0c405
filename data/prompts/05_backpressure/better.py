"""Sensor ingestion over WebSockets with bounded memory, end to end.

Where a reading can wait, and what bounds it:

1. In the sensor's outbox, ``asyncio.Queue(maxsize=OUTBOX_SIZE)``. Policy when
   full: **block**. ``await outbox.put(...)`` waits, so the sensor produces no
   faster than the server saves. (Alternatives: reject the new reading, or drop
   the oldest one for data a newer reading supersedes; both must tell the
   producer.)
2. On the wire and in the server's queue: at most ``WINDOW`` readings. The
   client sends only with credit; the server gives one credit back (an "ack")
   per reading saved, and closes with 1008 a client that sends beyond it.
3. In websockets' own buffers, bounded by the options below. The kernel's
   socket buffers are not bounded by any of them; credit keeps them nearly
   empty.

At most OUTBOX_SIZE + WINDOW + 1 readings wait anywhere (the +1: a reading the
sensor has in hand while it waits for room).
"""

import asyncio
import logging

from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 100  # readings the sensor may buffer: 0.4 s of saving at 250/s
WINDOW = 16  # readings unacknowledged at once: enough to keep the worker busy
ACK = "ack"

MAX_MESSAGE_BYTES = 64 * 1024  # max_size: a larger message is refused (close 1009)
# max_queue: frames received and not yet read before websockets stops reading
# the socket. Credit already bounds what arrives; this is the safety net.
# write_limit: bytes buffered for sending above which send() waits.
SERVE_OPTIONS = {"max_size": MAX_MESSAGE_BYTES, "max_queue": WINDOW, "write_limit": 16 * 1024}
CONNECT_OPTIONS = dict(SERVE_OPTIONS)


async def handler(websocket, app):
    """Reader and worker joined by a bounded queue; one ack per reading saved."""
    queue = asyncio.Queue(maxsize=WINDOW)  # credit keeps it from ever being full

    async def worker():
        while True:
            reading = await queue.get()
            await app.process(reading)  # save to the database (about 4 ms)
            try:
                await websocket.send(ACK)  # one credit back to the sensor
            except ConnectionClosed:
                pass  # the sensor is gone; the reading is saved anyway
            queue.task_done()

    async with asyncio.TaskGroup() as tasks:
        worker_task = tasks.create_task(worker())
        async for reading in websocket:
            try:
                queue.put_nowait(reading)
            except asyncio.QueueFull:
                logger.warning("sensor %s sent beyond its credit", websocket.id)
                await websocket.close(1008, "flow control violated")
                break
        await queue.join()  # save what was accepted before returning
        worker_task.cancel()


async def send_with_credit(websocket, outbox, credit):
    while True:
        await credit.acquire()  # wait for the server to have room
        reading = await outbox.get()
        await websocket.send(reading)
        outbox.task_done()


async def receive_acks(websocket, credit, app):
    async for frame in websocket:
        if frame == ACK:
            credit.release()
        else:
            await app.deliver(frame)  # anything else is for the application
    raise ConnectionError("connection closed with readings unacknowledged")


async def client(app):
    outbox = asyncio.Queue(maxsize=OUTBOX_SIZE)
    credit = asyncio.Semaphore(WINDOW)
    async with app.connect(**CONNECT_OPTIONS) as websocket, asyncio.TaskGroup() as tasks:
        sender = tasks.create_task(send_with_credit(websocket, outbox, credit))
        receiver = tasks.create_task(receive_acks(websocket, credit, app))
        async for reading in app.outgoing():
            await outbox.put(reading)  # full: the sensor waits here (backpressure)
        await outbox.join()  # every reading handed to the socket...
        for _ in range(WINDOW):  # ...and acknowledged: all credit back
            await credit.acquire()
        sender.cancel()
        receiver.cancel()
