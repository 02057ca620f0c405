"""Lesson 07's experiments: what waits behind what in one connection.

Lesson 07 (``notebooks/07_reading_and_writing.ipynb``) compares a single
receive-process-send loop with separate reader, worker and writer tasks. The
application's processing is sequential in both (requests are handled in
order); what differs is what *else* waits while a request is processed:

- :func:`request_reply_scenario`: 100 requests per second over a network with
  a round trip of about 20 ms, and a stretch of slow requests. It measures
  head-of-line blocking in the client: a client that waits for each reply
  before sending the next request is limited to one request per round trip.
- :func:`probe_client`: a pipelined client (at most ``max_in_flight``
  requests unanswered) that also pings the server every ``ping_every_s`` and
  records how long each ping waited for its pong (:func:`ping_waits`). A
  server whose loop processes while it should read leaves the socket unread
  once the library's buffer (``max_queue``, 16 frames) is full: the pings
  wait behind the requests, for as long as the processing takes.
- :func:`ping_experiment`: the same probe client against the single loop and
  against the three tasks (the handlers of the lesson's two prompt codes).
- :func:`keepalive_experiment`: the naive design with the production
  keepalive values (ping every 0.25 s, pong within 0.5 s) against the
  production design, under a slow server: the single loop trips its own
  keepalive (a false positive), the production channel does not.
- :func:`request_latency_ms` and :func:`peak_backlog`: the requests' own
  latency distribution, and how many waited in the client application.
- :func:`plot_ping_waits`: ping waits over time, one or more runs.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from websockets.exceptions import ConnectionClosed

from ..contract import Design
from ..designs import naive
from ..faults import FaultPlan, Latency, SlowConsumer
from ..lab import arun
from ..run import Run
from ..scenarios import Scenario
from ..workload import Workload

LESSON = "07_reading_and_writing"
PING_WAIT = "lesson07_ping_wait_seconds"  # the gauge the probe client sets, per ping
ACK = '{"ack": true}'  # what the better code answers to a request without a result
PRODUCTION_KEEPALIVE = {"ping_interval": 0.25, "ping_timeout": 0.5}


# Scenarios ---------------------------------------------------------------------


def request_reply_scenario(*, slow_delay_s: float = 0.1, count: int = 100,
                           one_way_s: float = 0.01, settle_s: float = 3.0) -> Scenario:
    """``count`` requests at 100/s, each answered (echo); the network adds
    ``one_way_s`` each way (a round trip of about twice that); requests whose
    processing starts between 0.3 and 0.5 s take ``slow_delay_s``.

    A generous ``settle_s`` so that a slow design is measured as late, not lost.
    """
    return Scenario(
        "slow_requests",
        f"{count} requests at 100/s, a {2 * one_way_s * 1000:g} ms round trip; "
        f"requests processed between 0.3 and 0.5 s take {slow_delay_s * 1000:g} ms.",
        Workload(count=count, rate_per_s=100, direction="up", echo=True),
        FaultPlan([Latency(start_s=0.0, delay_s=one_way_s),
                   SlowConsumer(side="server", start_s=0.3, duration_s=0.2,
                                delay_s=slow_delay_s)]),
        seed=70, settle_s=settle_s)


def busy_server_scenario(*, delay_s: float = 0.04, count: int = 80,
                         start_s: float = 0.15, duration_s: float = 0.7,
                         settle_s: float = 1.5) -> Scenario:
    """``count`` requests at 100/s on loopback (echo); from ``start_s`` for
    ``duration_s`` the server takes ``delay_s`` per request (slower than they
    come), so requests pile up in front of it."""
    return Scenario(
        "busy_server",
        f"{count} requests at 100/s; from {start_s:g} s for {duration_s:g} s the server "
        f"takes {delay_s * 1000:g} ms per request.",
        Workload(count=count, rate_per_s=100, direction="up", echo=True),
        FaultPlan([SlowConsumer(side="server", start_s=start_s, duration_s=duration_s,
                                delay_s=delay_s)]),
        seed=71, settle_s=settle_s)


# The probe client ---------------------------------------------------------------


def probe_client(*, max_in_flight: int = 32, ping_every_s: float = 0.05,
                 switch_after: int | None = None,
                 on_switch: Callable[[float], None] | None = None) -> Callable[[Any], Any]:
    """A client coroutine function for the design contract.

    It sends requests as they come, with at most ``max_in_flight`` unanswered,
    hands replies to the application (an ``ACK`` frame only returns a credit),
    and every ``ping_every_s`` sends a ping and records in the run's metrics
    (gauge :data:`PING_WAIT`) how long the pong took. The library's own
    keepalive is off: these pings measure, they never close anything.

    With ``switch_after=N`` it closes its first connection (1000) once N
    requests were answered and continues on a new one; ``on_switch`` is
    called with the time of that close (the exercise checks that the server
    handler of the first connection ended cleanly).
    """

    async def client(app) -> None:
        limit = switch_after
        while True:
            async with app.connect(ping_interval=None) as websocket:
                more = await _one_connection(app, websocket, limit, max_in_flight, ping_every_s)
                if more:
                    await websocket.close()
                    if on_switch is not None:
                        on_switch(app.now())
            if not more:
                return
            limit = None

    return client


async def _one_connection(app, websocket, limit: int | None, max_in_flight: int,
                          ping_every_s: float) -> bool:
    """Serve one connection; True when it stopped at ``limit`` (more to send)."""
    credit = asyncio.Semaphore(max_in_flight)
    stopped_at_limit = False

    async def write() -> None:
        nonlocal stopped_at_limit
        sent = 0
        while limit is None or sent < limit:
            await credit.acquire()
            request = await app.next_message()
            if request is None:  # no more requests: wait for the last replies
                credit.release()
                break
            await websocket.send(request)
            sent += 1
        else:
            stopped_at_limit = True
        for _ in range(max_in_flight):  # every reply back: nothing left in flight
            await credit.acquire()

    async def read() -> None:
        async for reply in websocket:
            if reply != ACK:
                await app.deliver(reply)
            credit.release()

    async def ping() -> None:
        while True:
            await asyncio.sleep(ping_every_s)
            sent_s = app.now()
            pong = await websocket.ping()
            await pong
            app.metrics.set(PING_WAIT, app.now() - sent_s, client=app.client_id,
                            sent_s=f"{sent_s:.4f}")

    async def quietly(coroutine) -> None:
        try:
            await coroutine
        except ConnectionClosed:
            pass  # the connection ended: so does this task

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(quietly(c)) for c in (write(), read(), ping())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
    return stopped_at_limit


def request_latency_ms(run: Run) -> dict[str, float]:
    """p50 / p99 / max of the requests alone (client → server, ids ``u…``): from
    the moment the application produced a request to the moment the server
    processed it, waiting in the client included."""
    from ..ledger import percentile

    waits = sorted(r.deliveries[0] - r.produced_s for r in run.ledger.records.values()
                   if r.msg_id.startswith("u") and r.deliveries)
    return {name: round(percentile(waits, q) * 1000, 1)
            for name, q in (("p50", 50), ("p99", 99), ("max", 100))}


def peak_backlog(run: Run) -> int:
    """The most requests the application had produced and the design not yet taken."""
    return max((s["producer_backlog"] for s in run.samples), default=0)


def ping_waits(run: Run) -> list[tuple[float, float]]:
    """``(sent_s, wait_s)`` of every ping the probe client got a pong for, by time."""
    waits = []
    for labels, value in run.metrics.snapshot().get(PING_WAIT, {}).items():
        fields = dict(part.split("=", 1) for part in labels.split(","))
        waits.append((float(fields["sent_s"]), value))
    return sorted(waits)


def longest_ping_wait_s(run: Run) -> float:
    """The longest a ping of the probe client waited for its pong (nan: no ping)."""
    waits = [w for _, w in ping_waits(run)]
    return max(waits) if waits else math.nan


# Designs --------------------------------------------------------------------------


def prompt_handlers() -> dict[str, Any]:
    """The server handlers of the lesson's two prompt codes: ``"single loop"``
    (the vague prompt's) and ``"three tasks"`` (the better prompt's)."""
    from ..prompts import load

    pair = load(LESSON)
    return {"single loop": pair.design("vague").handler,
            "three tasks": pair.design("better").handler}


def probe_design(name: str, handler: Callable[..., Any], **client_options: Any) -> Design:
    """``handler`` with the :func:`probe_client` (options passed on)."""
    return Design(name, handler=handler, client=probe_client(**client_options),
                  description=f"{name} server, pipelined client that measures ping waits")


def naive_with_keepalive() -> Design:
    """The naive design (lesson 01) with the production keepalive values on both
    sides: the library pings every 0.25 s and closes after 0.5 s without a pong."""

    async def client(app) -> None:
        async with app.connect(**PRODUCTION_KEEPALIVE) as websocket:
            asyncio.create_task(naive.send_all(websocket, app))  # as naive does
            async for message in websocket:
                await app.deliver(message)

    return Design("naive + tight keepalive", handler=naive.handler, client=client,
                  serve_options=dict(PRODUCTION_KEEPALIVE),
                  description="naive, with ping every 0.25 s and a 0.5 s pong timeout")


# Experiments ----------------------------------------------------------------------


async def ping_experiment(scenario: Scenario | None = None) -> dict[str, Run]:
    """The probe client against the single loop and the three tasks, under
    ``scenario`` (:func:`busy_server_scenario` by default)."""
    scenario = scenario or busy_server_scenario()
    return {name: await arun(probe_design(name, handler), scenario)
            for name, handler in prompt_handlers().items()}


def keepalive_scenario() -> Scenario:
    """120 messages at 100/s (no replies); from 0.2 s for 1 s the server takes
    60 ms per message: slower than they come, for longer than a pong timeout."""
    return Scenario(
        "busy_server_tight_keepalive",
        "120 messages at 100/s; from 0.2 s for 1 s the server takes 60 ms per message.",
        Workload(count=120, rate_per_s=100, direction="up"),
        FaultPlan([SlowConsumer(side="server", start_s=0.2, duration_s=1.0, delay_s=0.06)]),
        seed=72, settle_s=1.0)


async def keepalive_experiment() -> dict[str, Run]:
    """Naive with the production keepalive values against the production design,
    under :func:`keepalive_scenario`."""
    scenario = keepalive_scenario()
    return {"naive + tight keepalive": await arun(naive_with_keepalive(), scenario),
            "production": await arun("production", scenario)}


# Pictures -------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def plot_ping_waits(*runs: Run, labels: Sequence[str] | None = None,
                    timeout_s: float | None = None) -> Figure:
    """How long each ping waited for its pong, over time, one line per run;
    the slow-consumer windows shaded. ``timeout_s`` draws a keepalive timeout."""
    labels = list(labels) if labels is not None else [run.design for run in runs]
    fig, ax = plt.subplots(figsize=(9.0, 3.2), layout="constrained")
    for run in runs:
        for fault in run.faults.of(SlowConsumer):
            end = fault.end_s if fault.end_s is not None else run.end_s
            ax.axvspan(fault.start_s, end, color="#e7ba52", alpha=0.18, lw=0)
    for run, label, marker in zip(runs, labels, "os^v"):
        waits = ping_waits(run)
        if waits:
            ax.plot([t for t, _ in waits], [w * 1000 for _, w in waits], marker=marker,
                    ms=3.5, lw=1.2, label=f"{label} (longest {_ms(max(w for _, w in waits))})")
    if timeout_s is not None:
        ax.axhline(timeout_s * 1000, color="#d62728", ls="--", lw=1,
                   label=f"a {timeout_s:g} s keepalive timeout")
    ax.set_xlabel("ping sent at (lab s since start; shaded: slow processing)")
    ax.set_ylabel("wait for the pong (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("How long a ping waits for its pong")
    ax.legend(fontsize="small", loc="upper right")
    return fig
