"""Bench: what the FaultProxy costs, how exact its injected latency is, and how
the production design compares with a raw one (throughput, dead-peer detection).

Four measurements, in one run, on loopback (127.0.0.1, free ports):

1. **Echo throughput.** A plain websockets echo server; one client pipelines
   ``messages`` text messages (a sender task sends them all while a receiver
   task counts the echoes) and we time from the first send to the last echo.
   Once directly, once through a :class:`~wslab.proxy.FaultProxy` with an
   empty plan, alternating for a few rounds; the best round of each counts.
   Compression is off on both ends (the proxy strips it anyway), so the two
   paths carry the same bytes. ``ratio`` = proxy / direct.
2. **Latency error.** Through a proxy that delays the client→server direction
   by ``latency_s``, ``latency_samples`` request/response round trips, one at
   a time; the same directly, interleaved. At p50 and p99,
   ``error = (proxy RTT - direct RTT) - latency_s``, in milliseconds.
3. **Production design vs a raw design.** Two lab runs (:func:`wslab.arun`,
   through the lab's proxy, no fault) with the same workload: one client,
   ``design_messages`` echoed messages of ``max(size_bytes, 24)`` bytes,
   produced at once (rate 10⁶/s). One is the production design
   (:mod:`wslab.production`), the other a minimal design written here
   (:data:`RAW_DESIGN`): the handler echoes what ``app.process`` returns, the
   client sends from ``app.outgoing()`` in one task and hands echoes to
   ``app.deliver`` in another, no envelope, no acknowledgement. Throughput =
   echoes delivered to the client application / (last echo delivered - first
   message produced), from the run's ledger; alternating rounds, best of
   each. Both pay the same lab costs (proxy, ledger, server start and
   handshake: a few ms, so ``design_messages`` should keep a round well above
   0.1 s), so ``production_ratio`` = production / raw compares the designs.
4. **Dead-peer detection.** ``detection_samples`` connections with the
   production settings (``ping_interval_s``, ``ping_timeout_s``,
   ``close_timeout_s``; the server uses the production ``serve`` options),
   each through its own proxy, open concurrently; each is black-holed both
   ways (bytes vanish, no socket closes) at a moment staggered over one ping
   interval, after its first pings were answered. ``detection_s``: from the
   black hole to the moment the client's keepalive gives up (the connection
   leaves OPEN and sends close 1011 "keepalive ping timeout"); its bound is
   ``ping_interval_s + ping_timeout_s``. ``closed_s``: until
   ``wait_closed()`` returns, which is when an application reading the
   connection sees ``ConnectionClosed``: the client also waits
   ``close_timeout_s`` for a closing handshake the black hole swallows.

5. **Scale** (:func:`scale`, ``wslab bench --scale``): the production design
   in ``reconnect_storm`` (every client connected, the server restarts, every
   client must come back and deliver its messages) with 10, 100 and 1,000
   clients, in CPU-charged lab time (:mod:`wslab.clock`: the lab's and the
   design's computing costs lab time, so the event loop's lag is what a real
   machine would show), settling up to :data:`SCALE_HORIZON_S` past the planned
   end. Per row: real seconds, peak RSS of the process so far (rows run
   smallest first, so it is the row's), loop lag p50 / p99 / max, recovery,
   delivered of sent, and whether the lag passed the keepalive's ping timeout.
   The design's keepalive is scaled for the clients
   (:func:`wslab.designs.production.for_clients`).

The proxy runs in the same process and event loop as the client and the
server, as in a lab run. Goals are reported (``goals_met``), never asserted:
numbers depend on the machine.

``bench()`` / ``await abench()`` return a dict; :func:`format_bench` prints it.

Everything here keeps real time (the ``"real"`` clock of :mod:`wslab.clock`):
speeds are what the bench is for, and in virtual lab time computing is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import resource
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .contract import ClientApp, Design, ServerApp
from .designs.production import for_clients as production_for_clients
from .errors import ConfigError, RunTimeoutError
from .faults import FaultPlan, Latency
from .lab import arun
from .production import server as production_server
from .production.settings import DEFAULT as PRODUCTION_SETTINGS
from .production.settings import Settings
from .proxy import HOST, FaultProxy
from .workload import Workload

GOALS = {"ratio_min": 0.95, "latency_error_p50_ms_max": 1.0,
         "production_ratio_min": 0.6, "detection_over_bound_s_max": 0.05}
# Why 0.05 s over ping_interval_s + ping_timeout_s: the keepalive is two timers
# of the event loop (the sleep between pings, then the pong timeout), each of
# which fires a little late on a loop shared with the server, the proxies and
# the other samples; the ping just before the black hole may lose its pong
# (loopback RTT, well under 1 ms); the watcher polls every _POLL_S. That is a
# few ms on an idle machine: 0.05 s leaves room for load yet stays far below
# one ping interval (0.25 s), the error a keepalive that missed a ping would make.
ROUNDS = 3
SCALE_CLIENTS = (10, 100, 1000)  # the scale section's rows
SCALE_SCENARIO = "reconnect_storm"
SCALE_HORIZON_S = 30.0  # lab seconds past the planned end while messages are in flight
SCALE_GOALS = {"delivered_share_min": 1.0, "all_back": True, "peak_rss_mb_max": 400.0,
               "lag_max_under_ping_timeout": True}
TIME_LIMIT_S = 120.0
_WARMUP_MESSAGES = 200
_DESIGN_RATE_PER_S = 1e6  # "all at once": the design, not the producer, sets the pace
_DESIGN_SETTLE_S = 10.0
_POLL_S = 0.002


async def _echo(websocket: ServerConnection) -> None:
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:
        pass


def _connect(port: int, path: str = "/") -> connect:
    return connect(f"ws://{HOST}:{port}{path}", proxy=None, compression=None)


async def _pipelined(websocket: ClientConnection, payload: str, messages: int) -> float:
    """Send ``messages`` without waiting while counting echoes; seconds elapsed."""
    start = time.perf_counter()

    async def sender() -> None:
        for _ in range(messages):
            await websocket.send(payload)

    async def receiver() -> None:
        for _ in range(messages):
            await websocket.recv()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sender(), name="wslab bench sender")
        tg.create_task(receiver(), name="wslab bench receiver")
    return time.perf_counter() - start


async def _throughput(port: int, path: str, payload: str, messages: int) -> float:
    """One fresh connection, a short warm-up, then one timed run; messages/s."""
    async with _connect(port, path) as websocket:
        await _pipelined(websocket, payload, min(messages, _WARMUP_MESSAGES))
        elapsed = await _pipelined(websocket, payload, messages)
    return messages / elapsed if elapsed > 0 else math.inf


async def _round_trip(websocket: ClientConnection, payload: str) -> float:
    start = time.perf_counter()
    await websocket.send(payload)
    await websocket.recv()
    return time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values) * 1e3,
        "p50": _percentile(values, 50) * 1e3,
        "p99": _percentile(values, 99) * 1e3,
        "max": max(values) * 1e3,
    }


def _summary_s(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": math.nan, "p50": math.nan, "max": math.nan}
    return {"min": min(values), "p50": _percentile(values, 50), "max": max(values)}


# 3. Production design vs a raw design ------------------------------------------

async def _raw_handler(websocket: ServerConnection, app: ServerApp) -> None:
    try:
        async for message in websocket:
            reply = await app.process(message)
            if reply is not None:
                await websocket.send(reply)
    except ConnectionClosed:
        pass


async def _raw_client(app: ClientApp) -> None:
    async with app.connect() as websocket:

        async def sender() -> None:
            async for message in app.outgoing():
                await websocket.send(message)

        async def receiver() -> None:
            async for message in websocket:
                await app.deliver(message)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(sender())
            tg.create_task(receiver())


RAW_DESIGN = Design(
    "bench_raw_echo", handler=_raw_handler, client=_raw_client,
    description="Plain websockets echo in the design contract: pipelined sends, "
                "no envelope, no acknowledgement, no reconnection.")


async def _design_throughput(design: "str | Design", messages: int,
                             size_bytes: int) -> tuple[float, bool]:
    """One lab run of ``design`` echoing ``messages``; (echoes/s, all delivered, no error)."""
    workload = Workload(count=messages, rate_per_s=_DESIGN_RATE_PER_S, size_bytes=size_bytes,
                        direction="up", echo=True)
    run = await arun(design, "network_interruption", workload=workload, faults=[],
                     clients=1, settle_s=_DESIGN_SETTLE_S, clock="real")  # a speed: real time
    records = run.ledger.records.values()
    start = min((r.produced_s for r in records if r.msg_id.startswith("u")), default=0.0)
    echoes = [r.deliveries[0] for r in records if r.msg_id.startswith("e") and r.deliveries]
    complete = len(echoes) == messages and not run.errors
    if not echoes:
        return 0.0, False
    elapsed = max(echoes) - start
    return (len(echoes) / elapsed if elapsed > 0 else math.inf), complete


# 4. Dead-peer detection ---------------------------------------------------------

async def _detection_sample(server_port: int, settings: Settings,
                            delay_s: float) -> tuple[float | None, float | None, str]:
    """Black-hole one open connection after ``delay_s``; (detected, closed, close sent)."""
    loop = asyncio.get_running_loop()
    async with FaultProxy(upstream_port=server_port, seed=0) as proxy:
        async with connect(f"ws://{HOST}:{proxy.port}/c/0", proxy=None, compression=None,
                           ping_interval=settings.ping_interval_s,
                           ping_timeout=settings.ping_timeout_s,
                           close_timeout=settings.close_timeout_s,
                           open_timeout=settings.open_timeout_s) as websocket:
            await asyncio.sleep(delay_s)
            if websocket.state is not State.OPEN:
                return None, None, "closed before the black hole"
            start = loop.time()
            proxy.black_hole("both")
            closed = asyncio.ensure_future(websocket.wait_closed())
            detected = None
            limit = (settings.ping_interval_s + settings.ping_timeout_s
                     + settings.close_timeout_s + 2.0)
            try:
                async with asyncio.timeout(limit):
                    while not closed.done():
                        if detected is None and websocket.state is not State.OPEN:
                            detected = loop.time() - start
                        await asyncio.wait([closed], timeout=_POLL_S)
            except TimeoutError:
                closed.cancel()
                return detected, None, f"still open {limit:g} s after the black hole"
            ended = loop.time() - start
            if detected is None:  # closed between two polls
                detected = ended
            sent = getattr(websocket.protocol, "close_sent", None)
            reason = f"{sent.code} {sent.reason}" if sent is not None else "no close frame sent"
            return detected, ended, reason


async def _detection(settings: Settings,
                     samples: int) -> list[tuple[float | None, float | None, str]]:
    """``samples`` concurrent connections, black-holed at staggered ping phases."""
    async with serve(_echo, HOST, 0, compression=None,
                     **production_server.serve_options(settings)) as server:
        port = server.sockets[0].getsockname()[1]
        # Let a couple of pings be answered, then spread the black holes over one
        # ping interval: each lands at a different phase of its keepalive timer.
        warmup = 2 * settings.ping_interval_s
        return list(await asyncio.gather(*(
            _detection_sample(port, settings, warmup + settings.ping_interval_s * i / samples)
            for i in range(samples))))


def _check_params(messages: int, size_bytes: int, latency_s: float, latency_samples: int,
                  design_messages: int = 1, detection_samples: int = 1) -> None:
    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not integer(messages) or messages < 1:
        raise ConfigError(f"bench messages must be an integer >= 1, got {messages!r}")
    if not integer(size_bytes) or size_bytes < 1:
        raise ConfigError(f"bench size_bytes must be an integer >= 1, got {size_bytes!r}")
    if not integer(latency_samples) or latency_samples < 1:
        raise ConfigError(f"bench latency_samples must be an integer >= 1, got {latency_samples!r}")
    if not integer(design_messages) or design_messages < 1:
        raise ConfigError(f"bench design_messages must be an integer >= 1, got {design_messages!r}")
    if not integer(detection_samples) or not 1 <= detection_samples <= 100:
        raise ConfigError(
            f"bench detection_samples must be an integer from 1 to 100, got {detection_samples!r}")
    if (not isinstance(latency_s, (int, float)) or isinstance(latency_s, bool)
            or not math.isfinite(latency_s) or not 0 <= latency_s <= 10):
        raise ConfigError(f"bench latency_s must be seconds between 0 and 10, got {latency_s!r}")


async def abench(*, messages: int = 5000, size_bytes: int = 64, latency_s: float = 0.05,
                 latency_samples: int = 200, design_messages: int = 10000,
                 detection_samples: int = 12,
                 scale_clients: "tuple[int, ...]" = SCALE_CLIENTS) -> dict:
    """Measure proxy overhead, latency accuracy, the production design's echo
    throughput against a raw design, its dead-peer detection, and how the lab
    holds with 10 to 1,000 clients (``scale_clients``; empty: no scale
    section); see the module doc."""
    _check_params(messages, size_bytes, latency_s, latency_samples, design_messages,
                  detection_samples)
    if scale_clients and not all(isinstance(n, int) and 1 <= n <= 1000 for n in scale_clients):
        raise ConfigError(
            f"bench scale_clients must be integers from 1 to 1000, got {scale_clients!r}")
    settings = PRODUCTION_SETTINGS
    design_size = max(size_bytes, 24)  # the smallest workload message
    production_rates: list[float] = []
    raw_rates: list[float] = []
    complete = True
    payload = "x" * size_bytes
    wall = time.perf_counter()
    direct_rates: list[float] = []
    proxy_rates: list[float] = []
    direct_rtts: list[float] = []
    proxy_rtts: list[float] = []
    try:
        async with asyncio.timeout(TIME_LIMIT_S), contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                serve(_echo, HOST, 0, compression=None))
            port = server.sockets[0].getsockname()[1]
            plain = await stack.enter_async_context(
                FaultProxy(upstream_port=port, plan=FaultPlan(), seed=0))
            delayed = await stack.enter_async_context(
                FaultProxy(upstream_port=port, seed=0,
                           plan=FaultPlan([Latency(delay_s=latency_s, direction="up")])))

            # 1. Throughput, alternating direct and proxied rounds.
            for _ in range(ROUNDS):
                direct_rates.append(await _throughput(port, "/", payload, messages))
                proxy_rates.append(await _throughput(plain.port, "/c/0", payload, messages))

            # 2. Latency: interleaved single round trips, direct and delayed.
            async with _connect(port) as direct_ws, _connect(delayed.port, "/c/0") as proxy_ws:
                for ws in (direct_ws, proxy_ws):  # first exchange out of the count
                    await _round_trip(ws, payload)
                for _ in range(latency_samples):
                    direct_rtts.append(await _round_trip(direct_ws, payload))
                    proxy_rtts.append(await _round_trip(proxy_ws, payload))

            # 3. Production design vs raw design, alternating lab runs (each with
            # its own server and proxy; the ones above stay idle).
            for _ in range(ROUNDS):
                for design, rates in (("production", production_rates), (RAW_DESIGN, raw_rates)):
                    rate, ok = await _design_throughput(design, design_messages, design_size)
                    rates.append(rate)
                    complete = complete and ok

            # 4. Dead-peer detection, concurrent samples.
            detections = await _detection(settings, detection_samples)
    except TimeoutError as exc:
        raise RunTimeoutError(f"bench passed its time limit of {TIME_LIMIT_S:g} s") from exc

    # 5. Scale: after the timed sections (its own runs have their own limits).
    scaled = await ascale(tuple(scale_clients)) if scale_clients else None

    direct_best, proxy_best = max(direct_rates), max(proxy_rates)
    ratio = proxy_best / direct_best
    rtt_direct, rtt_proxy = _summary_ms(direct_rtts), _summary_ms(proxy_rtts)
    error = {q: rtt_proxy[q] - rtt_direct[q] - latency_s * 1e3 for q in ("p50", "p99")}
    production_best, raw_best = max(production_rates), max(raw_rates)
    production_ratio = production_best / raw_best if raw_best > 0 else math.nan
    detected = [d for d, _, _ in detections if d is not None]
    closed = [c for _, c, _ in detections if c is not None]
    reasons: dict[str, int] = {}
    for _, _, reason in detections:
        reasons[reason] = reasons.get(reason, 0) + 1
    bound = settings.ping_interval_s + settings.ping_timeout_s
    detection = _summary_s(detected)
    over_bound = (detection["max"] - bound if len(detected) == len(detections)
                  else math.inf)  # a connection never detected dead is unbounded
    within = over_bound <= GOALS["detection_over_bound_s_max"]
    return {
        "messages": messages,
        "size_bytes": size_bytes,
        "latency_s": latency_s,
        "latency_samples": latency_samples,
        "rounds": ROUNDS,
        "python": platform.python_version(),
        "websockets": websockets.__version__,
        "direct_msgs_per_s": direct_best,
        "proxy_msgs_per_s": proxy_best,
        "ratio": ratio,
        "direct_rounds_msgs_per_s": direct_rates,
        "proxy_rounds_msgs_per_s": proxy_rates,
        "rtt_direct_ms": rtt_direct,
        "rtt_proxy_ms": rtt_proxy,
        "latency_error_ms": error,
        "design_messages": design_messages,
        "design_size_bytes": design_size,
        "production_msgs_per_s": production_best,
        "raw_design_msgs_per_s": raw_best,
        "production_ratio": production_ratio,
        "production_rounds_msgs_per_s": production_rates,
        "raw_design_rounds_msgs_per_s": raw_rates,
        "design_rounds_complete": complete,
        "detection_samples": detection_samples,
        "ping_interval_s": settings.ping_interval_s,
        "ping_timeout_s": settings.ping_timeout_s,
        "close_timeout_s": settings.close_timeout_s,
        "detection_s": detection,
        "detection_bound_s": bound,
        "detection_missed": len(detections) - len(detected),
        "detection_over_bound_s": over_bound if math.isfinite(over_bound) else math.nan,
        "detection_within_bound": within,
        "closed_s": _summary_s(closed),
        "closed_bound_s": bound + settings.close_timeout_s,
        "detection_close_sent": reasons,
        "goals": dict(GOALS),
        "goals_met": {
            "ratio_min": ratio >= GOALS["ratio_min"],
            "latency_error_p50_ms_max": abs(error["p50"]) <= GOALS["latency_error_p50_ms_max"],
            "production_ratio_min": production_ratio >= GOALS["production_ratio_min"],
            "detection_over_bound_s_max": within,
        },
        "scale": scaled,
        "elapsed_s": time.perf_counter() - wall,
    }


# 5. Scale --------------------------------------------------------------------------



def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def ascale(clients: "tuple[int, ...]" = SCALE_CLIENTS) -> dict:
    """The scale section (see the module doc): one row per client count, with
    figures and goals; nothing asserted. Each run has its own lab loop and
    thread, and the real-time limit of a lab run (it grows with the clients)."""
    from .scenarios import get_scenario

    rows = []
    for n in sorted(clients):
        scenario = get_scenario(SCALE_SCENARIO).with_(clients=n, clock="cpu").settling(
            SCALE_HORIZON_S)
        result = await arun(production_for_clients(n), scenario)
        s = result.summary()
        recovery = s["recovery_s"]
        delivered_share = s["delivered"] / s["sent"] if s["sent"] else math.nan
        rss = _peak_rss_mb()
        lag = s["loop_lag_ms"]
        back = recovery is not None and not math.isnan(recovery)
        rows.append({
            "clients": n, "wall_s": s["wall_s"], "peak_rss_mb": rss, "loop_lag_ms": lag,
            "recovery_s": recovery if back else math.nan, "sent": s["sent"],
            "delivered": s["delivered"], "overloaded": s["overloaded"],
            "ping_timeout_s": min(result.ping_timeouts_s, default=math.nan),
            "goals_met": {
                "delivered_share_min": delivered_share >= SCALE_GOALS["delivered_share_min"],
                "all_back": back,
                "peak_rss_mb_max": rss <= SCALE_GOALS["peak_rss_mb_max"],
                "lag_max_under_ping_timeout": not s["overloaded"],
            },
        })
    return {"scenario": SCALE_SCENARIO, "clock": "cpu", "horizon_s": SCALE_HORIZON_S,
            "goals": dict(SCALE_GOALS), "rows": rows}


def format_scale(result: dict) -> str:
    """The scale section as a table, goals included."""
    goals = result["goals"]
    lines = [f"Scale: production x {result['scenario']}, {result['clock']} clock "
             f"(computing costs lab time), settling up to {result['horizon_s']:g} s",
             f"  {'clients':>7}{'wall s':>8}{'RSS MB':>8}{'lag p50':>9}{'p99':>8}{'max ms':>8}"
             f"{'back s':>8}{'ping s':>8}  delivered      goals"]
    for row in result["rows"]:
        lag = row["loop_lag_ms"]
        missed = [k for k, ok in row["goals_met"].items() if not ok]
        lines.append(
            f"  {row['clients']:>7}{row['wall_s']:>8.1f}{row['peak_rss_mb']:>8.0f}"
            f"{lag['p50'] or 0:>9.1f}{lag['p99'] or 0:>8.1f}{lag['max'] or 0:>8.1f}"
            f"{row['recovery_s']:>8.2f}{row['ping_timeout_s']:>8g}  {row['delivered']:>6} of {row['sent']:<6} "
            + ("met" if not missed else "NOT MET: " + ", ".join(missed)))
    lines.append("  ping s: the keepalive's ping timeout, scaled with the clients "
                 "(wslab.designs.production.for_clients)")
    lines.append(f"  goals: everything delivered, every client back, peak RSS <= "
                 f"{goals['peak_rss_mb_max']:g} MB, loop lag below the keepalive's ping timeout "
                 "(else the run is overloaded and its timing checks unknown)")
    return "\n".join(lines)


def bench(**kwargs: Any) -> dict:
    """Synchronous :func:`abench` (``asyncio.run``); not from a running loop."""
    return asyncio.run(abench(**kwargs))


def format_bench(result: dict) -> str:
    """A readable table of a :func:`bench` result, goals included."""
    goals, met = result["goals"], result["goals_met"]

    def verdict(key: str) -> str:
        return "met" if met[key] else "NOT MET"

    d, p = result["rtt_direct_ms"], result["rtt_proxy_ms"]
    e = result["latency_error_ms"]
    rounds = ", ".join(f"{r:,.0f}" for r in result["direct_rounds_msgs_per_s"])
    prounds = ", ".join(f"{r:,.0f}" for r in result["proxy_rounds_msgs_per_s"])
    injected_ms = result["latency_s"] * 1e3
    lines = [
        f"wslab bench: Python {result['python']}, websockets {result['websockets']}, "
        f"{result['elapsed_s']:.1f} s",
        "",
        f"Echo throughput, {result['messages']:,} pipelined messages of "
        f"{result['size_bytes']} B, best of {result['rounds']}",
        f"  {'direct':<12}{result['direct_msgs_per_s']:>12,.0f} msg/s   ({rounds})",
        f"  {'via proxy':<12}{result['proxy_msgs_per_s']:>12,.0f} msg/s   ({prounds})",
        f"  {'ratio':<12}{result['ratio']:>12.3f}         "
        f"goal >= {goals['ratio_min']:g}: {verdict('ratio_min')}",
        "",
        f"Latency {injected_ms:g} ms injected client->server, "
        f"{result['latency_samples']} round trips of each",
        f"  {'':<22}{'min':>9}{'p50':>9}{'p99':>9}{'max':>9}",
        f"  {'direct RTT (ms)':<22}{d['min']:>9.3f}{d['p50']:>9.3f}{d['p99']:>9.3f}{d['max']:>9.3f}",
        f"  {'proxy RTT (ms)':<22}{p['min']:>9.3f}{p['p50']:>9.3f}{p['p99']:>9.3f}{p['max']:>9.3f}",
        f"  {'error (ms)':<22}{'':>9}{e['p50']:>9.3f}{e['p99']:>9.3f}",
        f"  error = (proxy RTT - direct RTT) - {injected_ms:g} ms; "
        f"goal |p50| <= {goals['latency_error_p50_ms_max']:g} ms: "
        f"{verdict('latency_error_p50_ms_max')}",
    ]
    if "production_ratio" in result:
        lines += _format_designs(result, verdict)
    if result.get("scale"):
        lines += ["", format_scale(result["scale"])]
    return "\n".join(lines)


def _format_designs(result: dict, verdict: Any) -> list[str]:
    goals = result["goals"]
    prod = ", ".join(f"{r:,.0f}" for r in result["production_rounds_msgs_per_s"])
    raw = ", ".join(f"{r:,.0f}" for r in result["raw_design_rounds_msgs_per_s"])
    det, closed = result["detection_s"], result["closed_s"]
    bound = result["detection_bound_s"]
    lines = [
        "",
        f"Echo throughput through the lab (proxy, no fault), {result['design_messages']:,} "
        f"echoed messages of {result['design_size_bytes']} B, best of {result['rounds']}",
        f"  {'raw design':<12}{result['raw_design_msgs_per_s']:>12,.0f} msg/s   ({raw})",
        f"  {'production':<12}{result['production_msgs_per_s']:>12,.0f} msg/s   ({prod})",
        f"  {'ratio':<12}{result['production_ratio']:>12.3f}         "
        f"goal >= {goals['production_ratio_min']:g}: {verdict('production_ratio_min')}",
    ]
    if not result["design_rounds_complete"]:
        lines.append("  WARNING: a round did not deliver every echo or recorded a design error")
    lines += [
        "",
        f"Dead-peer detection, production keepalive (ping every {result['ping_interval_s']:g} s, "
        f"timeout {result['ping_timeout_s']:g} s), {result['detection_samples']} black holes",
        f"  {'':<22}{'min':>9}{'p50':>9}{'max':>9}",
        f"  {'detected (s)':<22}{det['min']:>9.3f}{det['p50']:>9.3f}{det['max']:>9.3f}",
        f"  {'closed (s)':<22}{closed['min']:>9.3f}{closed['p50']:>9.3f}{closed['max']:>9.3f}",
        f"  bound ping_interval + ping_timeout = {bound:g} s; max - bound = "
        f"{result['detection_over_bound_s']:+.3f} s; goal <= "
        f"{goals['detection_over_bound_s_max']:g} s: {verdict('detection_over_bound_s_max')}",
        f"  closed = detected + close_timeout ({result['close_timeout_s']:g} s): the client waits "
        "that long for a closing",
        f"  handshake the black hole swallows; bound {result['closed_bound_s']:g} s. Only then "
        "does a reader see ConnectionClosed",
        "  close frames sent: " + ", ".join(
            f"{n} x {reason!r}" for reason, n in result["detection_close_sent"].items()),
    ]
    if result["detection_missed"]:
        lines.append(f"  NOT DETECTED: {result['detection_missed']} connection(s)")
    return lines
