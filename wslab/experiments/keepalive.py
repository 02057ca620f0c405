"""Lesson 06 (notebooks/06_keepalive.ipynb): how long a dead peer goes unnoticed,
when a keepalive calls a live peer dead, and how its pings keep an idle flow open.

`websockets`' keepalive is one loop per connection (``Connection.keepalive``):
sleep ``ping_interval`` (less the last round trip), send a ping, wait up to
``ping_timeout`` for its pong; no pong in time and it fails the connection
(close 1011, "keepalive ping timeout"). The application hears of it later
still: a client waits ``close_timeout`` for a closing handshake that a dead
network swallows, and only then does ``recv()`` or ``send()`` raise.

Everything here runs in lab time (:mod:`wslab.clock`, virtual by default), so
the values are real-world ones: the library's defaults (:data:`LIBRARY_DEFAULTS`:
20 s, 20 s, 10 s), pings seconds apart, a minute of updates, a 15 s latency
spike. A minute of keepalive costs milliseconds, and the figures are exact.

What this module measures, each on real connections through a
:class:`~wslab.proxy.FaultProxy` on 127.0.0.1:

- :func:`detect_dead_peer`: one connection, black-holed (bytes vanish, no socket
  closes) at a chosen phase of its keepalive: right after a pong came back
  (``"worst"``: a whole interval passes before the next ping) or right after
  a ping left (``"best"``: only the timeout). ``gave_up_s`` is from the black
  hole until the client's keepalive gives up (it fails the connection);
  ``closed_s`` until the application would see ``ConnectionClosed``.
- :func:`detection_sweep`: :func:`detect_dead_peer` for every ``(interval,
  timeout)`` pair and both phases, all connections at once;
  :func:`plot_detection` draws it against the bounds ``ping_timeout`` and
  ``ping_interval + ping_timeout``.
- :func:`pings_behind_data`: the false alarm met in real life: a server that
  processes slowly stops reading its socket, so the client's ping waits
  behind the data it already sent and its pong comes late.
- The keepalive's other job, in the full lab: :func:`idle_scenario` (a NAT
  that forgets a flow idle for 30 s, an update a minute) for a design with
  its pings switched off or set (:func:`with_keepalive`); :func:`forgotten_s`
  says when the NAT forgot a connection and :func:`plot_idle` draws the runs.

It also names the other scenarios the lesson runs in the full lab
(:func:`black_hole_scenario`, :func:`spike_scenario`) and builds the
production design with any keepalive values (:func:`keepalive_design`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .. import plots
from ..clock import in_lab_loop
from ..contract import ClientApp, Design
from ..designs.production import design as production_design
from ..errors import ConfigError
from ..faults import BlackHole, FaultPlan, IdleTimeout, Latency
from ..production.settings import DEFAULT, Settings
from ..proxy import HOST, FaultProxy
from ..run import Run
from ..scenarios import Scenario, get_scenario
from ..workload import Workload

__all__ = [
    "LIBRARY_DEFAULTS",
    "NAT_IDLE_S",
    "SPIKE_BEST_RTT_S",
    "SPIKE_WORST_RTT_S",
    "Detection",
    "PingsBehindData",
    "black_hole_scenario",
    "detect_dead_peer",
    "detection_sweep",
    "forgotten_s",
    "idle_scenario",
    "keepalive_design",
    "pings_behind_data",
    "plot_detection",
    "plot_idle",
    "spike_scenario",
    "with_keepalive",
]

Phase = Literal["worst", "best"]

# The keepalive values websockets uses when a program names none, read from
# connect()'s signature: {"ping_interval": 20, "ping_timeout": 20, "close_timeout": 10}.
LIBRARY_DEFAULTS: dict[str, float] = {
    name: inspect.signature(connect).parameters[name].default
    for name in ("ping_interval", "ping_timeout", "close_timeout")}

# The lab's latency spike: 300 ms ± 50 ms each way (a congested link), so a
# round trip (a ping and its pong) takes at most 0.7 s while it lasts.
SPIKE_DELAY_S, SPIKE_JITTER_S = 0.3, 0.05
SPIKE_WORST_RTT_S = round(2 * (SPIKE_DELAY_S + SPIKE_JITTER_S), 6)
SPIKE_BEST_RTT_S = round(2 * (SPIKE_DELAY_S - SPIKE_JITTER_S), 6)
SPIKE_START_S, SPIKE_DURATION_S = 5.0, 15.0

# The lab NAT's idle timeout (idle_scenario): longer than the library's 20 s ping
# interval, far shorter than an update a minute.
NAT_IDLE_S = 30.0


# Scenarios and designs the lesson runs in the lab ---------------------------------

def black_hole_scenario(*, start_s: float = 10.0, settle_s: float = 5.0) -> Scenario:
    """``idle_black_hole`` at a deployment's pace: an update a second for a
    minute, the flow's state lost at ``start_s`` by a middlebox (a NAT that
    rebooted or failed over: for 1 s the connections open then stay dead, new
    ones get through), then ``settle_s`` to finish. The flow is busy when it
    dies; :func:`idle_scenario` is the NAT that forgets idle flows. Long
    enough for the library's default keepalive (20 s, 20 s, then close_timeout
    10 s) to notice, and to lose what it sent meanwhile."""
    workload = Workload(count=60, rate_per_s=1, direction="up")
    return get_scenario("idle_black_hole").with_(
        description=f"A middlebox loses the flow's state at {start_s:g} s (a NAT reboot or "
                    "failover): bytes vanish, no socket closes.",
        workload=workload,
        faults=FaultPlan([BlackHole(start_s=start_s, duration_s=1.0)]),
        settle_s=settle_s, time_limit_s=workload.production_s + settle_s + 60.0)


def spike_scenario() -> Scenario:
    """``latency_spike`` as a congested link has it: round trips of 0.5–0.7 s
    (300 ms ± 50 ms each way) for 15 s from 5 s on, ten updates a second up
    for 20 s, no echoes (the lesson's prompt codes send no replies). A
    keepalive that pings every 9 s or more often sends a ping into it and
    waits for the pong there."""
    end_s = SPIKE_START_S + SPIKE_DURATION_S
    workload = Workload(count=200, rate_per_s=10, direction="up")
    return get_scenario("latency_spike").with_(
        description=f"Latency jumps to 300 ms (± 50 ms) both ways from {SPIKE_START_S:g} s "
                    f"to {end_s:g} s.",
        workload=workload,
        faults=FaultPlan([Latency(start_s=SPIKE_START_S, duration_s=SPIKE_DURATION_S,
                                  delay_s=SPIKE_DELAY_S, jitter_s=SPIKE_JITTER_S)]),
        settle_s=2.0, time_limit_s=workload.production_s + 60.0)


def idle_scenario(*, idle_s: float = NAT_IDLE_S, every_s: float = 60.0, updates: int = 4,
                  settle_s: float = 1.0) -> Scenario:
    """A client that sends ``updates`` updates, one every ``every_s`` (at 0, 60,
    120 and 180 s by default), through a NAT that forgets a flow no byte
    crossed for ``idle_s`` (an :class:`~wslab.faults.IdleTimeout` from 0 s
    until the next update would be due: ``updates * every_s``, 240 s). Between
    two updates the connection carries nothing, unless a keepalive sends
    pings. The run goes on ``settle_s`` after the NAT's window."""
    workload = Workload(count=updates, rate_per_s=1 / every_s, direction="up")
    nat = IdleTimeout(idle_s=idle_s, duration_s=updates * every_s)
    return Scenario(
        "idle_timeout",
        f"A NAT forgets a flow that no byte crossed for {idle_s:g} s; the client sends an "
        f"update every {every_s:g} s.",
        workload, FaultPlan([nat]), seed=11, settle_s=settle_s,
        time_limit_s=nat.end_s + settle_s + 60.0)


def with_keepalive(design: Design, ping_interval_s: float | None,
                   ping_timeout_s: float | None = LIBRARY_DEFAULTS["ping_timeout"],
                   name: str | None = None) -> Design:
    """``design`` with websockets' keepalive set on both sides, whatever its code
    says, and nothing else changed: ``ping_interval`` and ``ping_timeout`` go to
    ``serve()`` and to every ``app.connect()`` of its client. ``ping_interval_s``
    None switches the keepalive off (no pings at all): a common "fix" for
    "1011 keepalive ping timeout". Only for a client written as ``async def
    client(app)`` that connects with ``app.connect()``."""
    if design.client_shape != "pull":
        raise ConfigError(f"with_keepalive() needs a client written as `async def client(app)` "
                          f"that connects with app.connect(); {design.name!r} has a client object")
    keepalive = {"ping_interval": ping_interval_s, "ping_timeout": ping_timeout_s}

    async def client(app: ClientApp) -> None:
        connect = app.connect
        app.connect = lambda **kwargs: connect(**{**kwargs, **keepalive})  # type: ignore[method-assign]
        await design.client_main(app)

    pings = "pings off" if ping_interval_s is None else f"ping every {ping_interval_s:g} s"
    return replace(design, name=name or f"{design.name}, {pings}", client=client,
                   serve_options={**design.serve_options, **keepalive},
                   description=f"{design.description or design.name}; keepalive: {pings}")


def keepalive_design(ping_interval_s: float, ping_timeout_s: float,
                     name: str | None = None) -> Design:
    """The production design (:mod:`wslab.production`) with these keepalive
    values on both sides, and nothing else changed."""
    settings: Settings = replace(DEFAULT, ping_interval_s=ping_interval_s,
                                 ping_timeout_s=ping_timeout_s)
    return production_design(
        name or f"keepalive {ping_interval_s:g} s / {ping_timeout_s:g} s", settings,
        f"production, ping every {ping_interval_s:g} s, timeout {ping_timeout_s:g} s")


# Dead-peer detection ---------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    """How long one black-holed connection went unnoticed (seconds from the black hole).

    ``gave_up_s``: until the keepalive failed the connection (None: it never did
    within the time limit). ``closed_s``: until the application would see
    ``ConnectionClosed`` (``close_timeout`` later). ``reason``: the close frame
    the client sent ("1011 keepalive ping timeout"), or what went wrong.
    """

    ping_interval_s: float
    ping_timeout_s: float
    phase: Phase
    gave_up_s: float | None
    closed_s: float | None
    reason: str

    @property
    def bound_s(self) -> float:
        """The worst case: a whole interval, then the whole timeout."""
        return self.ping_interval_s + self.ping_timeout_s


async def _echo(websocket: ServerConnection) -> None:
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:
        pass


def _watch_pings(websocket: ClientConnection) -> tuple[asyncio.Queue, asyncio.Queue]:
    """Queues that receive a timestamp each time the keepalive sends a ping, and
    each time one of its pongs comes back.

    ``keepalive()`` calls ``self.ping()``; an attribute on the instance comes
    first, so wrapping the public method is enough (no private API).
    """
    loop = asyncio.get_running_loop()
    pings: asyncio.Queue[float] = asyncio.Queue()
    pongs: asyncio.Queue[float] = asyncio.Queue()
    original = websocket.ping

    async def ping(data=None):
        pong_received = await original(data)
        pings.put_nowait(loop.time())
        pong_received.add_done_callback(
            lambda f: pongs.put_nowait(loop.time()) if not f.cancelled() and not f.exception() else None)
        return pong_received

    websocket.ping = ping  # type: ignore[method-assign]
    return pings, pongs


def _watch_give_up(websocket: ClientConnection,
                   snapshot: Callable[[], int] = lambda: 0) -> asyncio.Future[tuple[float, int]]:
    """A future that gets (lab time, ``snapshot()``) at the moment the
    connection is failed while open: the keepalive's timeout (or a protocol error).

    ``keepalive()`` gives up by calling ``self.protocol.fail()`` (a public
    method of the Sans-I/O protocol); wrapping it on the instance sees the
    exact moment, with no polling.
    """
    loop = asyncio.get_running_loop()
    gave_up: asyncio.Future[tuple[float, int]] = loop.create_future()
    protocol = websocket.protocol
    original = protocol.fail

    def fail(code, reason=""):
        if protocol.state is State.OPEN and not gave_up.done():
            gave_up.set_result((loop.time(), snapshot()))
        return original(code, reason)

    protocol.fail = fail  # type: ignore[method-assign]
    return gave_up


@in_lab_loop()
async def detect_dead_peer(ping_interval_s: float, ping_timeout_s: float, *,
                           phase: Phase = "worst",
                           close_timeout_s: float = LIBRARY_DEFAULTS["close_timeout"]) -> Detection:
    """Black-hole one connection at the given phase of its keepalive; see :class:`Detection`.

    The server sends no pings of its own (``ping_interval=None``): this is the
    client's keepalive alone. The black hole comes after the first ping was
    answered: ``"worst"`` right when its pong arrives, ``"best"`` right when
    the second ping leaves (that ping is swallowed). ``close_timeout_s`` is
    the library's default (10 s) unless given. Times are rounded to the
    microsecond (lab time's tick).
    """
    loop = asyncio.get_running_loop()
    limit_s = ping_interval_s + ping_timeout_s + close_timeout_s + 1.0
    async with serve(_echo, HOST, 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with (FaultProxy(upstream_port=port, seed=0) as proxy,
                    connect(f"ws://{HOST}:{proxy.port}/c/0", proxy=None, compression=None,
                            ping_interval=ping_interval_s, ping_timeout=ping_timeout_s,
                            close_timeout=close_timeout_s) as websocket):
            pings, pongs = _watch_pings(websocket)
            gave_up_at = _watch_give_up(websocket)
            try:
                async with asyncio.timeout(2 * ping_interval_s + ping_timeout_s + 1.0):
                    await pongs.get()  # the first ping was answered
                    if phase == "best":
                        await pings.get()  # the first ping
                        await pings.get()  # the second one, just sent
            except TimeoutError:
                return Detection(ping_interval_s, ping_timeout_s, phase, None, None,
                                 "no pong before the black hole")
            start = loop.time()
            proxy.black_hole("both")
            closed = asyncio.ensure_future(websocket.wait_closed())
            await asyncio.wait([closed], timeout=limit_s)
            gave_up = round(gave_up_at.result()[0] - start, 6) if gave_up_at.done() else None
            if not closed.done():
                closed.cancel()
                return Detection(ping_interval_s, ping_timeout_s, phase, gave_up, None,
                                 f"still open {limit_s:g} s after the black hole")
            ended = round(loop.time() - start, 6)
            sent = websocket.protocol.close_sent
            reason = f"{sent.code} {sent.reason}" if sent is not None else "no close frame sent"
            return Detection(ping_interval_s, ping_timeout_s, phase,
                             gave_up if gave_up is not None else ended, ended, reason)


async def detection_sweep(intervals_s: Iterable[float], timeouts_s: Iterable[float], *,
                          close_timeout_s: float = LIBRARY_DEFAULTS["close_timeout"]
                          ) -> list[Detection]:
    """:func:`detect_dead_peer` for every (interval, timeout) pair, worst and best
    phase, all at once (each on a lab loop of its own)."""
    pairs = [(i, t) for i in intervals_s for t in timeouts_s]
    return list(await asyncio.gather(*(
        detect_dead_peer(i, t, phase=phase, close_timeout_s=close_timeout_s)
        for i, t in pairs for phase in ("worst", "best"))))


def plot_detection(detections: list[Detection]) -> Figure:
    """Time to notice a black hole against the ping interval, one color per timeout.

    For each measured pair: the range from the best phase to the worst (a
    bar with its two ends marked), the bound ``interval + timeout`` (dashed)
    and the floor ``timeout`` (dotted).
    """
    fig, ax = plt.subplots(figsize=(9.0, 4.0), layout="constrained")
    timeouts = sorted({d.ping_timeout_s for d in detections})
    colors = [plt.get_cmap("tab10")(k % 10) for k in range(len(timeouts))]
    intervals = sorted({d.ping_interval_s for d in detections})
    span = max(intervals) - min(intervals) if len(intervals) > 1 else 1.0
    width = span * 0.012
    for k, (timeout, color) in enumerate(zip(timeouts, colors)):
        offset = (k - (len(timeouts) - 1) / 2) * width * 2.5
        xs = [i + offset for i in intervals]
        ax.plot(intervals, [i + timeout for i in intervals], "--", color=color, linewidth=1.2,
                label=f"bound: interval + {timeout:g} s")
        ax.axhline(timeout, color=color, linestyle=":", linewidth=1)
        for x, interval in zip(xs, intervals):
            got = {d.phase: d.gave_up_s for d in detections
                   if d.ping_interval_s == interval and d.ping_timeout_s == timeout}
            worst, best = got.get("worst"), got.get("best")
            if worst is None or best is None:
                continue
            ax.plot([x, x], [best, worst], color=color, linewidth=4, alpha=0.45,
                    solid_capstyle="butt")
            ax.plot([x], [worst], "v", color=color, markersize=7)
            ax.plot([x], [best], "^", color=color, markersize=7)
    ax.plot([], [], "v", color="0.3", label="measured, black hole right after a pong")
    ax.plot([], [], "^", color="0.3", label="measured, black hole right after a ping")
    ax.plot([], [], ":", color="0.3", label="floor: the timeout alone")
    ax.set_xlabel("ping_interval (s)")
    ax.set_ylabel("seconds until the keepalive\ngives up on a dead peer")
    ax.set_xlim(0, max(intervals) * 1.08)
    ax.set_ylim(0, max(max(intervals) + max(timeouts),
                       max((d.gave_up_s or 0.0) for d in detections)) * 1.1)
    ax.set_title("A black-holed connection is noticed between ping_timeout "
                 "and ping_interval + ping_timeout")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


# Pings behind data -------------------------------------------------------------------

@dataclass(frozen=True)
class PingsBehindData:
    """One client that sent ``messages`` at once to a server that processes one
    per ``process_s``, with keepalive ``ping_interval_s`` / ``ping_timeout_s``.

    ``gave_up_s``: when the client's keepalive failed the connection (seconds
    after the first message; None: it never did); ``processed``: messages the
    server had processed by then (the peer was alive and working all along);
    ``slowest_pong_s``: the longest a ping waited for a pong that came (None:
    none came), from the moment the ping was written, as the keepalive counts.
    """

    messages: int
    process_s: float
    ping_interval_s: float
    ping_timeout_s: float
    gave_up_s: float | None
    processed: int
    reason: str
    slowest_pong_s: float | None = None

    @property
    def false_alarm(self) -> bool:
        return self.gave_up_s is not None


@in_lab_loop()
async def pings_behind_data(ping_interval_s: float = 8.95, ping_timeout_s: float = 1.05, *,
                            messages: int = 500, process_s: float = 0.04,
                            max_queue: int = 16, watch_s: float = 30.0) -> PingsBehindData:
    """A slow server with the library's flow control, a client with a keepalive.

    The server's handler reads a message, works ``process_s`` on it, reads the
    next: once ``max_queue`` frames wait unread, ``websockets`` stops reading
    the socket. The client sent everything first (a backlog, say after a
    reconnection), so its pings sit behind the data in the same TCP stream;
    a pong comes only when the server has read that far. Watched for
    ``watch_s`` seconds from the first message (no proxy, no fault: loopback).
    """
    loop = asyncio.get_running_loop()
    processed = 0

    async def slow(websocket: ServerConnection) -> None:
        nonlocal processed
        try:
            async for _ in websocket:
                await asyncio.sleep(process_s)  # the application's work
                processed += 1
        except ConnectionClosed:
            pass

    payload = "x" * 512
    close_timeout_s = LIBRARY_DEFAULTS["close_timeout"]
    async with serve(slow, HOST, 0, compression=None, ping_interval=None,
                     max_queue=max_queue) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://{HOST}:{port}/", proxy=None, compression=None,
                           ping_interval=ping_interval_s, ping_timeout=ping_timeout_s,
                           close_timeout=close_timeout_s) as websocket:
            pings, pongs = _watch_pings(websocket)
            gave_up_at = _watch_give_up(websocket, lambda: processed)
            start = loop.time()
            for _ in range(messages):
                await websocket.send(payload)
            await asyncio.wait([gave_up_at], timeout=max(0.0, start + watch_s - loop.time()))
            if gave_up_at.done():
                at, done = gave_up_at.result()
                gave_up: float | None = round(at - start, 6)
            else:
                gave_up, done = None, processed
            sent = websocket.protocol.close_sent
            reason = f"{sent.code} {sent.reason}" if sent is not None else "still open"
            websocket.transport.abort()  # done watching: no closing handshake behind the data
    # Pongs come back in order: the n-th pong answers the n-th ping.
    sent_at = [pings.get_nowait() for _ in range(pings.qsize())]
    answered_at = [pongs.get_nowait() for _ in range(pongs.qsize())]
    waits = [round(b - a, 6) for a, b in zip(sent_at, answered_at)]
    return PingsBehindData(messages, process_s, ping_interval_s, ping_timeout_s, gave_up,
                           done, reason, max(waits, default=None))


def worst_rtt_s(scenario: Scenario) -> float:
    """The slowest round trip a scenario's latency faults allow (both ways at
    their worst), 0 when it has none."""
    up = max((f.delay_s + f.jitter_s for f in scenario.faults
              if isinstance(f, Latency) and f.direction in ("up", "both")), default=0.0)
    down = max((f.delay_s + f.jitter_s for f in scenario.faults
                if isinstance(f, Latency) and f.direction in ("down", "both")), default=0.0)
    return round(up + down, 6)


# Idle flows -------------------------------------------------------------------------

def forgotten_s(run: Run) -> list[float]:
    """When the run's idle timeout forgot a connection (lab time, in order)."""
    return [t for t, _, event in run.connections if event == "idle timeout"]


def plot_idle(*runs: Run, bucket_s: float = 5.0) -> Figure:
    """The timeline of each run (:func:`wslab.plots.timeline`, one bar per
    ``bucket_s``), stacked on one time axis, with a dashed line where the
    NAT forgot a connection."""
    fig, axes = plt.subplots(len(runs), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(plots.PANEL_SIZE[0], 3.2 * len(runs)))
    for run, ax in zip(runs, axes[:, 0]):
        for k, t in enumerate(forgotten_s(run)):
            ax.axvline(t, color="0.2", linestyle="--", linewidth=1.2,
                       label="the NAT forgot the connection" if k == 0 else None)
        plots.timeline(run, bucket_s=bucket_s, ax=ax)
    return fig
