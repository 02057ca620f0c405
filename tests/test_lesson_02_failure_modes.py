"""Lesson 02: the taxonomy covers every scenario, the diagnosis checker gives the
evidence for what a wrong answer missed, the prompts' codes grade as the lesson says."""

import math

import pytest

import wslab
from wslab.exercises.failure_modes import MODES, check_failure_modes, observed_modes
from wslab.experiments import failure_modes


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


@pytest.mark.timeout(120)
def test_the_prompts_codes_grade_as_the_lesson_says():
    import asyncio

    book, figure = asyncio.run(wslab.prompts.grade_both("02_failure_modes", progress=False))
    vague, better = book["vague prompt"], book["better prompt"]
    assert len(vague.failed) >= 7 and "network_interruption" in vague.failed
    assert better.failed == ["token_expiry"]  # checks the token only at connect time
    assert len(figure.axes[0].patches) == 20
