"""Lesson 07's section on shared mutable state: a registry every handler changes.

The usual broadcast server keeps a module-level ``CONNECTED = set()``: each
handler adds its connection and removes it in ``finally``, and a broadcaster
task walks the set and sends to each. The set is shared mutable state, changed
by concurrent handlers; asyncio makes each step between two ``await`` atomic,
but not the walk, once a ``send()`` inside it waits.

:func:`broadcast_race` runs that server for real (``websockets`` on loopback, in
virtual lab time): 20 clients that come and go, and one that stopped reading (a
phone in a tunnel), whose full buffers make a ``send()`` to it wait. The
broadcaster sends :data:`ROUNDS` updates, one of four ways (:data:`WAYS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from typing import Any

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from ..clock import run_in_lab_loop

ROUNDS = 100
INTERVAL_S = 0.05  # lab seconds between two updates
CLIENTS = 20  # clients that come and go (each stays 0.2 to 1 s, away up to 0.1 s)
UPDATE_BYTES = 16_000  # an update's size: random text, which permessage-deflate cannot shrink
_QUIET = logging.getLogger("wslab.experiments.shared_state")  # resets of leaving clients: expected
_QUIET.setLevel(logging.CRITICAL)

WAYS = {
    "walk the set": "for ws in CONNECTED: await ws.send(update)",
    "walk the set, errors caught": "the same, each send in try/except ConnectionClosed",
    "walk a snapshot": "for ws in list(CONNECTED): ..., errors caught",
    "websockets.broadcast()": "websockets.broadcast(CONNECTED, update): no await",
}


async def _race(way: str) -> dict[str, Any]:
    connected: set = set()  # the shared mutable state
    result: dict[str, Any] = {"way": way, "rounds": 0, "error": None, "stuck_buffered": 0}
    received: Counter = Counter()

    async def handler(ws: Any) -> None:
        connected.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connected.discard(ws)

    async def send(ws: Any, update: str) -> None:
        if way == "walk the set":
            await ws.send(update)
        else:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(update)

    async def broadcaster() -> None:
        try:
            for n in range(ROUNDS):
                await asyncio.sleep(INTERVAL_S)
                update = f"{n} " + random.Random(n).randbytes(UPDATE_BYTES // 2).hex()
                if way == "websockets.broadcast()":
                    websockets.broadcast(connected, update)
                else:
                    for ws in (list(connected) if way == "walk a snapshot" else connected):
                        await send(ws, update)
                result["rounds"] += 1
                result["stuck_buffered"] = max(
                    [result["stuck_buffered"]] + [ws.transport.get_write_buffer_size()
                                                  for ws in connected if ws.request.path == "/stuck"])
        except Exception as exc:  # the broadcaster dies: what killed it is the lesson's point
            result["error"] = f"{type(exc).__name__}: {exc}"

    async with serve(handler, "127.0.0.1", 0, logger=_QUIET) as server:
        port = server.sockets[0].getsockname()[1]
        end = asyncio.get_running_loop().time() + ROUNDS * INTERVAL_S

        async def coming_and_going(i: int) -> None:
            rng = random.Random(i)
            while asyncio.get_running_loop().time() < end:
                async with connect(f"ws://127.0.0.1:{port}/{i}", logger=_QUIET) as ws:
                    with contextlib.suppress(TimeoutError, ConnectionClosed):
                        async with asyncio.timeout(rng.uniform(0.2, 1.0)):
                            async for _ in ws:
                                received[i] += 1
                await asyncio.sleep(rng.uniform(0, 0.1))

        async def stuck() -> None:  # connected, and never reads again
            async with connect(f"ws://127.0.0.1:{port}/stuck", ping_interval=None,
                               logger=_QUIET) as ws:
                ws.transport.pause_reading()
                await asyncio.sleep(ROUNDS * INTERVAL_S)

        async with asyncio.TaskGroup() as group:
            group.create_task(stuck())
            group.create_task(broadcaster())
            for i in range(CLIENTS):
                group.create_task(coming_and_going(i))
    result["received"] = sum(received.values())
    return result


async def broadcast_race() -> dict[str, dict[str, Any]]:
    """Each way of :data:`WAYS`, run once: rounds sent, the error that ended the
    broadcaster (or None), updates the coming-and-going clients received, and
    the most bytes the server held for the client that stopped reading."""
    results = {}
    for way in WAYS:
        results[way] = await run_in_lab_loop(lambda way=way: _race(way), name=f"broadcast: {way}")
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'broadcaster':<30}{'rounds':>8}{'received':>10}{'held for stuck':>16}  ended by"]
    for way, r in results.items():
        lines.append(f"{way:<30}{r['rounds']:>8}{r['received']:>10}"
                     f"{r['stuck_buffered'] / 1024:>13,.0f} KiB  {r['error'] or '-'}")
    return "\n".join(lines)
