"""Bench: what the FaultProxy costs, and how exact its injected latency is.

Two measurements, in one run, on loopback (127.0.0.1, free ports):

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

The proxy runs in the same process and event loop as the client and the
server, as in a lab run. Goals are reported (``goals_met``), never asserted:
numbers depend on the machine.

``bench()`` / ``await abench()`` return a dict; :func:`format_bench` prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .errors import ConfigError, RunTimeoutError
from .faults import FaultPlan, Latency
from .proxy import HOST, FaultProxy

GOALS = {"ratio_min": 0.95, "latency_error_p50_ms_max": 1.0}
ROUNDS = 3
TIME_LIMIT_S = 120.0
_WARMUP_MESSAGES = 200


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


def _check_params(messages: int, size_bytes: int, latency_s: float, latency_samples: int) -> None:
    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not integer(messages) or messages < 1:
        raise ConfigError(f"bench messages must be an integer >= 1, got {messages!r}")
    if not integer(size_bytes) or size_bytes < 1:
        raise ConfigError(f"bench size_bytes must be an integer >= 1, got {size_bytes!r}")
    if not integer(latency_samples) or latency_samples < 1:
        raise ConfigError(f"bench latency_samples must be an integer >= 1, got {latency_samples!r}")
    if (not isinstance(latency_s, (int, float)) or isinstance(latency_s, bool)
            or not math.isfinite(latency_s) or not 0 <= latency_s <= 10):
        raise ConfigError(f"bench latency_s must be seconds between 0 and 10, got {latency_s!r}")


async def abench(*, messages: int = 5000, size_bytes: int = 64, latency_s: float = 0.05,
                 latency_samples: int = 200) -> dict:
    """Measure proxy throughput overhead and latency accuracy; see the module doc."""
    _check_params(messages, size_bytes, latency_s, latency_samples)
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
    except TimeoutError as exc:
        raise RunTimeoutError(f"bench passed its time limit of {TIME_LIMIT_S:g} s") from exc

    direct_best, proxy_best = max(direct_rates), max(proxy_rates)
    ratio = proxy_best / direct_best
    rtt_direct, rtt_proxy = _summary_ms(direct_rtts), _summary_ms(proxy_rtts)
    error = {q: rtt_proxy[q] - rtt_direct[q] - latency_s * 1e3 for q in ("p50", "p99")}
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
        "goals": dict(GOALS),
        "goals_met": {
            "ratio_min": ratio >= GOALS["ratio_min"],
            "latency_error_p50_ms_max": abs(error["p50"]) <= GOALS["latency_error_p50_ms_max"],
        },
        "elapsed_s": time.perf_counter() - wall,
    }


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
    return "\n".join(lines)
