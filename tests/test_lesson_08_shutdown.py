"""Lesson 08 (graceful shutdown and cancellation): the checker, the experiments and
the prompt codes behave as notebooks/08_shutdown.ipynb says. Real sockets on
loopback; independent runs go together in one event loop to keep the file short."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

import wslab
from wslab.exercises.shutdown import Unacked, check_stop_client
from wslab.experiments import shutdown as experiment
from wslab.grading import CRITERIA

pytestmark = pytest.mark.timeout(90)


# The worked solution and realistic wrong answers ---------------------------------


async def solution(websocket, unacked, app, timeout_s):  # the notebook's worked solution
    try:
        async with asyncio.timeout(timeout_s):
            await unacked.wait_empty()
    except TimeoutError:
        pass
    await websocket.close(1000, "client stopping")
    for event in unacked.messages():
        app.reject(event, "not acknowledged before the client stopped")


async def never_gives_up(websocket, unacked, app, timeout_s):
    """Waits for every acknowledgement, however long it takes."""
    await unacked.wait_empty()
    await websocket.close()
    for event in unacked.messages():
        app.reject(event, "not acknowledged")


async def forgets_to_report(websocket, unacked, app, timeout_s):
    try:
        await asyncio.wait_for(unacked.wait_empty(), timeout_s)
    except TimeoutError:
        pass
    await websocket.close()


async def closes_first(websocket, unacked, app, timeout_s):
    """Closes, then waits for acknowledgements that can no longer come."""
    await websocket.close()
    try:
        await asyncio.wait_for(unacked.wait_empty(), timeout_s)
    except TimeoutError:
        pass
    for event in unacked.messages():
        app.reject(event, "not acknowledged")


async def sleeps_the_timeout(websocket, unacked, app, timeout_s):
    await asyncio.sleep(timeout_s)
    await websocket.close()
    for event in unacked.messages():
        app.reject(event, "not acknowledged")


async def swallows_cancellation(websocket, unacked, app, timeout_s):
    try:
        await asyncio.wait_for(unacked.wait_empty(), timeout_s)
    except:  # noqa: E722 - the mistake under test
        pass
    await websocket.close()
    for event in unacked.messages():
        app.reject(event, "not acknowledged")


async def reports_a_stale_copy(websocket, unacked, app, timeout_s):
    pending = unacked.messages()  # taken before the wait: acknowledged ones stay in it
    try:
        await asyncio.wait_for(unacked.wait_empty(), timeout_s)
    except TimeoutError:
        pass
    await websocket.close()
    for event in pending:
        app.reject(event, "not acknowledged")


async def says_going_away(websocket, unacked, app, timeout_s):
    try:
        await asyncio.wait_for(unacked.wait_empty(), timeout_s)
    except TimeoutError:
        pass
    await websocket.close(1001)
    for event in unacked.messages():
        app.reject(event, "not acknowledged")


async def never_closes(websocket, unacked, app, timeout_s):
    try:
        await asyncio.wait_for(unacked.wait_empty(), timeout_s)
    except TimeoutError:
        pass
    for event in unacked.messages():
        app.reject(event, "not acknowledged")


CANDIDATES = [solution, never_gives_up, forgets_to_report, closes_first, sleeps_the_timeout,
              swallows_cancellation, reports_a_stale_copy, says_going_away, never_closes]


@pytest.fixture(scope="module")
def lab():
    """Everything this file measures, run at once in one event loop."""
    prompts = wslab.prompts.load("08_shutdown")
    production = wslab.get_design("production")
    stop_designs = {
        "vague": prompts.design("vague"),
        "better": prompts.design("better"),
        "production, no grace": replace(production, stop_grace_s=0),
        "production": production,
    }

    async def everything():
        shutdown = experiment.shutdown_scenario()
        stopping = experiment.stop_scenario()
        results = await asyncio.gather(
            wslab.arun(prompts.design("vague"), shutdown),
            experiment.run_observed(prompts.design("better"), shutdown),
            experiment.hang_at_shutdown(),
            *(experiment.run_observed(d, stopping) for d in stop_designs.values()),
            *(check_stop_client(fn) for fn in CANDIDATES),
        )
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return results, leftover

    (vague, better, hang, *rest), leftover = asyncio.run(everything())
    n = len(stop_designs)
    return {
        "vague": vague, "better": better, "hang": hang, "leftover": leftover,
        "stops": dict(zip(stop_designs, rest[:n])),
        "verdicts": dict(zip([fn.__name__ for fn in CANDIDATES], rest[n:])),
    }


# The checker ------------------------------------------------------------------------


def test_checker_passes_the_worked_solution(lab):
    verdict = lab["verdicts"]["solution"]
    assert verdict, verdict.message
    assert "closed with 1000" in verdict.message and "let the cancellation through" in verdict.message


def test_checker_catches_a_wait_with_no_deadline(lab):
    verdict = lab["verdicts"]["never_gives_up"]
    assert not verdict
    # The silent server catches it; a heavily loaded machine may catch it with the busy one.
    assert "still waiting when the process's grace period (0.9 s) ran out" in verdict.message
    assert "lost without a word" in verdict.message or "were never reported" in verdict.message
    assert "asyncio.timeout(timeout_s)" in verdict.message


def test_checker_names_the_events_nobody_reported(lab):
    verdict = lab["verdicts"]["forgets_to_report"]
    assert not verdict
    assert "busy server" in verdict.message and "neither acknowledged nor reported" in verdict.message
    assert "u0.79" in verdict.message  # the last event sent is never acknowledged in time


def test_checker_sees_a_close_before_the_wait(lab):
    verdict = lab["verdicts"]["closes_first"]
    assert not verdict and "Wait first, then close" in verdict.message
    assert "s into the stop with" in verdict.message and "events unacknowledged" in verdict.message


def test_checker_sees_a_wait_for_the_clock(lab):
    verdict = lab["verdicts"]["sleeps_the_timeout"]
    assert not verdict and "not for the" in verdict.message and "clock" in verdict.message
    assert "every event already acknowledged" in verdict.message


def test_checker_sees_a_swallowed_cancellation(lab):
    verdict = lab["verdicts"]["swallows_cancellation"]
    assert not verdict
    assert "caught the CancelledError" in verdict.message and "grace period (0.5 s)" in verdict.message


def test_checker_sees_events_reported_after_their_acknowledgement(lab):
    verdict = lab["verdicts"]["reports_a_stale_copy"]
    assert not verdict and "after the wait, not before" in verdict.message


def test_checker_wants_1000_and_a_close_frame(lab):
    going_away, silent = lab["verdicts"]["says_going_away"], lab["verdicts"]["never_closes"]
    assert not going_away and "you closed with 1001" in going_away.message
    assert not silent and "never closed the connection" in silent.message and "1006" in silent.message


def test_checker_explains_a_wrong_shape_without_running_anything():
    def not_async(websocket, unacked, app, timeout_s):
        return None

    async def three_arguments(websocket, unacked, app):
        return None

    verdict = asyncio.run(check_stop_client(not_async))
    assert not verdict and "coroutine function" in verdict.message
    verdict = asyncio.run(check_stop_client(three_arguments))
    assert not verdict and "four arguments" in verdict.message


def test_checker_reports_what_a_stub_raises():
    async def stub(websocket, unacked, app, timeout_s):
        raise NotImplementedError("write stop_client: see the exercise above")

    verdict = asyncio.run(check_stop_client(stub))
    assert not verdict and "NotImplementedError" in verdict.message and "busy server" in verdict.message


def test_unacked_waits_until_every_event_is_acknowledged():
    async def scenario():
        unacked = Unacked()
        unacked._add(0, "a")
        unacked._add(1, "b")
        waiter = asyncio.create_task(unacked.wait_empty())
        await asyncio.sleep(0)
        unacked._ack(0)
        await asyncio.sleep(0)
        first = waiter.done()
        unacked._ack(1)
        await asyncio.wait_for(waiter, 1)
        return first, unacked.messages(), len(unacked)

    first, left, size = asyncio.run(scenario())
    assert not first and left == [] and size == 0


# The prompt codes -------------------------------------------------------------------


def test_vague_code_loses_the_workers_queue_and_leaves_its_heartbeats(lab):
    run = lab["vague"]
    s = run.summary()
    assert s["lost"] >= 20 and s["tasks_left"] >= 1 and s["reconnects"] >= 1
    lost_at = experiment.lost_produced_s(run)
    assert max(lost_at) < experiment.BACK_AT_S
    assert sum(t <= experiment.SHUTDOWN_AT_S for t in lost_at) >= 0.9 * len(lost_at)
    assert experiment.heartbeats_after(run, experiment.SHUTDOWN_AT_S + 0.1) >= 2
    failed = {c.key for c in CRITERIA["shutdown_in_flight"] if not c.measure(run)[0]}
    assert failed == {"no loss", "nothing left running"}


def test_better_code_loses_nothing_and_leaves_nothing(lab):
    run = lab["better"].run
    s = run.summary()
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["tasks_left"] == 0 and s["reconnects"] >= 1
    assert all(c.measure(run)[0] for c in CRITERIA["shutdown_in_flight"])


# The experiments ----------------------------------------------------------------------


def test_a_bare_except_hangs_the_teardown_and_is_released_afterwards(lab):
    hang = lab["hang"]
    assert "process_events_swallowing" in hang.error and "waiting at shutdown.py:" in hang.error
    assert hang.run_s >= hang.planned_s + wslab.lab.TEARDOWN_GRACE_S - 0.1
    assert hang.graded.startswith("did not finish")
    assert lab["leftover"] == []  # the stuck workers were freed: nothing left in the loop


def test_a_graceful_stop_reports_instead_of_losing_and_closes_with_1000(lab):
    stops = lab["stops"]
    for name in ("vague", "production, no grace"):
        s = stops[name].run.summary()
        assert s["lost"] >= 10 and s["rejected"] == 0, name
        assert stops[name].last.left_open and stops[name].last.code == 1006
    for name in ("better", "production"):
        s, last = stops[name].run.summary(), stops[name].last
        assert s["lost"] == 0 and s["rejected"] >= 1, name
        assert (last.initiated_by, last.code) == ("client", 1000) and not last.left_open
    assert stops["production"].run.summary()["rejected"] < stops["production, no grace"].run.summary()["lost"]
    table = experiment.stop_table(stops)
    assert table.splitlines()[0].split()[:3] == ["design", "lost", "reported"]
    assert "closed by client, code 1000" in table and "closed by nobody, code 1006" in table


def test_the_server_closes_with_1001_at_the_shutdown(lab):
    connections = lab["better"].connections
    first = connections[0]
    assert (first.initiated_by, first.code) == ("server", 1001) and not first.left_open
    assert first.ended_s is not None and first.ended_s < experiment.BACK_AT_S
    assert len(connections) >= 2 and str(first).startswith("opened at 0.")
    assert str(first).endswith("closed by server with 1001")


def test_asyncio_run_cancels_a_leftover_task_and_waits_for_it():
    assert experiment.asyncio_run_at_exit() == [
        "main() returns", "the leftover task is cancelled",
        "the leftover task finishes its cleanup", "asyncio.run() returns"]
