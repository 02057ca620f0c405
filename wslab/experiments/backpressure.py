"""Lesson 05's experiments: what the library's limits bound, and the overflow policies.

Introduced in notebooks/05_backpressure.ipynb.

- :func:`library_limits` measures, on a plain loopback connection (no lab, no
  proxy), what ``websockets``' three limits bound: ``max_size`` (the largest
  message accepted: above it the receiver closes with 1009), ``max_queue``
  (frames received and not yet read: above it the library stops reading the
  socket) and ``write_limit`` (bytes buffered for sending: above it ``send()``
  waits). It counts how many bytes a client can send to a server that never
  reads before ``send()`` waits, against what those two limits account for:
  the rest sits in the kernel's socket buffers, which no option of the
  library bounds (a lab loop's sockets keep fixed sizes, :mod:`wslab.clock`).
- :func:`flood_close_code` runs the production server against a client that
  ignores its credit (it sends without waiting for acknowledgements) and
  returns the close code it gets: 1008, "flow control violated".
- :func:`overflow_policies` runs the production design with a small capacity
  under each overflow policy (``block``, ``reject``, ``drop_oldest``), and
  :func:`policies_figure` draws the three runs side by side.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from .. import plots
from ..clock import in_lab_loop
from ..contract import Design
from ..designs.production import design
from ..faults import FaultPlan, SlowConsumer
from ..lab import arun
from ..production import envelope, server
from ..production.settings import DEFAULT
from ..run import Run
from ..scenarios import Scenario
from ..workload import Workload

POLICIES = ("block", "reject", "drop_oldest")


@dataclass(frozen=True)
class LibraryLimits:
    """What :func:`library_limits` measured (sizes in bytes)."""

    max_size: int
    oversized_close_code: int | None  # the close code a message over max_size got
    max_queue: int
    write_limit: int
    message_bytes: int
    sent_before_send_waited: int  # bytes send() accepted from a peer that never reads

    @property
    def library_bound_bytes(self) -> int:
        """What max_queue and write_limit account for: the receiver's frames
        not yet read, plus the sender's write buffer."""
        return self.max_queue * self.message_bytes + self.write_limit

    @property
    def kernel_bytes(self) -> int:
        """The rest: bytes held by the two kernels' socket buffers."""
        return max(0, self.sent_before_send_waited - self.library_bound_bytes)


@in_lab_loop()
async def library_limits(*, max_size: int = 1024, max_queue: int = 4,
                         write_limit: int = 16 * 1024, message_bytes: int = 1024,
                         wait_s: float = 0.5, most_bytes: int = 64 * 2**20) -> LibraryLimits:
    """Measure what websockets' limits bound, on 127.0.0.1 (port 0).

    Two experiments, each with its own server:

    1. a client sends one message of ``max_size + 1`` bytes to a server with
       ``max_size``; the close code the client receives is recorded (1009,
       "message too big", expected);
    2. a server with ``max_queue`` that never reads, and a client with
       ``write_limit`` that sends ``message_bytes`` messages until one
       ``send()`` does not return within ``wait_s`` seconds (it is waiting for
       the write buffer to drain), or until ``most_bytes`` were sent. A send
       that need not wait returns without yielding to the event loop, so the
       timeout only decides how long to wait once it does.
    """
    code = await _oversized_close_code(max_size)
    sent = await _bytes_before_send_waits(max_queue, write_limit, message_bytes, wait_s,
                                          most_bytes)
    return LibraryLimits(max_size=max_size, oversized_close_code=code, max_queue=max_queue,
                         write_limit=write_limit, message_bytes=message_bytes,
                         sent_before_send_waited=sent)


async def _oversized_close_code(max_size: int) -> int | None:
    async def handler(websocket) -> None:
        try:
            await websocket.recv()
        except ConnectionClosed:
            pass  # closed by the library: the message was too big

    async with serve(handler, "127.0.0.1", 0, max_size=max_size, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", proxy=None, compression=None) as websocket:
            await websocket.send("x" * (max_size + 1))
            try:
                await websocket.recv()
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else None
    return None


async def _bytes_before_send_waits(max_queue: int, write_limit: int, message_bytes: int,
                                   wait_s: float, most_bytes: int) -> int:
    release = asyncio.Event()

    async def never_reads(websocket) -> None:
        await release.wait()
        # Its reading is paused, so it would not even notice the client is gone:
        # drop the connection rather than wait close_timeout for a polite close.
        websocket.transport.abort()

    message = "x" * message_bytes
    sent = 0
    async with serve(never_reads, "127.0.0.1", 0, max_queue=max_queue, compression=None,
                     close_timeout=0.1) as server:
        port = server.sockets[0].getsockname()[1]
        websocket = await connect(f"ws://127.0.0.1:{port}", proxy=None, compression=None,
                                  write_limit=write_limit, close_timeout=0.1)
        try:
            while sent < most_bytes:
                try:
                    await asyncio.wait_for(websocket.send(message), wait_s)
                except TimeoutError:
                    break  # send() is waiting: every buffer on the way is full
                sent += message_bytes
        finally:
            websocket.transport.abort()  # buffers full: a polite close would wait
            release.set()
    return sent


@in_lab_loop()
async def flood_close_code(*, messages: int = 4 * DEFAULT.window) -> int | None:
    """The close code the production server answers a client that ignores its credit.

    The client says hello like the production client, then sends ``messages``
    message frames as fast as it can, never waiting for an acknowledgement,
    to a server that processes one per 4 ms. The server's queue holds what
    the window allows (twice ``window``), so the flood overflows it. Returns
    the code of the close frame the client received (None if none came).
    """
    received: list[int | None] = []

    async def flooding_client(app) -> None:
        token = await app.fetch_token()
        async with app.connect() as websocket:
            await websocket.send(envelope.encode("hello", session="flooder", down_next=0,
                                                 token=token))
            await websocket.recv()  # the welcome
            try:
                seq = 0
                async for message in app.outgoing():
                    await websocket.send(envelope.encode("msg", seq=seq, body=message))
                    seq += 1
                await websocket.wait_closed()
            except ConnectionClosed:
                pass
            received.append(websocket.close_code)

    flood = Design("flooding client", handler=server.make_handler(DEFAULT),
                   client=flooding_client, serve_options=server.serve_options(DEFAULT))
    scenario = Scenario(
        "flood", "A client sends without waiting for credit; the server takes 4 ms a message.",
        Workload(count=messages, rate_per_s=20_000, direction="up"),
        FaultPlan([SlowConsumer(side="server", delay_s=0.004)]), settle_s=0.5,
        time_limit_s=10.0)
    await arun(flood, scenario)
    return received[0] if received else None


def policy_design(policy: str, *, capacity: int = 32, window: int = 8):
    """The production design with this overflow policy and a small capacity."""
    settings = replace(DEFAULT, capacity=capacity, window=window, overflow=policy)
    return design(f"{policy} (capacity {capacity})", settings)


async def overflow_policies(scenario: str | Scenario, *, capacity: int = 32,
                            window: int = 8) -> dict[str, Run]:
    """One run of :func:`policy_design` per policy under ``scenario``, by policy."""
    return {policy: await arun(policy_design(policy, capacity=capacity, window=window), scenario)
            for policy in POLICIES}


def policies_figure(runs: dict[str, Run], *, bucket_s: float = 0.05) -> Figure:
    """The overflow policies side by side, one column per run, shared axes.

    Top: messages waiting over time: accepted by the design and not yet
    delivered (the bounded queue), and produced by the application but not
    yet taken (the producer waiting). Bottom: every message by the time it
    was produced, delivered (green), refused explicitly (orange) or lost (red).
    """
    columns = len(runs)
    fig, grid = plt.subplots(2, columns, sharex=True, sharey="row", layout="constrained",
                             figsize=(4.0 * columns, 5.2), height_ratios=(1.0, 0.8),
                             squeeze=False)
    span = max(max(run.end_s, max((s["t"] for s in run.samples), default=0.0))
               for run in runs.values())
    edges = np.arange(0.0, span + bucket_s, bucket_s)
    for column, (policy, run) in enumerate(runs.items()):
        top, bottom = grid[0][column], grid[1][column]
        times, depth = run.ledger.queue_series()
        top.plot(times, depth, drawstyle="steps-post", color=plots.QUEUE, linewidth=1.8,
                 label="accepted by the design,\nnot yet delivered")
        top.plot([s["t"] for s in run.samples], [s["producer_backlog"] for s in run.samples],
                 drawstyle="steps-post", color=plots.BACKLOG, linestyle="--", linewidth=1.5,
                 label="produced, not yet taken\n(the producer waits)")
        s = run.summary()
        top.set_title(f"{policy}: peak {s['peak_queue']} waiting in the design,\n"
                      f"{s['rejected']} refused, {s['lost']} lost, "
                      f"p99 latency {s['latency_ms']['p99'] / 1000:.2f} s", fontsize="medium")
        fates = {"delivered": [], "refused": [], "lost": []}
        for record in run.ledger.records.values():
            fate = ("delivered" if record.deliveries else
                    "refused" if record.rejected_s is not None else "lost")
            fates[fate].append(record.produced_s)
        below = np.zeros(len(edges) - 1)
        for fate, color in (("delivered", plots.DELIVERED), ("refused", plots.REJECTED),
                            ("lost", plots.LOST)):
            counts, _ = np.histogram(fates[fate], bins=edges)
            if counts.any() or fate != "lost":
                bottom.bar(edges[:-1], counts, width=bucket_s, bottom=below, align="edge",
                           color=color, label=fate, linewidth=0)
            below = below + counts
        bottom.set_xlabel("lab time since start (s)")
    grid[0][0].set_ylabel("messages waiting")
    grid[1][0].set_ylabel(f"messages produced\nper {bucket_s * 1000:g} ms")
    grid[0][-1].legend(fontsize=plots.LEGEND_FONT, loc="upper right")
    grid[1][-1].legend(fontsize=plots.LEGEND_FONT, loc="upper right")
    grid[0][0].set_xlim(0, span)
    scenarios = " / ".join(dict.fromkeys(run.scenario for run in runs.values()))
    fig.suptitle(f"{scenarios}: the overflow policies at the same capacity")
    return fig
