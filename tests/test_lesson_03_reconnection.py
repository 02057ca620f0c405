"""Lesson 03 (reconnection): the checker, the storm experiment and the prompt codes
behave as the notebook says. Real runs on loopback; numbers with wide margins."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

import wslab
from wslab.exercises import reconnection as exercise
from wslab.experiments import reconnection as experiment

pytestmark = pytest.mark.timeout(120)

BASE_S = experiment.RECONNECT_SETTINGS.backoff_base_s
CAP_S = experiment.RECONNECT_SETTINGS.backoff_cap_s


def solution(attempt, rng):
    return rng.uniform(0, min(CAP_S, BASE_S * 2**attempt))


# The checker ------------------------------------------------------------------


def test_checker_passes_the_worked_solution_in_a_real_storm():
    verdict = asyncio.run(exercise.check_delay(solution))
    assert verdict, verdict.message
    assert "nothing lost" in verdict.message and "100 clients" in verdict.message


WRONG = {
    "no jitter": (lambda a, rng: min(CAP_S, BASE_S * 2**a), ["attempt 0", "no jitter"]),
    "no cap": (lambda a, rng: rng.uniform(0, BASE_S * 2**a), ["attempt 5", "forget the cap"]),
    "off by one": (lambda a, rng: rng.uniform(0, min(CAP_S, BASE_S * 2 ** (a + 1))),
                   ["attempt 0", "off by one"]),
    "the random module": (lambda a, rng: random.uniform(0, min(CAP_S, BASE_S * 2**a)),
                          ["draw from the rng you are given"]),
    "equal jitter": (lambda a, rng: min(CAP_S, BASE_S * 2**a) * (0.5 + rng.random() / 2),
                     ["attempt 0", "equal jitter"]),
    "linear growth": (lambda a, rng: rng.uniform(0, min(CAP_S, BASE_S * (a + 1))),
                      ["attempt 2", "doubling"]),
    "raises past attempt 2": (lambda a, rng: rng.uniform(0, min(CAP_S, BASE_S * 2**a)) if a < 3
                              else 1 / 0, ["at attempt 3", "ZeroDivisionError"]),
    "returns nothing": (lambda a, rng: None, ["attempt 0", "return a number"]),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_checker_names_the_attempt_and_what_is_wrong(name):
    delay, expected = WRONG[name]
    verdict = exercise.check_delay_values(delay)
    assert not verdict
    for words in expected:
        assert words in verdict.message, verdict.message
    assert "Traceback" not in verdict.message


def test_a_wrong_answer_is_refused_before_any_run():
    verdict = asyncio.run(exercise.check_delay(WRONG["no jitter"][0]))
    assert not verdict and "storm" not in verdict.message


def test_production_values_in_a_lab_100_times_faster_fail_in_the_storm():
    def real_time_delay(attempt, rng):  # base 5 s, cap 300 s: right for production, not here
        return rng.uniform(0, min(300.0, 5.0 * 2**attempt))

    verdict = asyncio.run(exercise.check_delay(real_time_delay, base_s=5.0, cap_s=300.0))
    assert not verdict
    assert "not back when the run ended" in verdict.message, verdict.message


# The storm experiment -----------------------------------------------------------


@pytest.fixture(scope="module")
def policies():
    return asyncio.run(experiment.compare_policies(experiment.storm(100), per_window=10))


def test_full_jitter_does_the_least_work_and_everyone_comes_back(policies):
    constant, lockstep, jittered = (experiment.storm_numbers(r) for r in policies.values())
    clients = 100
    assert jittered["missing"] == 0 and jittered["answered"] <= 2.5 * clients
    assert constant["missing"] == 0 and constant["answered"] > jittered["answered"]
    assert constant["while_down"] > max(lockstep["while_down"], jittered["while_down"])
    assert lockstep["answered"] > jittered["answered"] and lockstep["missing"] > 0


def test_attempts_figure_draws_one_panel_per_run(policies):
    figure = experiment.attempts_figure(policies)
    axes = figure.get_axes()
    assert len(axes) == 3
    for ax, (label, run) in zip(axes, policies.items()):
        assert ax.get_title(loc="left").startswith(label)
        bars = [p for p in ax.patches if p.get_gid() == "attempts"]
        assert sum(round(p.get_height()) for p in bars) == run.connect_attempts
    assert "not back" in axes[1].get_title(loc="left")
    text = experiment.table(policies)
    assert text.count("\n") == 3 and "not back" in text


def test_handshake_budget_answers_503_beyond_its_window():
    budget = experiment.HandshakeBudget(per_window=2, window_s=60.0)

    async def handler(websocket):
        await websocket.wait_closed()

    async def main():
        async with serve(handler, "127.0.0.1", 0, process_request=budget) as server:
            uri = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            opened = []
            for _ in range(2):
                opened.append(await connect(uri, proxy=None))
            with pytest.raises(InvalidStatus) as refused:
                await connect(uri, proxy=None)
            for websocket in opened:
                await websocket.close()
            return refused.value.response.status_code

    assert asyncio.run(main()) == 503
    assert (budget.answered, budget.refused) == (3, 1)


# The prompt codes and the library ------------------------------------------------


def test_vague_code_storms_and_loses_what_it_sends_during_the_outage_better_code_does_not():
    pair = wslab.prompts.load("03_reconnection")
    storm = experiment.storm(100)
    vague_run = wslab.run(pair.design("vague"), storm)
    better_run = wslab.run(pair.design("better"), storm)
    vague, better = experiment.storm_numbers(vague_run), experiment.storm_numbers(better_run)
    lost = [r for r in vague_run.ledger.records.values() if not r.deliveries]
    down = [(f.start_s, f.end_s) for f in storm.faults]
    assert len(lost) == storm.clients == len({r.msg_id.split(".")[0] for r in lost})  # one each
    assert all(any(start <= r.produced_s <= end for start, end in down) for r in lost)
    assert vague["missing"] == better["missing"] == 0
    assert better["lost"] == 0 and better_run.errors == []
    assert vague["peak"] >= 0.6 * storm.clients  # in lockstep (a peak per 10 ms moves with load: compare totals)
    assert vague["while_down"] > better["while_down"]
    assert vague["back_s"] < better["back_s"]


def test_library_reconnection_comes_back_at_once_and_keeps_nothing(caplog):
    # The naive server's handler fails at the reset; formatting 50 tracebacks for
    # pytest's log capture would stall the loop for tens of milliseconds.
    caplog.set_level(logging.CRITICAL, logger="wslab.design")
    silent = experiment.silent_then_cut(clients=50)
    run = wslab.run("library_reconnect", silent)
    lost = [r for r in run.ledger.records.values() if not r.deliveries]
    assert run.summary()["reconnects"] == silent.clients
    assert len(lost) >= 5 * silent.clients and all(0.3 <= r.produced_s <= 0.6 for r in lost)
    at_once = {c for t, c, e in run.connections if e == "accept" and 0.6 <= t < 0.7}
    assert len(at_once) >= 0.8 * silent.clients
