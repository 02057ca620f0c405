"""Lesson 06 (keepalive): the checker, the experiments and the prompt codes behave
as notebooks/06_keepalive.ipynb says. Real sockets on loopback, real-world keepalive
values in virtual lab time (wslab.clock): timings are exact to the tick, so they are
asserted within a millisecond or two; independent runs go together to keep the file short."""

from __future__ import annotations

import asyncio
import math

import pytest
from matplotlib.figure import Figure

import wslab
from wslab.exercises.keepalive import check_keepalive_choice
from wslab.experiments import keepalive as experiment

pytestmark = pytest.mark.timeout(60)
TICKS = 0.002  # lab seconds: a virtual-time figure is exact but for a few microsecond ticks


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
    return detect_within_s / 20, detect_within_s / 20


def tuned_for_the_lab_only(worst_rtt_s, detect_within_s):
    return 8.95, 1.05


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
    assert "(ping every 8.95 s, timeout 1.05 s) gave up after 10.00 s (target 10 s)" in verdict.message


def test_checker_measures_too_slow_when_the_interval_takes_the_whole_target(verdicts):
    verdict = verdicts["forgot_the_interval"]
    assert not verdict
    assert verdict.message.startswith("too slow to notice")
    assert "gave up after 11.05 s" in verdict.message  # measured: 10 + 1.05 s, exactly
    assert "false alarm" not in verdict.message


def test_checker_measures_the_false_alarm_of_a_timeout_below_the_round_trip(verdicts):
    verdict = verdicts["ignores_the_round_trip"]
    assert not verdict
    assert "a false alarm" in verdict.message and "reconnected" in verdict.message
    assert "(the spike began at 5 s)" in verdict.message
    assert "at least 0.875 s" in verdict.message
    assert "too slow" not in verdict.message


def test_checker_tries_the_rule_on_other_networks(verdicts):
    verdict = verdicts["tuned_for_the_lab_only"]
    assert not verdict
    assert "the lab's network passed" in verdict.message
    assert "worst round trip 0.05 s and target 2 s" in verdict.message


def test_checker_wants_none_for_an_impossible_target(verdicts):
    verdict = verdicts["never_says_impossible"]
    assert not verdict and "return None" in verdict.message
    assert "the timeout alone needs 10 s" in verdict.message


def test_checker_explains_a_wrong_shape_without_running_anything():
    verdict = asyncio.run(check_keepalive_choice(lambda rtt, target: "0.5, 1.0"))
    assert not verdict and "return a tuple" in verdict.message
    verdict = asyncio.run(check_keepalive_choice(lambda rtt, target: (0.0, 1.0)))
    assert not verdict and "both must be positive" in verdict.message
    verdict = asyncio.run(check_keepalive_choice(lambda rtt, target: 1 / 0))
    assert not verdict and "ZeroDivisionError" in verdict.message


def test_library_defaults_notice_a_black_hole_after_20_to_40_s_and_close_10_s_later():
    assert experiment.LIBRARY_DEFAULTS == {"ping_interval": 20, "ping_timeout": 20,
                                           "close_timeout": 10}

    async def both():
        return await asyncio.gather(*(experiment.detect_dead_peer(20, 20, phase=phase)
                                      for phase in ("best", "worst")))

    best, worst = asyncio.run(both())
    assert best.gave_up_s == pytest.approx(20, abs=TICKS)  # the swallowed ping's timeout
    assert worst.gave_up_s == pytest.approx(40, abs=TICKS)  # a whole interval, then the timeout
    assert best.closed_s == pytest.approx(30, abs=TICKS)  # then close_timeout
    assert worst.closed_s == pytest.approx(50, abs=TICKS)
    assert best.reason == worst.reason == "1011 keepalive ping timeout"


def test_detection_is_the_timeout_at_best_and_interval_plus_timeout_at_worst():
    rows = asyncio.run(experiment.detection_sweep([10, 30], [5], close_timeout_s=1.0))
    assert len(rows) == 4
    for d in rows:
        assert d.reason == "1011 keepalive ping timeout"
        expected = d.bound_s if d.phase == "worst" else d.ping_timeout_s
        assert d.gave_up_s == pytest.approx(expected, abs=TICKS), d
        assert d.closed_s - d.gave_up_s == pytest.approx(1.0, abs=TICKS), d  # close_timeout
    assert {(d.ping_interval_s, d.phase): d.gave_up_s for d in rows} == pytest.approx(
        {(10, "worst"): 15, (10, "best"): 5, (30, "worst"): 35, (30, "best"): 5}, abs=TICKS)
    figure = experiment.plot_detection(rows)
    assert isinstance(figure, Figure)


def test_pings_wait_behind_data_and_only_a_tight_timeout_gives_up():
    async def both():
        return await asyncio.gather(experiment.pings_behind_data(8.95, 1.05),
                                    experiment.pings_behind_data(8.95, 20.0))

    stuck, patient = asyncio.run(both())
    assert stuck.false_alarm and stuck.reason == "1011 keepalive ping timeout"
    # Not before interval + timeout; later only if the OS's socket buffers made ping() wait.
    assert stuck.gave_up_s >= 8.95 + 1.05 - TICKS
    assert 0 < stuck.processed < stuck.messages  # the server was alive and working
    assert not patient.false_alarm and patient.processed == patient.messages
    # A live server's pong, later than the tight timeout (how much later depends on the OS's buffers).
    assert patient.slowest_pong_s > stuck.ping_timeout_s


def test_prompt_codes_vague_notices_after_40_s_and_loses_better_notices_in_6_s_and_rides_the_spike():
    prompts = wslab.prompts.load("06_keepalive")
    hole = experiment.black_hole_scenario()

    async def runs():
        return await asyncio.gather(
            wslab.arun(prompts.design("vague"), hole),
            wslab.arun(prompts.design("better"), hole),
            wslab.arun(prompts.design("better"), experiment.spike_scenario()),
            wslab.arun("keepalive", experiment.spike_scenario()),
        )

    vague, better, better_spike, tight_spike = (r.summary() for r in asyncio.run(runs()))
    # The black hole at 10 s swallows the default keepalive's first ping (20 s): 10 + 20 + 10 s.
    assert vague["detection_s"] == pytest.approx(40, abs=TICKS) and vague["errors"] == 0
    assert 30 <= vague["lost"] <= 31  # an update a second from 10 s until it gave up at 40 s
    # better.py pings every 6 s: the ping at 12 s is swallowed, then 3 s timeout, 1 s close.
    assert better["detection_s"] == pytest.approx(2 + 3 + 1, abs=TICKS)
    assert better["lost"] == 0 and better["duplicated"] == 0 and better["reconnects"] == 1
    assert better_spike["reconnects"] == 0 and better_spike["lost"] == 0
    assert tight_spike["reconnects"] >= 1  # the production step's 0.5 s timeout: a false alarm
    assert tight_spike["lost"] == 0


def test_scenarios_and_designs_the_lesson_names():
    spike = experiment.spike_scenario()
    assert experiment.worst_rtt_s(spike) == pytest.approx(experiment.SPIKE_WORST_RTT_S)
    assert experiment.SPIKE_WORST_RTT_S == pytest.approx(0.7)
    assert spike.workload.echo is False
    assert [(f.kind, f.start_s, f.end_s) for f in spike.faults] == [("latency", 5.0, 20.0)]
    hole = experiment.black_hole_scenario(settle_s=2.0)
    assert 61 <= hole.planned_s <= 62  # an update a second for a minute, then the settle window
    assert hole.time_limit_s > hole.planned_s
    assert [(f.kind, f.start_s) for f in hole.faults] == [("black hole", 10.0)]
    design = experiment.keepalive_design(6, 3)
    assert (design.serve_options["ping_interval"], design.serve_options["ping_timeout"]) == (6, 3)
