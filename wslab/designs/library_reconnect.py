"""Reconnection the library's way: ``async for websocket in connect(...)`` (lesson 03).

``websockets`` reconnects by itself when the client iterates over
``connect()``: it retries after a random first delay (up to 5 s), then after
3.1 s, 5 s, 8.1 s... (× 1.618, up to 90 s), with no jitter after the first,
and resets after a connection succeeds. Here those delays are the library's own
generator scaled down 100× to the lab's time. It retries failed connection
attempts; a connection that dies while in use raises ``ConnectionClosed`` in
the loop's body, which the code must catch and ``continue`` (the documented
pattern). What it does not do: keep the messages that were in flight. Those
are lost.
"""

from __future__ import annotations

import asyncio

from websockets.client import backoff
from websockets.exceptions import ConnectionClosed

from ..contract import Design
from .naive import handler  # the same server: only the client changes

SCALE = 0.01  # the lab's time runs about a hundred times faster


def scaled_library_delays():
    """The library's own backoff generator, its delays times :data:`SCALE`."""
    return backoff(initial_delay=5.0 * SCALE, min_delay=3.1 * SCALE, max_delay=90.0 * SCALE,
                   factor=1.618)


async def client(app):
    async for websocket in app.connect(reconnect_delays=scaled_library_delays, open_timeout=2):
        sender = asyncio.create_task(send_all(websocket, app))
        try:
            async for message in websocket:
                await app.deliver(message)
        except ConnectionClosed:
            continue  # the documented pattern: the library reconnects
        finally:  # the connection ended: stop sending
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


async def send_all(websocket, app):
    while (message := await app.next_message()) is not None:
        await websocket.send(message)
    await asyncio.Future()


DESIGN = Design(
    "library_reconnect",
    handler=handler,
    client=client,
    description="The naive design, reconnecting with websockets' own `async for ... in "
    "connect()` (its delays scaled 100× down): reconnects, but keeps no message.",
)
