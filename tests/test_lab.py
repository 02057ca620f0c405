"""The lab runner: real runs on loopback, errors that say what is wrong, nothing left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

import wslab
from wslab import (ConfigError, Cut, Design, DesignContractError, DesignHangError,
                   RunTimeoutError, ServerRestart, UnknownNameError, Workload)
from wslab.designs import naive

pytestmark = pytest.mark.timeout(90)

QUICK = dict(workload=Workload(count=20, rate_per_s=400), faults=[], settle_s=0.5)


# The naive design, measured ------------------------------------------------

def test_naive_happy_path_delivers_everything_in_every_direction():
    for workload in [Workload(count=30, rate_per_s=300, direction="up"),
                     Workload(count=30, rate_per_s=300, direction="down"),
                     Workload(count=30, rate_per_s=300, direction="both"),
                     Workload(count=30, rate_per_s=300, direction="up", echo=True)]:
        run = wslab.run("naive", workload=workload, faults=[], clients=3, settle_s=1)
        s = run.summary()
        expected = 90 * (2 if workload.direction == "both" or workload.echo else 1)
        assert (s["sent"], s["delivered"], s["lost"], s["duplicated"]) == (expected, expected, 0, 0), workload
        assert s["out_of_order"] == 0 and s["unexpected"] == 0
        assert run.errors == []


def test_naive_loses_messages_when_the_network_drops():
    s = wslab.run("naive", "network_interruption").summary()
    assert s["lost"] > 0
    assert s["reconnects"] == 0


def test_naive_queue_grows_under_a_slow_consumer():
    baseline = wslab.run("naive", "slow_consumer", faults=[]).summary()
    slow = wslab.run("naive", "slow_consumer").summary()
    assert slow["lost"] == 0  # late, not lost
    assert slow["peak_queue"] > 5 * max(1, baseline["peak_queue"])
    assert slow["latency_ms"]["p99"] > 10 * baseline["latency_ms"]["p99"]


def test_naive_never_notices_a_black_hole():
    run = wslab.run("naive", "idle_black_hole")
    s = run.summary()
    assert s["lost"] > 0
    assert run.errors == []  # silently: nothing raised anywhere


def test_server_restart_empties_server_state_and_clients_can_come_back():
    seen_states = []

    async def handler(websocket, app):
        seen_states.append(dict(app.state))
        app.state["connections"] = app.state.get("connections", 0) + 1
        async for message in websocket:
            await app.process(message)

    async def client(app):
        while True:
            try:
                async with app.connect(open_timeout=1) as websocket:
                    async for message in app.outgoing():
                        await websocket.send(message)
                    await websocket.wait_closed()
            except Exception:
                await asyncio.sleep(0.05)

    design = Design("reconnecting", handler=handler, client=client)
    run = wslab.run(design, workload=Workload(count=100, rate_per_s=100),
                    faults=[ServerRestart(start_s=0.3, duration_s=0.2)], settle_s=0.5)
    assert run.reconnects >= 1
    assert seen_states[0] == {} and seen_states[-1] == {}  # a new server remembers nothing


# Errors that say what is wrong ----------------------------------------------

def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="known designs: .*naive.*production"):
        wslab.run("nope")
    with pytest.raises(UnknownNameError, match="network_interruption"):
        wslab.run("naive", "nope")


@pytest.mark.parametrize("options, field", [
    (dict(clients=0), "clients"), (dict(clients=1001), "clients"),
    (dict(settle_s=-1), "settle_s"), (dict(time_limit_s=0), "time_limit_s"),
    (dict(workload="lots"), "workload"),
])
def test_bad_options_are_refused(options, field):
    with pytest.raises(ConfigError, match=field):
        wslab.run("naive", **options)


def test_designs_that_do_not_fit_the_contract():
    def sync_handler(websocket, app):
        pass

    async def old_handler(websocket, path):
        pass

    async def no_args_client():
        pass

    with pytest.raises(DesignContractError, match="async def"):
        Design("x", handler=sync_handler, client=naive.client)
    with pytest.raises(DesignContractError, match="websocket.request.path"):
        Design("x", handler=old_handler, client=naive.client)
    with pytest.raises(DesignContractError, match="client"):
        Design("x", handler=naive.handler, client=no_args_client)
    with pytest.raises(DesignContractError, match="handler"):
        wslab.get_design(object())
    with pytest.raises(ConfigError, match="serve_options"):
        wslab.run(Design("x", naive.handler, naive.client, serve_options={"bogus": 1}), **QUICK)


def test_a_design_that_raises_is_a_result_not_a_crash():
    async def handler(websocket, app):
        async for message in websocket:
            raise ValueError("bad handler")

    async def client(app):
        async with app.connect():
            raise RuntimeError("bad client")

    run = wslab.run(Design("raising", handler=handler, client=naive.client), **QUICK)
    assert [(e.where, e.error) for e in run.errors][0] == ("server handler (client 0)",
                                                           "ValueError: bad handler")
    assert run.summary()["lost"] == 20
    run = wslab.run(Design("raising", handler=naive.handler, client=client), **QUICK)
    assert ("client 0", "RuntimeError: bad client") in [(e.where, e.error) for e in run.errors]
    assert run.summary()["lost"] == 20


def test_a_design_that_hangs_is_stopped_at_the_end_of_the_run():
    async def handler(websocket, app):
        await asyncio.Event().wait()

    async def client(app):
        async with app.connect():
            await asyncio.Event().wait()

    run = wslab.run(Design("hanging", handler=handler, client=client), **QUICK)
    assert run.summary()["lost"] == 20
    assert run.duration_s < 5


def test_a_design_that_ignores_cancellation_gets_a_clear_error():
    release = asyncio.Event()

    async def stubborn():
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                pass  # the bug under test

    async def handler(websocket, app):
        await websocket.wait_closed()

    async def client(app):
        asyncio.create_task(stubborn())
        await asyncio.sleep(0)

    async def main():
        try:
            with pytest.raises(DesignHangError, match="stubborn"):
                await wslab.arun(Design("stubborn", handler=handler, client=client), **QUICK)
        finally:
            release.set()
            await asyncio.sleep(0.1)

    asyncio.run(main())


def test_hard_time_limit():
    with pytest.raises(RunTimeoutError, match="hard time limit of 0.3 s"):
        wslab.run("naive", "network_interruption", time_limit_s=0.3)


# Nothing left behind ------------------------------------------------------------

def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_hundred_runs_leave_no_task_socket_or_fd_behind():
    async def main():
        await wslab.arun("naive", **QUICK)  # warm up imports and lazy state
        fds, tasks = open_fds(), len(asyncio.all_tasks())
        for i in range(100):
            faults = [Cut(start_s=0.02, duration_s=0.01)] if i % 2 else []
            await wslab.arun("naive", workload=Workload(count=5, rate_per_s=500),
                             faults=faults, settle_s=0.05, clients=2)
        await asyncio.sleep(0)
        return fds, tasks, open_fds(), len(asyncio.all_tasks())

    fds_before, tasks_before, fds_after, tasks_after = asyncio.run(main())
    assert tasks_after == tasks_before
    assert fds_after <= fds_before


def test_a_thousand_clients():
    run = wslab.run("naive", workload=Workload(count=2, rate_per_s=10), faults=[],
                    clients=1000, settle_s=15, time_limit_s=60)
    s = run.summary()
    assert s["sent"] == 2000
    assert s["lost"] == 0, run.errors[:3]


def test_sync_entry_point_inside_a_running_loop():
    # As in a notebook cell that calls wslab.run() instead of awaiting arun().
    code = (
        "import asyncio, wslab\n"
        "async def cell():\n"
        "    return wslab.run('naive', workload=wslab.Workload(count=10, rate_per_s=500), faults=[], settle_s=0.3)\n"
        "print(asyncio.run(cell()).summary()['delivered'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"


def test_overlapping_restarts_keep_the_server_down_until_the_last_ends():
    faults = [ServerRestart(start_s=0.2, duration_s=0.1), ServerRestart(start_s=0.2, duration_s=0.1),
              ServerRestart(start_s=0.25, duration_s=0.3)]
    run = wslab.run("production", workload=Workload(count=80, rate_per_s=100), faults=faults,
                    settle_s=1.5)
    s = run.summary()
    assert s["lost"] == 0 and s["reconnects"] >= 1
    opens_during = [t for t, _ in run.server_opens if 0.2 < t < 0.55]
    assert opens_during == []  # down from 0.2 s to 0.55 s, as the union of the windows
