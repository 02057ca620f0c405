"""Lesson 06 (keepalive): the checker, the experiments and the prompt codes behave
as notebooks/06_keepalive.ipynb says. Real sockets on loopback, real-world keepalive
values in virtual lab time (wslab.clock): timings are exact to the tick, so they are
asserted within a millisecond or two; independent runs go together to keep the file short."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure

import wslab
from wslab.exercises.keepalive import check_keepalive_choice
from wslab.experiments import keepalive as experiment

pytestmark = pytest.mark.timeout(60)
TICKS = 0.002  # lab seconds: a virtual-time figure is exact but for a few microsecond ticks
SUBMISSIONS = Path(__file__).resolve().parent.parent / "data" / "submissions"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "06_keepalive.ipynb"


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


def test_an_idle_flow_keeps_its_updates_with_20_s_pings_and_loses_them_without():
    prompts = wslab.prompts.load("06_keepalive")
    vague, idle = prompts.design("vague"), experiment.idle_scenario()

    async def runs():
        return await asyncio.gather(*(wslab.arun(design, idle) for design in (
            experiment.with_keepalive(vague, None),
            experiment.with_keepalive(vague, 20),
            vague,  # as written: the library's defaults, 20 s on both sides
            experiment.with_keepalive(vague, 40),
        )))

    off, every_20, as_written, every_40 = asyncio.run(runs())
    fields = ("sent", "delivered", "lost", "rejected", "reconnects", "errors")
    # No pings: the NAT forgets the flow 30 s after the first update (at 0 s), and the updates
    # at 60, 120 and 180 s go into it without an error; the client hears of nothing until its
    # own close at the end (180 s) waits out close_timeout (10 s).
    assert experiment.forgotten_s(off) == [pytest.approx(30, abs=TICKS)]
    assert {k: off.summary()[k] for k in fields} == dict(
        sent=4, delivered=1, lost=3, rejected=0, reconnects=0, errors=0)
    assert off.client_events == [(0.0, 0, "open"), (pytest.approx(190, abs=TICKS), 0, "close")]
    assert off.task_exceptions == []  # nothing raised, handled or not
    # A ping every 20 s, shorter than the NAT's 30 s: the flow is never forgotten.
    assert experiment.forgotten_s(every_20) == [] and every_20.summary()["lost"] == 0
    assert {k: as_written.summary()[k] for k in fields} == {k: every_20.summary()[k] for k in fields}
    # A ping every 40 s, longer than 30 s: forgotten at 30 s; the ping at 40 s gets no pong, the
    # keepalive gives up at 60 s and closes at 70 s, just as the update of 60 s is sent: lost.
    # The new connection is forgotten at 100 s, and so on.
    assert experiment.forgotten_s(every_40) == pytest.approx([30, 100], abs=TICKS)
    assert (every_40.summary()["lost"], every_40.summary()["reconnects"]) == (3, 2)


def test_idle_scenario_and_with_keepalive():
    idle = experiment.idle_scenario()
    (nat,) = idle.faults
    assert (nat.kind, nat.idle_s, nat.start_s, nat.end_s) == ("idle timeout", 30, 0, 240)
    assert [round(i / idle.workload.rate_per_s) for i in range(idle.workload.count)] == [0, 60, 120, 180]
    assert idle.planned_s == 241 and idle.time_limit_s > idle.planned_s
    vague = wslab.prompts.load("06_keepalive").design("vague")
    off = experiment.with_keepalive(vague, None)
    assert off.serve_options == {"ping_interval": None, "ping_timeout": 20}
    assert off.name == "06_keepalive vague, pings off" and off.handler is vague.handler
    assert experiment.with_keepalive(vague, 5, 2, name="mine").name == "mine"
    with pytest.raises(wslab.ConfigError, match="client object"):
        experiment.with_keepalive(wslab.get_design(SUBMISSIONS / "class_waits_close_timeout.py"), None)


# The notebook's shape --------------------------------------------------------------

def code_cells() -> list[tuple[int, str, dict]]:
    """(index, source, metadata) of every code cell of the notebook."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return [(i, "".join(c["source"]), c["metadata"])
            for i, c in enumerate(cells) if c["cell_type"] == "code"]


def solution_cell(start: str) -> tuple[int, str]:
    [(index, source)] = [(i, text) for i, text, meta in code_cells()
                         if "solution" in meta.get("tags", []) and text.startswith(start)]
    return index, source


def test_the_worked_solution_above_is_the_notebooks():
    namespace: dict = {}
    exec(solution_cell("def choose_keepalive")[1], namespace)  # noqa: S102 (the notebook's cell)
    for network in [(0.7, 10.0), (0.05, 2.0), (4.0, 30.0), (8.0, 9.0)]:
        assert namespace["choose_keepalive"](*network) == solution(*network), network


def test_each_exercise_comes_before_the_cells_that_give_it_away():
    code = code_cells()
    first = lambda text: next(i for i, source, _ in code if text in source)  # noqa: E731
    prompt_cell, _ = solution_cell("my_prompt = ")
    choice_cell, _ = solution_cell("def choose_keepalive")
    assert first('prompts.prompt("vague")') < prompt_cell < first('prompts.prompt("better")')
    assert prompt_cell < first('prompts.code("better")')
    for reveal in ("Connection.keepalive)", "serve_options)"):
        assert choice_cell < first(reveal), reveal
        [meta] = [meta for _, source, meta in code if reveal in source]
        assert meta["jupyter"]["outputs_hidden"], reveal  # a long source, collapsed


def test_claims_are_folded_and_only_the_checker_asserts():
    for i, source, meta in code_cells():
        if "wslab.claim(" in source:
            assert meta.get("jupyter", {}).get("source_hidden"), i
        if "assert " in source:
            assert "check_keepalive_choice" in source, i
