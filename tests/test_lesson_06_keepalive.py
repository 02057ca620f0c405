"""Lesson 06 (keepalive): the checker, the experiments and the prompt codes behave
as notebooks/06_keepalive.ipynb says. Real sockets on loopback; independent runs
go together in one event loop to keep the file short."""

from __future__ import annotations

import asyncio
import math

import pytest
from matplotlib.figure import Figure

import wslab
from wslab.exercises.keepalive import check_keepalive_choice
from wslab.experiments import keepalive as experiment

pytestmark = pytest.mark.timeout(60)


def solution(worst_rtt_s, detect_within_s):  # the notebook's worked solution
    ping_timeout_s = 1.5 * worst_rtt_s
    ping_interval_s = detect_within_s - ping_timeout_s
    if ping_interval_s <= 0:
        return None
    return ping_interval_s, ping_timeout_s


def forgot_the_interval(worst_rtt_s, detect_within_s):
    """Gives the whole target to the interval: the worst case is interval + timeout."""
    return detect_within_s, 1.5 * worst_rtt_s


def ignores_the_round_trip(worst_rtt_s, detect_within_s):
    """Pings often and gives up quickly: fast, and blind to a latency spike."""
    return detect_within_s / 3, detect_within_s / 3


def tuned_for_the_lab_only(worst_rtt_s, detect_within_s):
    return 0.45, 1.05


def never_says_impossible(worst_rtt_s, detect_within_s):
    timeout = 1.5 * worst_rtt_s
    return max(0.05, detect_within_s - timeout), timeout


@pytest.fixture(scope="module")
def verdicts():
    candidates = [solution, forgot_the_interval, ignores_the_round_trip, tuned_for_the_lab_only,
                  never_says_impossible]

    async def check_all():
        return await asyncio.gather(*(check_keepalive_choice(fn) for fn in candidates))

    return dict(zip([fn.__name__ for fn in candidates], asyncio.run(check_all())))


def test_checker_passes_the_worked_solution(verdicts):
    verdict = verdicts["solution"]
    assert verdict, verdict.message
    assert "gave up after 1.5" in verdict.message or "gave up after 1.6" in verdict.message


def test_checker_measures_too_slow_when_the_interval_takes_the_whole_target(verdicts):
    verdict = verdicts["forgot_the_interval"]
    assert not verdict
    assert verdict.message.startswith("too slow to notice")
    assert "gave up after 2." in verdict.message  # measured: 1.5 + 1.05 s
    assert "false alarm" not in verdict.message


def test_checker_measures_the_false_alarm_of_a_timeout_below_the_round_trip(verdicts):
    verdict = verdicts["ignores_the_round_trip"]
    assert not verdict
    assert "a false alarm" in verdict.message and "reconnected" in verdict.message
    assert "at least 0.875 s" in verdict.message
    assert "too slow" not in verdict.message


def test_checker_tries_the_rule_on_other_networks(verdicts):
    verdict = verdicts["tuned_for_the_lab_only"]
    assert not verdict
    assert "the lab's network passed" in verdict.message
    assert "worst round trip 0.2 s and target 0.6 s" in verdict.message


def test_checker_wants_none_for_an_impossible_target(verdicts):
    verdict = verdicts["never_says_impossible"]
    assert not verdict and "return None" in verdict.message


def test_checker_explains_a_wrong_shape_without_running_anything():
    verdict = asyncio.run(check_keepalive_choice(lambda rtt, target: "0.5, 1.0"))
    assert not verdict and "return a tuple" in verdict.message
    verdict = asyncio.run(check_keepalive_choice(lambda rtt, target: (0.0, 1.0)))
    assert not verdict and "both must be positive" in verdict.message
    verdict = asyncio.run(check_keepalive_choice(lambda rtt, target: 1 / 0))
    assert not verdict and "ZeroDivisionError" in verdict.message


def test_detection_lies_between_the_timeout_and_interval_plus_timeout():
    rows = asyncio.run(experiment.detection_sweep([0.2], [0.3]))
    worst = next(d for d in rows if d.phase == "worst")
    best = next(d for d in rows if d.phase == "best")
    assert worst.bound_s == pytest.approx(0.5)
    assert 0.45 <= worst.gave_up_s <= 0.5 + 0.15
    assert 0.29 <= best.gave_up_s <= 0.3 + 0.15
    for d in rows:
        assert d.reason == "1011 keepalive ping timeout"
        assert 0.09 <= d.closed_s - d.gave_up_s <= 0.25  # close_timeout, then ConnectionClosed
    figure = experiment.plot_detection(rows)
    assert isinstance(figure, Figure)


def test_pings_wait_behind_data_and_only_a_tight_timeout_gives_up():
    async def both():
        return await asyncio.gather(experiment.pings_behind_data(0.25, 0.5),
                                    experiment.pings_behind_data(0.25, 3.0))

    stuck, patient = asyncio.run(both())
    assert stuck.false_alarm and stuck.reason == "1011 keepalive ping timeout"
    assert 0 < stuck.processed < stuck.messages  # the server was alive and working
    assert not patient.false_alarm and patient.processed > stuck.processed


def test_prompt_codes_vague_misses_the_black_hole_better_notices_and_rides_the_spike():
    prompts = wslab.prompts.load("06_keepalive")

    async def runs():
        return await asyncio.gather(
            wslab.arun(prompts.design("vague"), experiment.black_hole_scenario()),
            wslab.arun(prompts.design("better"), experiment.black_hole_scenario()),
            wslab.arun(prompts.design("better"), experiment.spike_scenario()),
            wslab.arun("keepalive", experiment.spike_scenario()),
        )

    vague, better, better_spike, tight_spike = (r.summary() for r in asyncio.run(runs()))
    assert vague["lost"] > 0 and math.isnan(vague["detection_s"]) and vague["errors"] == 0
    assert better["lost"] == 0 and better["duplicated"] == 0 and better["reconnects"] >= 1
    assert better["detection_s"] <= 0.5 + 1.0 + 0.2 + 0.15
    assert better_spike["reconnects"] == 0 and better_spike["lost"] == 0
    assert tight_spike["reconnects"] >= 1  # the production step's 0.5 s timeout: a false alarm


def test_scenarios_and_designs_the_lesson_names():
    spike = experiment.spike_scenario()
    assert experiment.worst_rtt_s(spike) == pytest.approx(experiment.SPIKE_WORST_RTT_S)
    assert experiment.SPIKE_WORST_RTT_S == pytest.approx(0.7)
    assert spike.workload.echo is False
    hole = experiment.black_hole_scenario(settle_s=2.0)
    assert 2.9 <= hole.planned_s <= 3.0  # 50 messages over 1 s, then the settle window
    assert [(f.kind, f.start_s) for f in hole.faults] == [("black hole", 0.2)]
    design = experiment.keepalive_design(0.3, 0.9)
    assert (design.serve_options["ping_interval"], design.serve_options["ping_timeout"]) == (0.3, 0.9)
