"""Lesson 03 (reconnection): the checker, the storm experiment, the prompt codes and
websockets' own reconnection behave as the notebook says. Real runs on loopback.

Storms run in CPU-charged lab time with the garbage collector paused, so their
numbers move a little from run to run: relations with margins that hold with
two CPU hogs running. The library's reconnection runs in virtual time at full
scale: exact, but for its unseeded random first delay (bounds)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.client import BACKOFF_INITIAL_DELAY, backoff
from websockets.exceptions import InvalidStatus

import wslab
from wslab.designs import library_reconnect
from wslab.exercises import reconnection as exercise
from wslab.experiments import reconnection as experiment

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
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


def test_production_values_fail_in_a_storm_at_a_hundredth_of_production_time():
    def real_time_delay(attempt, rng):  # base 5 s, cap 300 s: right for production, not here
        return rng.uniform(0, min(300.0, 5.0 * 2**attempt))

    verdict = asyncio.run(exercise.check_delay(real_time_delay, base_s=5.0, cap_s=300.0))
    assert not verdict
    assert "not back when the run ended" in verdict.message, verdict.message


# The storm experiment -----------------------------------------------------------


@pytest.fixture(scope="module")
def policies():
    return asyncio.run(experiment.compare_policies(experiment.storm(100), per_window=10))


def test_full_jitter_makes_the_server_answer_the_fewest_handshakes_and_everyone_comes_back(policies):
    # The lesson's claim is about one measured quantity: handshakes answered after the
    # restart ("answered"). On attempts while down, full jitter saves nothing over
    # exponential backoff without jitter (at least 0.9 as many; measured 1.02 to 1.86
    # times as many in eleven reruns), and in total the two come out close, either ahead.
    constant, lockstep, jittered = (experiment.storm_numbers(r) for r in policies.values())
    clients = 100
    assert all(run.clock == "cpu" for run in policies.values())
    assert jittered["missing"] == 0 and jittered["answered"] <= 1.2 * clients
    assert constant["missing"] == 0 and constant["answered"] > 1.3 * jittered["answered"]
    # No backoff's attempts while down are limited by the CPU alone (a constant 10 ms pause):
    # 466 on a quiet machine, 250 with three CPU hogs beside the test run. The backoffs' stay
    # under 4 per client on any machine.
    assert max(lockstep["while_down"], jittered["while_down"]) < 4 * clients
    assert lockstep["answered"] > 1.1 * jittered["answered"]
    # 3 times as long quiet, 1.46 times with two CPU hogs and a CI run beside it (CPU-charged time)
    assert lockstep["half_back_s"] > 1.2 * jittered["half_back_s"]
    assert jittered["while_down"] >= 0.9 * lockstep["while_down"]


def test_the_notebook_says_when_reconnecting_by_iterating_connect_arrived():
    notebook = json.loads((ROOT / "notebooks" / "03_reconnection.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    assert "Since version 10.0, `websockets` reconnects for you when you iterate over `connect()`" in text
    assert "10.1" not in text
    # The storm's claim names what it measured.
    assert "counted as handshakes answered after the restart, full jitter does the least work" in text
    assert "full jitter does the least work." not in text.replace("\n", " ")


def test_attempts_figure_draws_one_panel_per_run(policies):
    figure = experiment.attempts_figure(policies)
    axes = figure.get_axes()
    assert len(axes) == 3
    for ax, (label, run) in zip(axes, policies.items()):
        assert ax.get_title(loc="left").startswith(label)
        bars = [p for p in ax.patches if p.get_gid() == "attempts"]
        attempts = sum(len(t) for t in experiment.attempts_by_client(run).values())
        assert sum(round(p.get_height()) for p in bars) == attempts <= run.connect_attempts
    text = experiment.table(policies)
    assert text.count("\n") == 3 and "half back" in text.splitlines()[0]


def test_storm_numbers_ignore_what_happens_after_the_run_ended(policies):
    # The lab gives clients a grace period after the run's end: connections made
    # then are not "back", and attempts then are not the storm's.
    for run in policies.values():
        back = experiment.back_after(run)
        assert all(run.end_s - 0.65 >= b for b in back.values())
        assert all(t <= run.end_s for ts in experiment.attempts_by_client(run).values() for t in ts)


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
    with experiment.collector_paused():
        vague_run = wslab.run(pair.design("vague"), storm)
        better_run = wslab.run(pair.design("better"), storm)
    vague, better = experiment.storm_numbers(vague_run), experiment.storm_numbers(better_run)
    lost = [r for r in vague_run.ledger.records.values() if not r.deliveries]
    down = [(f.start_s, f.end_s) for f in storm.faults]
    assert len(lost) == storm.clients == len({r.msg_id.split(".")[0] for r in lost})  # one each
    assert all(any(start <= r.produced_s <= end for start, end in down) for r in lost)
    assert vague["missing"] == better["missing"] == 0
    assert better["lost"] == 0 and better_run.errors == []
    # In lockstep; on the cpu clock handshakes spread the lockstep a little (62 against
    # 31 per 10 ms with the machine at load 10), so the margin is the notebook's.
    assert vague["peak"] > 1.5 * better["peak"]
    # Attempts while down are not compared: the vague code's 10 ms pause makes them
    # CPU-bound (measured 427 in the notebook, 319 on a loaded CI runner, against the
    # better code's 264-277), so the ratio is the machine's speed. The better code's
    # own count is set by its backoff: about three attempts per client in 0.3 s.
    assert better["while_down"] < 4 * storm.clients
    assert vague["back_s"] < better["back_s"] / 2


def test_collector_paused_restores_the_collector():
    import gc

    assert gc.isenabled()
    with experiment.collector_paused():
        assert not gc.isenabled()
        with experiment.collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_library_defaults_come_back_at_once_then_after_a_random_delay_and_keep_nothing(caplog):
    # The naive server's handler fails at the reset: no tracebacks in pytest's log capture.
    caplog.set_level(logging.CRITICAL, logger="wslab.design")
    silent = experiment.silent_then_cut(clients=50)
    run = wslab.run(library_reconnect.DEFAULTS, silent)
    assert run.clock == "virtual"
    lost = [r for r in run.ledger.records.values() if not r.deliveries]
    assert run.summary()["reconnects"] == silent.clients
    assert len(lost) >= 5 * silent.clients and all(0.3 <= r.produced_s <= 0.6 for r in lost)
    retries = [[t for t in times if t >= 0.6]
               for times in experiment.attempts_by_client(run).values()]
    assert len(retries) == silent.clients
    assert all(times[0] - 0.6 < 0.001 for times in retries)  # at once, into the cut
    waited = [times[1] - times[0] for times in retries]
    assert all(0 <= w < BACKOFF_INITIAL_DELAY for w in waited)
    assert max(waited) - min(waited) > 1  # drawn: 50 draws within 1 s of each other never happen


def test_library_defaults_after_a_minute_down_follow_the_generator_to_the_millisecond(caplog):
    caplog.set_level(logging.CRITICAL, logger="wslab.design")
    outage = experiment.long_outage(clients=20)
    run = wslab.run(library_reconnect.DEFAULTS, outage)
    schedule = list(itertools.islice(backoff(), 1, 10))
    assert [round(d, 1) for d in schedule] == [3.1, 5.0, 8.1, 13.1, 21.2, 34.4, 55.6, 90.0, 90.0]
    for times in experiment.attempts_by_client(run).values():
        retries = [t for t in times if t >= 1.0]
        gaps = [b - a for a, b in zip(retries, retries[1:])]
        assert retries[0] - 1.0 < 0.001 and 0 <= gaps[0] < BACKOFF_INITIAL_DELAY
        assert len(gaps) == 7 and all(abs(g - d) < 0.001 for g, d in zip(gaps[1:], schedule))
    back = experiment.back_after(run)
    # Back after the six fixed delays (84.98 s) plus the random first one (0 to 5 s), less
    # the minute the server was down: from 24.98 s (a first delay of 0) to 29.98 s.
    earliest = sum(schedule[:6]) - next(iter(outage.faults)).duration_s
    assert len(back) == outage.clients
    assert all(earliest - 0.001 < b < earliest + BACKOFF_INITIAL_DELAY + 0.001 for b in back.values())
    assert run.summary()["lost"] == 0


def test_the_graders_library_design_keeps_its_delays_100_times_shorter():
    scaled = list(itertools.islice(library_reconnect.scaled_library_delays(), 1, 5))
    full = list(itertools.islice(backoff(), 1, 5))
    assert all(abs(a - b * library_reconnect.SCALE) < 1e-9 for a, b in zip(scaled, full))
    assert wslab.DESIGNS["library_reconnect"] is library_reconnect.DESIGN
    assert library_reconnect.DESIGN.client is library_reconnect.scaled_client
