"""Request/reply over WebSockets with separate reader, worker and writer tasks.

Server, per connection (three tasks in one asyncio.TaskGroup):
  reader  -> reads frames into a bounded inbox; never waits for processing, so
             the socket is always read and pings are always answered
  worker  -> processes requests one at a time, in order, puts results in the outbox
  writer  -> the only task that sends: results (or an ack for a request without one)

Client (two tasks): a writer that sends requests as they come, with at most
MAX_IN_FLIGHT unanswered (every reply returns a credit), and a reader that hands
over replies as they arrive.

When the connection closes, the reader ends normally and the other tasks are
cancelled: no task outlives its connection, no ExceptionGroup escapes.
"""

import asyncio
import json

from websockets.exceptions import ConnectionClosed

# Flow control: the client keeps at most MAX_IN_FLIGHT requests unanswered, so the
# server's inbox (twice that) can never fill: its reader never blocks.
MAX_IN_FLIGHT = 32
INBOX_SIZE = 2 * MAX_IN_FLIGHT
OUTBOX_SIZE = 2 * MAX_IN_FLIGHT

# Keepalive (time scaled down for the test lab): a ping every 0.25 s, a pong
# expected within 0.5 s. Safe only because the reader never stops reading.
PING_INTERVAL_S = 0.25
PING_TIMEOUT_S = 0.5
SERVE_OPTIONS = {"ping_interval": PING_INTERVAL_S, "ping_timeout": PING_TIMEOUT_S,
                 "max_queue": 16}

ACK = json.dumps({"ack": True})  # the answer to a request that has no result


async def run_until_first_done(*coroutines):
    """Run the coroutines in one TaskGroup; when the first one finishes, cancel
    the others. Each coroutine ends normally on ConnectionClosed, so closing the
    connection ends the group cleanly."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c) for c in coroutines]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()


# --- server ---------------------------------------------------------------

async def handler(websocket, app):
    inbox = asyncio.Queue(maxsize=INBOX_SIZE)
    outbox = asyncio.Queue(maxsize=OUTBOX_SIZE)
    await run_until_first_done(read_requests(websocket, inbox),
                               process_requests(app, inbox, outbox),
                               write_replies(websocket, outbox))


async def read_requests(websocket, inbox):
    try:
        async for message in websocket:
            await inbox.put(message)  # never waits: the client's credit bounds it
    except ConnectionClosed:
        pass  # the connection ended: so does this reader


async def process_requests(app, inbox, outbox):
    while True:
        request = await inbox.get()
        result = await app.process(request)  # slow requests only hold up this task
        await outbox.put(result if result is not None else ACK)


async def write_replies(websocket, outbox):
    try:
        while True:
            await websocket.send(await outbox.get())
    except ConnectionClosed:
        pass  # the reader sees the close too


# --- client ---------------------------------------------------------------

async def client(app):
    async with app.connect(ping_interval=PING_INTERVAL_S,
                           ping_timeout=PING_TIMEOUT_S) as websocket:
        credit = asyncio.Semaphore(MAX_IN_FLIGHT)
        await run_until_first_done(send_requests(app, websocket, credit),
                                   read_replies(app, websocket, credit))


async def send_requests(app, websocket, credit):
    try:
        while True:
            await credit.acquire()  # wait before taking a request: none is held in limbo
            request = await app.next_message()
            if request is None:
                break
            await websocket.send(request)
        # No more requests: wait for the last replies, then close politely.
        for _ in range(MAX_IN_FLIGHT - 1):
            await credit.acquire()
        await websocket.close()
    except ConnectionClosed:
        pass


async def read_replies(app, websocket, credit):
    try:
        async for reply in websocket:
            if reply != ACK:
                await app.deliver(reply)
            credit.release()
    except ConnectionClosed:
        pass
