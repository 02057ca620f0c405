"""Lesson 03's experiments: a reconnect storm, what jitter does to it, and what
``websockets``' own reconnection really waits.

What this module measures
-------------------------
Many clients lose their connection at the same moment (the server restarts)
and all try to come back. How they schedule their attempts decides how much
work the storm costs and how soon everyone is back:

- :data:`POLICIES`: three reconnection policies of the production client
  (``wslab.production``), the same code with other backoff settings: no
  backoff (a constant 10 ms pause), exponential backoff without jitter, and
  exponential backoff with full jitter;
- :class:`HandshakeBudget`: a server that can answer only so many opening
  handshakes per 10 ms and answers ``503 Service Unavailable`` beyond that.
  On loopback a restarted server takes hundreds of handshakes at once for
  little; a real one spends work on each (TLS, checking a token, loading the
  session), and protects itself like this (or its load balancer does).
  Without such a limit, synchronised retries cost little in the lab and
  jitter only makes recovery slower: the budget is what makes the
  experiment honest about why jitter matters;
- :func:`storm_numbers` reads a run: the most attempts in one 10 ms bucket,
  attempts while the server was down, handshakes the restarted server had to
  answer (accepted or refused), and how long until every client was back;
  :func:`back_after` and :func:`attempts_by_client` give the same per client;
- :func:`attempts_figure` draws connection attempts over time, one panel per
  run, the restart shaded.

Clocks. :func:`storm` keeps CPU-charged lab time, so that handshakes cost
what they cost, and a hundredth of production's time scale, so that 100
clients make the handshakes per second of thousands. Storm runs pause Python's
garbage collector (:func:`collector_paused`). :func:`silent_then_cut` and
:func:`long_outage`, for ``websockets``' own reconnection at its real
defaults (:data:`wslab.designs.library_reconnect.DEFAULTS`), are about
delays only and keep virtual time: exact, and a minute costs milliseconds.
:func:`design_with_delay` builds the production client around any
``delay(attempt, rng)`` function (the lesson's exercise).

Outage flavours. A client that tries to come back during an outage does not
always meet the same failure (:data:`wslab.faults.FLAVOURS`): refused, reset
during the handshake, ``503`` from a load balancer, or silence.
:func:`reconnect_loop` is the loop assistants write, with the exceptions it
catches as a parameter; :func:`lesson_loops` gives the two versions (catching
:data:`NARROW_CATCH`, and :data:`BROAD_CATCH` with a shorter ``open_timeout``);
:func:`flavour_outage` is a one-flavour outage and
:func:`meet_flavours` runs each loop against each flavour, in virtual time
(a silent attempt waits ``open_timeout``, 10 s by default: in lab time that is
free).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..contract import Design
from ..designs import production as steps
from ..faults import FLAVOURS, BlackHole, Cut, Fault, FaultPlan, ServerRestart
from ..lab import arun
from ..plots import FAULT_ALPHA, FAULT_COLORS
from ..production import server
from ..production.client import ReliableClient
from ..production.settings import Settings
from ..run import Run
from ..scenarios import Scenario, get_scenario
from ..workload import Workload

# The ``reconnect`` step's settings: reconnection on, nothing else of lesson 04+.
RECONNECT_SETTINGS: Settings = steps.STEP_SETTINGS["reconnect"]

BUCKET_S = 0.01  # attempts are counted per 10 ms

# Three ways to schedule reconnection attempts (changes to RECONNECT_SETTINGS), after
# the AWS Architecture Blog's "Exponential Backoff And Jitter".
POLICIES: dict[str, dict[str, Any]] = {
    "no backoff": {"backoff_jitter": "none", "backoff_factor": 1.0, "backoff_base_s": 0.01},
    "exponential, no jitter": {"backoff_jitter": "none"},
    "exponential, full jitter": {"backoff_jitter": "full"},
}


def storm(clients: int = 100, seed: int = 9) -> Scenario:
    """The lesson's storm: ``reconnect_storm`` made shorter. The server restarts at
    0.35 s and is back at 0.65 s; each client sends a message at 0, 0.2, 0.4 and
    0.6 s; the run ends 1.8 s after the server is back, or as soon as every
    message arrived.

    Its clock is CPU-charged: each handshake costs the lab time the machine
    spent on it, as a storm does on a real server. Its times are a hundredth
    of production's (a 0.3 s restart for 30 s, the policies' 1 s cap for
    100 s): a storm's cost is a rate, handshakes per second, and compressing
    time is how 100 clients in one process make the rate of thousands."""
    return get_scenario("reconnect_storm").with_(
        clients=clients, seed=seed, clock="cpu",
        workload=Workload(count=4, rate_per_s=5, direction="up"),
        faults=FaultPlan([ServerRestart(start_s=0.35, duration_s=0.3)]),
        settle_s=1.8)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block, as :mod:`timeit`
    does while it times.

    For storm runs in CPU-charged time: a collection of the whole process's
    heap (the notebook's earlier runs included) can cost a tenth of a second
    of CPU, charged to the storm at a random moment, and the storm's time is
    compressed a hundredfold while a collection's is not. Restores the
    collector's previous state, so blocks nest.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def silent_then_cut(clients: int = 50, seed: int = 3) -> Scenario:
    """Messages handed to a connection that dies: the network silently swallows
    every byte from 0.3 s to 0.6 s (a black hole: no socket closes, ``send()``
    keeps returning), then resets every connection (a cut, 50 ms). Each client
    sends 20 messages per second from 0 to 0.7 s. Whatever was sent into the
    hole is gone unless the design kept it: reconnecting does not bring it
    back. The run settles 5.5 s (``websockets``' first random delay is up to
    5 s), in virtual time."""
    return get_scenario("network_interruption").with_(
        clients=clients, seed=seed,
        workload=Workload(count=15, rate_per_s=20, direction="up"),
        faults=FaultPlan([BlackHole(start_s=0.3, duration_s=0.3), Cut(start_s=0.6, duration_s=0.05)]),
        settle_s=5.5)


def long_outage(clients: int = 20, seed: int = 4, outage_s: float = 60.0) -> Scenario:
    """A server restart at full scale: the server goes down at 1 s and stays down
    ``outage_s`` (a minute). Each client sends a message at 0 s and one at 2 s;
    the second waits for a connection, so the run ends when the last client is
    back (at the latest 100 s after the server). Virtual time: only delays
    matter here, and a minute of them costs milliseconds."""
    return get_scenario("server_restart").with_(
        clients=clients, seed=seed,
        workload=Workload(count=2, rate_per_s=0.5, direction="up"),
        faults=FaultPlan([ServerRestart(start_s=1.0, duration_s=outage_s)]),
        settle_s=100.0, time_limit_s=outage_s + 200.0)


class HandshakeBudget:
    """``process_request`` for ``serve()``: at most ``per_window`` opening handshakes
    in any ``window_s``; beyond that, ``503 Service Unavailable`` (which
    ``websockets`` clients, and the production client, treat as retryable).

    ``answered`` and ``refused`` count the handshakes since it was created.
    """

    def __init__(self, per_window: int = 10, window_s: float = BUCKET_S) -> None:
        if per_window < 1 or window_s <= 0:
            raise ValueError(f"need per_window >= 1 and window_s > 0, got {per_window!r}, {window_s!r}")
        self.per_window, self.window_s = per_window, window_s
        self._recent: deque[float] = deque()
        self.answered = 0
        self.refused = 0

    def __call__(self, connection: Any, request: Any) -> Any:
        now = asyncio.get_running_loop().time()
        while self._recent and now - self._recent[0] >= self.window_s:
            self._recent.popleft()
        self.answered += 1
        if len(self._recent) >= self.per_window:
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy, try again later\n")
        self._recent.append(now)
        return None


def with_budget(design: Design, budget: HandshakeBudget) -> Design:
    """``design`` with its server answering at most ``budget`` handshakes."""
    return replace(design, serve_options={**design.serve_options, "process_request": budget})


def policy_design(policy: str) -> Design:
    """The production client with reconnection only, scheduled by ``policy``
    (a key of :data:`POLICIES`)."""
    return steps.design(policy, replace(RECONNECT_SETTINGS, **POLICIES[policy]))


@dataclass
class _FunctionBackoff:
    """What :class:`ReliableClient` asks of its backoff, served by a ``delay`` function."""

    delay: Callable[[int, random.Random], float]
    rng: random.Random
    attempt: int = 0

    def next_delay(self) -> float:
        value = float(self.delay(self.attempt, self.rng))
        self.attempt += 1
        return max(0.0, value)

    def reset(self) -> None:
        self.attempt = 0


def design_with_delay(delay: Callable[[int, random.Random], float], name: str = "your delay",
                      settings: Settings = RECONNECT_SETTINGS) -> Design:
    """The production client with reconnection only, waiting ``delay(attempt, rng)``
    seconds before each attempt (``attempt`` counts from 0 since the last stable
    connection; ``rng`` is the client's own seeded ``random.Random``)."""

    async def client(app) -> None:
        reliable = ReliableClient(app, settings, seed=app.seed)
        reliable.backoff = _FunctionBackoff(delay, random.Random(app.seed))  # type: ignore[assignment]
        await reliable.run()

    return Design(name, handler=server.make_handler(settings), client=client,
                  serve_options=server.serve_options(settings),
                  stop_grace_s=settings.stop_timeout_s + 0.1)


def _outage(run: Run) -> Fault:
    """The run's first outage: a server restart, or a cut (every connection reset)."""
    outages = [f for f in run.faults if isinstance(f, (ServerRestart, Cut))]
    if not outages:
        raise ValueError(f"{run.design} × {run.scenario} has no server restart and no cut")
    return min(outages, key=lambda f: f.start_s)


def back_after(run: Run) -> dict[int | None, float]:
    """For each client that connected to the server again after the run's first
    outage and before the run ended: seconds from the server's return (the
    outage's end) to that connection. Clients never back are left out."""
    outage = _outage(run)
    up_s = outage.end_s if outage.end_s is not None else math.inf
    first: dict[int | None, float] = {}
    for t, client in run.server_opens:
        # Opens after run.end_s happened during teardown, when the run was over.
        if outage.start_s <= t <= run.end_s and client not in first:
            first[client] = t
    return {client: t - up_s for client, t in first.items()}


def attempts_by_client(run: Run) -> dict[int | None, list[float]]:
    """When each client's connection attempts reached the proxy (failed ones
    included), in order, until the run ended (teardown excluded)."""
    attempts: dict[int | None, list[float]] = {}
    for t, client, event in run.connections:
        if event == "accept" and t <= run.end_s:
            attempts.setdefault(client, []).append(t)
    return {client: sorted(times) for client, times in attempts.items()}


def attempts_per_bucket(run: Run, bucket_s: float = BUCKET_S, after_s: float = 0.0) -> list[int]:
    """Connection attempts in each ``bucket_s`` bucket from ``after_s`` until the
    run ended (teardown excluded)."""
    counts: dict[int, int] = {}
    for times in attempts_by_client(run).values():
        for t in times:
            if t >= after_s:
                key = int((t - after_s) / bucket_s)
                counts[key] = counts.get(key, 0) + 1
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


def storm_numbers(run: Run) -> dict[str, Any]:
    """The cost of the storm in ``run`` (a run with a :class:`ServerRestart` or a
    :class:`Cut`), measured from the start of its first outage to the end of
    the run (teardown excluded).

    ``peak``: the most connection attempts in one 10 ms bucket; ``while_down``:
    attempts while the server (or the network) was down; ``answered``: attempts
    from the moment it was back, each one a handshake the server had to answer,
    accepted or refused; ``missing``: clients that had no connection to the
    server since it came back when the run ended; ``half_back_s`` and
    ``back_s``: seconds from its return until half of the clients, and every
    client, had one (nan when too many are missing). Clients still trying to
    get in for the first time count too.
    """
    outage = _outage(run)
    up_s = outage.end_s if outage.end_s is not None else math.inf
    accepts = [t for times in attempts_by_client(run).values() for t in times]
    back = back_after(run)
    missing = run.clients - len(back)
    waits = sorted(back.values()) + [math.inf] * missing

    def seconds(wait: float) -> float:
        return round(max(0.0, wait), 4) if math.isfinite(wait) else math.nan

    return {
        "design": run.design,
        "peak": max(attempts_per_bucket(run, after_s=outage.start_s), default=0),
        "while_down": sum(outage.start_s <= t < up_s for t in accepts),
        "answered": sum(t >= up_s for t in accepts),
        "missing": missing,
        "half_back_s": seconds(waits[(run.clients - 1) // 2]),
        "back_s": seconds(waits[-1]),
        "lost": run.summary()["lost"],
    }


async def compare_policies(scenario: Scenario, *, per_window: int | None = 10,
                           policies: list[str] | None = None) -> dict[str, Run]:
    """Run ``scenario`` once per policy (all of :data:`POLICIES` by default), each
    against a server with a fresh :class:`HandshakeBudget` of ``per_window``
    handshakes per 10 ms (None: no limit), the garbage collector paused
    (:func:`collector_paused`). Returns the runs by policy."""
    runs: dict[str, Run] = {}
    with collector_paused():
        for policy in policies or list(POLICIES):
            design = policy_design(policy)
            if per_window is not None:
                design = with_budget(design, HandshakeBudget(per_window))
            runs[policy] = await arun(design, scenario)
    return runs


def table(runs: Mapping[str, Run]) -> str:
    """:func:`storm_numbers` of each run, one line each, for a person to read."""
    head = (f"{'':<26}{'peak /10 ms':>12}{'while down':>12}{'answered':>10}"
            f"{'half back':>11}{'all back':>12}")
    lines = [head]
    for label, run in runs.items():
        n = storm_numbers(run)
        half = "not back" if math.isnan(n["half_back_s"]) else f"{n['half_back_s']:.2f} s"
        every = f"{n['missing']} not back" if n["missing"] else f"{n['back_s']:.2f} s"
        lines.append(f"{label:<26}{n['peak']:>12}{n['while_down']:>12}{n['answered']:>10}"
                     f"{half:>11}{every:>12}")
    return "\n".join(lines)


def attempts_figure(runs: Mapping[str, Run], *, bucket_s: float = BUCKET_S) -> Figure:
    """Connection attempts over time, one panel per run (labelled by its key).

    Each bar counts the attempts the proxy accepted in one ``bucket_s`` bucket
    (failed ones included) until the run ended; the shaded window is the
    server restart; the dotted line is the number of clients (every client at
    once). The panels share both axes, so the same height means the same load.
    """
    if not runs:
        raise ValueError("attempts_figure needs at least one run")
    fig, axes = plt.subplots(len(runs), 1, sharex=True, sharey=True, squeeze=False,
                             figsize=(9.0, 1.0 + 1.6 * len(runs)), layout="constrained")
    span = max(run.end_s for run in runs.values())
    clients = max(run.clients for run in runs.values())
    for ax, (label, run) in zip(axes[:, 0], runs.items()):
        counts = attempts_per_bucket(run, bucket_s)
        ax.bar([i * bucket_s for i in range(len(counts))], counts, width=bucket_s, align="edge",
               color="#1f4e9c", linewidth=0, gid="attempts")
        for fault in run.faults:
            if isinstance(fault, (ServerRestart, Cut)):
                end = fault.end_s if fault.end_s is not None else span
                ax.axvspan(fault.start_s, end, color=FAULT_COLORS[fault.kind],
                           alpha=FAULT_ALPHA, linewidth=0, zorder=0)
        ax.axhline(run.clients, color="0.4", linestyle=":", linewidth=1)
        n = storm_numbers(run)
        back = (f"{n['missing']} of {run.clients} not back" if n["missing"]
                else f"all back {n['back_s']:.2f} s after")
        ax.set_title(f"{label}: {sum(counts)} attempts, peak {n['peak']} in 10 ms, "
                     f"{n['answered']} handshakes after the restart, {back}",
                     fontsize="medium", loc="left")
        ax.set_ylabel(f"attempts\nper {bucket_s * 1000:g} ms")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    axes[0, 0].set_ylim(0, clients * 1.1)
    axes[0, 0].set_xlim(0, span + bucket_s)
    axes[-1, 0].set_xlabel("time since start (s); shaded: the server is down; "
                           "dotted: every client at once")
    return fig


# Outage flavours ----------------------------------------------------------------

# The reconnect loop most assistants write: network errors and a closed connection.
NARROW_CATCH: tuple[type[BaseException], ...] = (OSError, ConnectionClosed)
# The same loop also catching a failed opening handshake (InvalidMessage, InvalidStatus...).
BROAD_CATCH: tuple[type[BaseException], ...] = (OSError, InvalidHandshake, ConnectionClosed)

_loop_log = logging.getLogger("wslab.submissions.reconnect_loop")


def reconnect_loop(catches: tuple[type[BaseException], ...], *, name: str,
                   open_timeout_s: float | None = 10.0, delay_s: float = 0.05) -> Design:
    """A design whose client sends every message it is given and reconnects
    after ``delay_s`` (no jitter) whenever one of ``catches`` ends a connection
    or an attempt; anything else ends the loop, and the lab records it in
    ``run.errors``. Each caught exception is logged (``run.logs``, event
    ``"retrying"``, with its ``error`` name). ``open_timeout_s`` is passed to
    ``connect()`` (10 s is websockets' default)."""
    if not catches or not all(isinstance(c, type) and issubclass(c, BaseException) for c in catches):
        raise ValueError(f"catches must be exception classes, got {catches!r}")

    async def handler(websocket, app) -> None:
        async for message in websocket:
            await app.process(message)

    async def client(app) -> None:
        while True:
            try:
                async with app.connect(open_timeout=open_timeout_s) as websocket:
                    async for message in app.outgoing():
                        await websocket.send(message)
                    return
            except catches as exc:
                _loop_log.info("retrying", extra={"client": app.client_id, "error": type(exc).__name__})
            await asyncio.sleep(delay_s)

    return Design(name, handler=handler, client=client)


def lesson_loops() -> dict[str, Design]:
    """The lesson's two loops: the one assistants write, and the better one."""
    return {
        "narrow loop": reconnect_loop(NARROW_CATCH, name="narrow loop", open_timeout_s=10.0),
        "better loop": reconnect_loop(BROAD_CATCH, name="better loop", open_timeout_s=2.0),
    }


def flavour_outage(flavour: str, *, seed: int = 1) -> Scenario:
    """``network_interruption`` with one client and one outage flavour: every
    connection is reset at 1 s and, for 0.4 s, each new one fails in
    ``flavour`` (a key of :data:`~wslab.faults.FLAVOURS`). The client sends
    10 messages per second for 3 s; the run settles 12 s, so that a silent
    attempt's default ``open_timeout`` (10 s) can run out. Virtual time."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    return get_scenario("network_interruption").with_(
        seed=seed, clients=1, workload=Workload(count=30, rate_per_s=10, direction="up"),
        faults=FaultPlan([Cut(start_s=1.0, duration_s=0.4, flavours=(flavour,))]),
        settle_s=12.0, time_limit_s=60.0, clock="virtual")


@dataclass(frozen=True)
class Meeting:
    """What one reconnect loop made of one outage flavour (:func:`meet_flavours`)."""

    loop: str
    flavour: str
    raised: tuple[str, ...]  # the exception names the client met, in order, each once
    ended_on: str | None  # the exception that ended the loop; None when it survived
    back_s: float | None  # seconds from the outage's end until it was connected again
    lost: int


def _meeting(loop: str, flavour: str, run: Run) -> Meeting:
    died = [e.error.split(":", 1)[0].rsplit(".", 1)[-1] for e in run.errors if e.where == "client 0"]
    met = [entry["error"] for entry in run.logs if entry.get("event") == "retrying"] + died
    back = run.recovery_s
    return Meeting(loop, flavour, tuple(dict.fromkeys(met)), died[0] if died else None,
                   None if back is None or math.isnan(back) else back, run.summary()["lost"])


async def meet_flavours(loops: Mapping[str, Design] | None = None,
                        flavours: tuple[str, ...] = tuple(FLAVOURS)) -> list[Meeting]:
    """Run each loop (by default :func:`lesson_loops`) through :func:`flavour_outage`
    of each flavour; one :class:`Meeting` per (flavour, loop), flavour by flavour."""
    if loops is None:
        loops = lesson_loops()

    return [_meeting(label, flavour, await arun(design, flavour_outage(flavour)))
            for flavour in flavours for label, design in loops.items()]


def flavour_table(meetings: list[Meeting]) -> str:
    """One line per flavour: what a failed attempt raised, then one column per
    loop, how it ended ("died", or back how long after the outage), for a
    person to read."""
    loops = list(dict.fromkeys(m.loop for m in meetings))
    width = max(24, *(len(label) + 2 for label in loops))
    lines = [f"{'flavour':<20}{'an attempt raised':<26}" + "".join(f"{label:<{width}}" for label in loops)]
    for flavour in dict.fromkeys(m.flavour for m in meetings):
        row = [m for label in loops for m in meetings if m.loop == label and m.flavour == flavour]
        # The cut itself ends the open connection (ConnectionClosed): show what the attempts met.
        raised = [name for m in row for name in m.raised if not name.startswith("ConnectionClosed")]
        cells = [f"died on {m.ended_on}" if m.ended_on else
                 "never back" if m.back_s is None else f"back after {m.back_s:.2f} s" for m in row]
        lines.append(f"{flavour:<20}{', '.join(dict.fromkeys(raised)) or '-':<26}"
                     + "".join(f"{cell:<{width}}" for cell in cells))
    return "\n".join(line.rstrip() for line in lines)
