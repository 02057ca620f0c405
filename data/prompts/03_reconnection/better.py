"""WebSocket client that reconnects with capped exponential backoff and full jitter.

The server is unchanged. The client:

- tracks its connection state: connecting -> open -> backing off -> connecting...;
- before each new attempt waits a random delay in [0, min(MAX_DELAY, BASE_DELAY * 2**attempt)]
  ("full jitter"), so that clients dropped at the same moment do not come back at the
  same moment;
- resets the backoff only after a connection stayed open STABLE_AFTER seconds, so a
  server that accepts and drops at once cannot pull it into a tight loop;
- retries network errors, timeouts and 5xx answers; stops on any other refusal
  (401, 403, 404: retrying cannot help);
- takes a message from the application only while a connection is open: messages
  produced during an outage wait instead of being written to a dead connection.

Not covered: a message passed to send() just before the connection died is gone. send()
returns once the bytes are in the socket buffer, not when the server has them; keeping
messages until the server acknowledges them is the next step (an outbound queue).

Values are at the scale of lesson 03's storm, a hundredth of production's: BASE_DELAY
0.05 s stands for 5 s, MAX_DELAY 1 s for 100 s, STABLE_AFTER 1 s for 100 s.
"""

import asyncio
import logging
import random

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

logger = logging.getLogger(__name__)

BASE_DELAY = 0.05  # first ceiling: short enough that a blip costs little
MAX_DELAY = 1.0  # cap: a long outage still gets an attempt every MAX_DELAY / 2 on average
STABLE_AFTER = 1.0  # a connection that held this long resets the backoff
OPEN_TIMEOUT = 2.0  # a handshake slower than this counts as a failed attempt
RETRYABLE_STATUS = {500, 502, 503, 504}


def backoff_delay(attempt, rng):
    """Full jitter: uniform in [0, min(MAX_DELAY, BASE_DELAY * 2**attempt)]."""
    return rng.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))


async def handler(websocket, app):
    """Server (unchanged): process every message the client sends."""
    try:
        async for message in websocket:
            reply = await app.process(message)
            if reply is not None:
                await websocket.send(reply)
    except ConnectionClosed:
        pass  # the client reconnects by itself


async def client(app):
    """Client: connect, run until the connection dies, back off, connect again."""
    loop = asyncio.get_running_loop()
    rng = random.Random(app.seed)  # one generator per client, seeded: runs can be replayed
    attempt = 0
    while True:
        state, opened_at = "connecting", None
        try:
            async with app.connect(open_timeout=OPEN_TIMEOUT) as websocket:
                state, opened_at = "open", loop.time()
                logger.info("open after %d failed attempt(s)", attempt)
                await run_connection(websocket, app)
        except InvalidStatus as exc:
            if exc.response.status_code not in RETRYABLE_STATUS:
                logger.info("refused with %d: not retrying", exc.response.status_code)
                raise
            logger.info("%s: server busy", state)
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            logger.info("%s: %s", state, exc)
        if opened_at is not None and loop.time() - opened_at >= STABLE_AFTER:
            attempt = 0
        delay = backoff_delay(attempt, rng)
        attempt += 1
        state = "backing off"
        logger.info("%s: attempt %d in %.3f s", state, attempt, delay)
        await asyncio.sleep(delay)


async def run_connection(websocket, app):
    """Send and receive on one connection; return (or raise) when it ends."""
    sender = asyncio.create_task(send_messages(websocket, app))
    try:
        async for message in websocket:
            await app.deliver(message)
    finally:
        sender.cancel()  # never leave a sender writing to a dead connection
        await asyncio.gather(sender, return_exceptions=True)


async def send_messages(websocket, app):
    while (message := await app.next_message()) is not None:
        await websocket.send(message)
