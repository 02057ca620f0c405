"""Reconnection the library's way: ``async for websocket in connect(...)`` (lesson 03).

``websockets`` reconnects by itself when the client iterates over
``connect()``. Its defaults (websockets 17, ``websockets.client.backoff``,
``BACKOFF_*``): after a failed attempt, a random first delay of up to 5 s,
then 3.1 s, 5.0 s, 8.1 s... (× 1.618) until 90 s, then 90 s for ever, with no
jitter after the first. A connection that opened resets them, and when it
closes the next attempt is immediate. It retries failed connection attempts;
a connection that dies while in use raises ``ConnectionClosed`` in the loop's
body, which the code must catch and ``continue`` (the documented pattern).
What it does not do: keep the messages that were in flight. Those are lost.

Two designs, one client:

- :data:`DEFAULTS` runs it with the library's defaults, at full scale (lab
  time is virtual: a minute of it costs milliseconds). Lesson 03 measures
  what a client really waits.
- :data:`DESIGN` (``library_reconnect``, the name the grader knows) scales the
  delays 100× down, because the standard scenarios are scaled down themselves
  (outages of tenths of a second, runs of a few seconds): at full scale a
  client would still be waiting when they end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator

from websockets.client import backoff
from websockets.exceptions import ConnectionClosed

from ..contract import Design
from .naive import handler  # the same server: only the client changes

SCALE = 0.01  # DESIGN's delays: a hundredth of the library's


def scaled_library_delays() -> Generator[float]:
    """The library's own backoff generator, its delays times :data:`SCALE`."""
    return backoff(initial_delay=5.0 * SCALE, min_delay=3.1 * SCALE, max_delay=90.0 * SCALE,
                   factor=1.618)


async def client(app, *, reconnect_delays: Callable[[], Generator[float]] = backoff,
                 open_timeout: float | None = 10) -> None:
    """The client, with the library's defaults unless told otherwise."""
    async for websocket in app.connect(reconnect_delays=reconnect_delays,
                                       open_timeout=open_timeout):
        sender = asyncio.create_task(send_all(websocket, app))
        try:
            async for message in websocket:
                await app.deliver(message)
        except ConnectionClosed:
            continue  # the documented pattern: the library reconnects
        finally:  # the connection ended: stop sending
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


async def scaled_client(app) -> None:
    """:func:`client` with its delays 100× shorter and 2 s to open (:data:`DESIGN`)."""
    await client(app, reconnect_delays=scaled_library_delays, open_timeout=2)


async def send_all(websocket, app):
    while (message := await app.next_message()) is not None:
        await websocket.send(message)
    await asyncio.Future()


DESIGN = Design(
    "library_reconnect",
    handler=handler,
    client=scaled_client,
    description="The naive design, reconnecting with websockets' own `async for ... in "
    "connect()` (its delays scaled 100× down, like the standard scenarios): reconnects, "
    "but keeps no message.",
)

DEFAULTS = Design(
    "library_reconnect, defaults",
    handler=handler,
    client=client,
    description="The naive design, reconnecting with websockets' own `async for ... in "
    "connect()` and its default delays, at full scale (lesson 03): reconnects, but keeps "
    "no message.",
)
