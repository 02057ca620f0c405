"""The lab knows when it is overloaded: it measures its event loop's lag, and
when that lag passed the keepalive's ping timeout, a timing check that failed
is "unknown: the lab was overloaded", not a failure of the design.

Loopback, port 0, virtual time: a blocking call (``time.sleep``) costs exactly
the lab time it says, so the overload and its verdicts are exact."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import ConnectionClosed

import wslab
from wslab.checkers import CHECKERS
from wslab.contract import Design
from wslab.grading import checks_of
from wslab.run import Run
from wslab.workload import Workload

PING_TIMEOUT_S = 0.1
BLOCK_S = 0.2  # each message blocks the loop this long: past the ping timeout


async def _blocking_handler(websocket, app) -> None:
    try:
        async for message in websocket:
            time.sleep(BLOCK_S)  # blocks the event loop (lab time in this clock)
            await app.process(message)
    except ConnectionClosed:
        pass


async def _client(app) -> None:
    async with app.connect(ping_interval=0.1, ping_timeout=PING_TIMEOUT_S) as websocket:
        async for message in app.outgoing():
            await websocket.send(message)


BLOCKS_THE_LOOP = Design("blocks_the_loop", handler=_blocking_handler, client=_client)


@pytest.mark.timeout(30)
def test_an_overloaded_run_gets_unknown_for_its_failed_timing_checks() -> None:
    run = wslab.run(BLOCKS_THE_LOOP, "latency_spike", faults=[],
                    workload=Workload(count=20, rate_per_s=10, direction="up"))
    summary = run.summary()
    assert run.ping_timeouts_s == [PING_TIMEOUT_S, 20]  # the client's, the server's default
    assert summary["loop_lag_ms"]["max"] >= BLOCK_S * 1000 > PING_TIMEOUT_S * 1000
    assert summary["overloaded"] is True and "overloaded" in run.overloaded
    assert summary["lost"] > 0  # the keepalive dropped the connection: the lab's doing
    checks = {c.criterion.key: c for c in checks_of(run)}
    loss = checks["no loss"]
    assert (loss.passed, loss.applicable, loss.mark) == (None, True, "unknown")
    assert "the lab was overloaded" in loss.measured and "lost" in loss.measured
    # What holds despite the overload still passes; no check is marked failed.
    assert checks["no duplicates"].passed is True and checks["in order"].passed is True
    assert not [c for c in checks.values() if c.passed is False]
    assert all(CHECKERS[c.criterion.key].timing for c in checks.values() if c.mark == "unknown")


@pytest.mark.timeout(30)
def test_a_normal_run_is_not_overloaded_and_its_lag_is_exact() -> None:
    runs = [wslab.run("production", "network_interruption") for _ in range(2)]
    first, second = (r.summary() for r in runs)
    assert first["overloaded"] is False and runs[0].overloaded is None
    assert first["loop_lag_ms"] == second["loop_lag_ms"]  # virtual time: no machine in it
    assert first["loop_lag_ms"]["max"] < runs[0].ping_timeouts_s[0] * 1000
    assert not [c for c in checks_of(runs[0]) if c.mark == "unknown"]


def test_overload_needs_a_lag_past_the_smallest_ping_timeout() -> None:
    from wslab.faults import FaultPlan
    from wslab.ledger import Ledger

    def record(lags: list[float], timeouts: list[float]) -> Run:
        return Run(design="d", scenario="s", seed=0, clients=1, workload=Workload(),
                   faults=FaultPlan(), ledger=Ledger(), loop_lags_s=lags, ping_timeouts_s=timeouts)

    assert record([0.0, 0.4], [0.5, 20.0]).overloaded is None
    assert "600 ms" in record([0.0, 0.6], [0.5, 20.0]).overloaded
    assert record([5.0], []).overloaded is None  # no keepalive: no bound to pass
    assert record([], [0.5]).loop_lag_ms == {"p50": None, "p99": None, "max": None}
