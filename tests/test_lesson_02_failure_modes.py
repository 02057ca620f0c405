"""Lesson 02: the taxonomy covers every scenario, the diagnosis checker gives the
evidence for what a wrong answer missed, the code of the three prompts (vague, the
article's requirement list, failures first) grades exactly as the lesson says, and the
notebook's lifecycle diagram has the two exits it adds."""

import dataclasses
import inspect
import json
import math
from pathlib import Path

import pytest

import wslab
from wslab.exercises.failure_modes import MODES, check_failure_modes, observed_modes
from wslab.experiments import failure_modes

ROOT = Path(__file__).resolve().parent.parent


def test_taxonomy_places_every_scenario_and_names_real_lessons():
    table = failure_modes.taxonomy()
    assert [mode.scenario for mode, _, _ in table] == list(wslab.SCENARIOS)
    assert all(criteria and lessons for _, criteria, lessons in table)
    assert table._repr_html_().count("<tr>") == 1 + len(wslab.SCENARIOS)
    figure = failure_modes.lifecycle_diagram()
    labels = {t.get_text() for t in figure.axes[0].texts}
    assert "reconnect storm" in labels and "authenticate" in labels


@pytest.fixture(scope="module")
def runs():
    return [wslab.run("naive", "network_interruption"),
            wslab.run("durable", "lost_acknowledgements"),
            wslab.run("production", "network_interruption")]


def solution(run):
    s = run.summary()
    found = {name for name, key in [("lost", "lost"), ("duplicated", "duplicated"),
                                    ("out of order", "out_of_order")] if s[key] > 0}
    if run.recovery_s is not None and math.isnan(run.recovery_s):
        found.add("never came back")
    return found


@pytest.mark.timeout(60)
def test_the_checker_passes_the_solution_and_explains_wrong_answers(runs):
    assert observed_modes(runs[0]) == {"lost", "never came back"}
    assert "duplicated" in observed_modes(runs[1])
    assert observed_modes(runs[2]) == set()
    assert check_failure_modes(solution, runs)

    only_lost = check_failure_modes(lambda run: {"lost"} if run.summary()["lost"] else set(), runs)
    assert not only_lost and "missed 'never came back'" in only_lost.message

    reconnects_mean_trouble = check_failure_modes(
        lambda run: solution(run) | ({"never came back"} if run.recovery_s is not None else set()),
        runs)
    assert not reconnects_mean_trouble and "only nan means never" in reconnects_mean_trouble.message

    typo = check_failure_modes(lambda run: {"loss"}, runs)
    assert not typo and ", ".join(MODES) in typo.message

    crash = check_failure_modes(lambda run: run.summary()["nothing"], runs)
    assert not crash and "KeyError" in crash.message and "line" in crash.message
    assert not check_failure_modes(solution, [])


THREE_RUNGS = """\
| vague prompt | ✗ lost 200, never back | ✗ lost 597, never back | ✗ queue 376 | ✗ queue 376 | ✗ lost 75, not noticed, never back | ✓ | ✓ | ✗ lost 119, never back | ✓ (n/a: revocation enforced) | ✗ lost 1000, never back | 3/10 | 39/52 |
| article prompt | ✓ | ✓ | ✗ queue 376 | ✗ queue 376 | ✗ lost 75, not noticed, never back | ✓ | ✓ | ✗ lost 40 | ✓ (n/a: revocation enforced) | ✗ 200 attempts in 10 ms | 5/10 | 45/52 |
| better prompt | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✗ 29 revoked delivered | ✓ | 9/10 | 52/53 |
"""


@pytest.mark.timeout(120)
def test_the_prompts_codes_grade_as_the_lesson_says():
    import asyncio

    pair = wslab.prompts.load("02_failure_modes")
    assert pair.rungs == ("vague", "article", "better")
    assert pair.article == wslab.prompts.ARTICLE_PROMPT  # the article's own prompt, no rewording
    book, figure = asyncio.run(wslab.prompts.grade_both("02_failure_modes", progress=False))
    vague, article, better = book["vague prompt"], book["article prompt"], book["better prompt"]
    assert len(vague.failed) >= 7 and "network_interruption" in vague.failed
    assert better.failed == ["token_expiry"]  # checks the token only at connect time
    assert len(figure.axes[0].patches) == 30  # one cell per scenario and prompt

    # Virtual time: the three rungs grade the same on any machine, exactly.
    assert book.markdown().splitlines()[2:] == THREE_RUNGS.splitlines()
    assert vague.failed == ["network_interruption", "server_restart", "slow_consumer", "queue_overflow",
                            "idle_black_hole", "shutdown_in_flight", "reconnect_storm"]
    assert article.failed == ["slow_consumer", "queue_overflow", "idle_black_hole",
                              "shutdown_in_flight", "reconnect_storm"]
    assert [card.score() for card in (vague, article, better)] == [(39, 52, 1), (45, 52, 1), (52, 53, 0)]
    # What the article's prompt bought: reconnection, acknowledgements and resend.
    for scenario in ("network_interruption", "server_restart"):
        assert article[scenario].run.summary()["lost"] == 0 < vague[scenario].run.summary()["lost"]
    # What it did not: numbers, and answers to failures it never listed.
    module = inspect.getmodule(pair.design("article").handler)
    held = article["queue_overflow"].run.summary()["peak_queue"]
    assert wslab.checkers.MAX_QUEUE < held == 376 < module.MAX_QUEUE_SIZE  # the bound never engaged
    holed = article["idle_black_hole"]
    assert {c.criterion.key for c in holed.failures} == {"no loss", "dead peer noticed", "came back"}
    assert holed.run.end_s < module.PING_INTERVAL + module.PING_TIMEOUT  # library defaults: 20 s + 20 s
    assert [c.measured for c in article["shutdown_in_flight"].failures] == ["40 of 200 lost"]
    assert [c.measured for c in article["reconnect_storm"].failures] == [
        "peak 200 attempts in 10 ms (1.00 per client)"]
    assert article["lost_acknowledgements"].run.end_s < module.ACK_TIMEOUT  # passes for a poor reason


@pytest.mark.timeout(60)
def test_what_the_graded_runs_are_too_short_to_show():
    pair = wslab.prompts.load("02_failure_modes")
    minute = wslab.run(pair.design("article"), "idle_black_hole", settle_s=60, time_limit_s=90)
    m = minute.summary()
    assert (m["lost"], m["reconnects"], m["detection_s"]) == (0, 1, 49.5)  # noticed, late
    graded = wslab.get_scenario("lost_acknowledgements")
    slower = graded.with_(workload=dataclasses.replace(graded.workload, rate_per_s=20))
    article, better = (wslab.run(pair.design(which), slower).summary() for which in ("article", "better"))
    assert (article["duplicated"], article["lost"]) == (53, 0)  # resent after 5 s, processed twice
    assert (better["duplicated"], better["lost"]) == (0, 0)


def test_the_notebooks_lifecycle_diagram_adds_the_two_exits():
    """The module's diagram lacks them (wslab/experiments/failure_modes.py): the
    notebook draws "connect failed → back off" and "auth refused → stop"."""
    notebook = json.loads((ROOT / "notebooks" / "02_failure_modes.ipynb").read_text())
    source = next("".join(c["source"]) for c in notebook["cells"]
                  if "failure_modes.lifecycle_diagram()" in "".join(c["source"]))
    namespace = {"failure_modes": failure_modes}
    exec(source, namespace)
    texts = {t.get_text() for t in namespace["figure"].axes[0].texts}
    assert "connect failed" in texts
    assert any(t.startswith("auth refused") for t in texts)
    arrows = [p for p in namespace["figure"].axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == len(failure_modes.TRANSITIONS) + 2
