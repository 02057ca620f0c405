"""Lesson 04 (durability): the prompt codes, the experiments and the exercise
checker behave as notebooks/04_durability.ipynb says. Real runs on loopback;
no timing assertions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import wslab
from wslab.exercises import durability as exercise
from wslab.experiments import durability

PROMPTS = wslab.prompts.load("04_durability")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_durability.ipynb"


# The worked solution and realistic wrong answers ---------------------------


class Solution:
    def __init__(self):
        self.next_seq = 0
        self.pending = {}

    def add(self, message):
        seq = self.next_seq
        self.next_seq += 1
        self.pending[seq] = message
        return seq

    def ack(self, upto_seq):
        for seq in [seq for seq in self.pending if seq <= upto_seq]:
            del self.pending[seq]

    def to_resend(self):
        return list(self.pending.items())


class AckRemovesOnlyThatNumber(Solution):
    def ack(self, upto_seq):
        self.pending.pop(upto_seq, None)


class ForgetsWhatItResends(Solution):
    def to_resend(self):
        items = list(self.pending.items())
        self.pending.clear()
        return items


class NumbersFromLength(Solution):
    def add(self, message):
        seq = len(self.pending)
        self.pending[seq] = message
        return seq


class AckClearsEverything(Solution):
    def ack(self, upto_seq):
        self.pending.clear()


class ResendsBodiesOnly(Solution):
    def to_resend(self):
        return list(self.pending.values())


class ResendsNewestFirst(Solution):
    def to_resend(self):
        return list(reversed(self.pending.items()))


class BrokenConstructor:
    def __init__(self):
        raise RuntimeError("oops")


def test_the_worked_solution_passes_offline_and_in_the_lab():
    verdict = asyncio.run(exercise.check_outbound_buffer(Solution))
    assert verdict, verdict
    assert "0 lost" in verdict.message and "1 reconnection" in verdict.message


@pytest.mark.parametrize("wrong, hint", [
    (AckRemovesOnlyThatNumber, "cumulative"),
    (ForgetsWhatItResends, "the previous call returned it"),
    (NumbersFromLength, "never reused"),
    (AckClearsEverything, "left out 'm3' (seq 3)"),
    (ResendsBodiesOnly, "(seq, message) pairs"),
    (ResendsNewestFirst, "oldest first"),
    (BrokenConstructor, "RuntimeError: oops"),
])
def test_wrong_answers_fail_offline_with_a_hint_that_names_the_problem(wrong, hint):
    verdict = exercise.check_outbound_buffer_offline(wrong)
    assert not verdict
    assert hint in verdict.message, verdict.message


def test_a_buffer_that_forgets_on_ack_loses_messages_in_the_lab_and_the_hint_names_one():
    verdict = asyncio.run(exercise.check_outbound_buffer_in_lab(AckClearsEverything))
    assert not verdict
    assert "were lost, the first u0." in verdict.message
    assert "to_resend() never returned it" in verdict.message


def test_the_full_check_stops_at_the_scripted_moments():
    # ForgetsWhatItResends survives one cut in the lab; the scripted moments catch it.
    assert asyncio.run(exercise.check_outbound_buffer_in_lab(ForgetsWhatItResends))
    verdict = asyncio.run(exercise.check_outbound_buffer(ForgetsWhatItResends))
    assert not verdict and "the previous call returned it" in verdict.message


# The prompt codes and the experiments ---------------------------------------


def test_vague_code_loses_what_was_in_flight_and_better_code_loses_nothing():
    scenario = durability.interruption()
    vague = wslab.run(PROMPTS.design("vague"), scenario)
    better = wslab.run(PROMPTS.design("better"), scenario)
    v, b = vague.summary(), better.summary()
    assert v["reconnects"] >= 1 and b["reconnects"] >= 1
    assert v["lost"] > 0 and b["lost"] == 0
    cut = durability.CUT_AT_S
    assert all(cut - 0.2 <= t <= cut + 0.05 for t in durability.produced_s_of_lost(vague))
    assert b["duplicated"] > 0  # acknowledgements lost with the connection: at least once
    assert vague.tasks_left == 0 and better.tasks_left == 0
    assert better.errors == []


def test_reconnect_loses_a_busy_servers_backlog_and_durable_resends_it():
    restart = durability.busy_restart()
    before = durability.fate(wslab.run("reconnect", restart))
    after = durability.fate(wslab.run("durable", restart))
    assert before.lost > 20 and before.resent == 0
    assert after.lost == 0 and after.resent > 20
    assert before.lost_produced_s is not None and after.lost_produced_s is None
    assert "lost 0" in str(after)


def test_the_lesson_scenarios_fit_a_plot_of_a_few_seconds():
    for scenario in (durability.interruption(), durability.busy_restart(),
                     durability.interruption(1.5)):
        assert scenario.planned_s <= 3.5, scenario.name


def test_a_client_with_a_one_second_backoff_cap_always_has_time_to_come_back():
    # The better code's delay is random (full jitter, up to 1 s); over many seeds
    # it must still reconnect and deliver everything before the run ends.
    better = PROMPTS.design("better")
    for seed in range(40):
        summary = wslab.run(better, durability.interruption(), seed=seed).summary()
        assert summary["lost"] == 0 and summary["reconnects"] == 1, (seed, summary)


# The notebook's order: each exercise before what gives it away ---------------


def code_cells() -> list[tuple[int, str, list[str]]]:
    """(index, source, tags) of every code cell of the notebook."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return [(i, "".join(c["source"]), c["metadata"].get("tags", []))
            for i, c in enumerate(cells) if c["cell_type"] == "code"]


def test_each_exercise_comes_before_the_cells_that_give_it_away():
    code = code_cells()
    first = lambda text: next(i for i, source, _ in code if text in source)  # noqa: E731
    [prompt_cell] = [i for i, source, tags in code if "solution" in tags
                     and source.startswith("my_prompt = ")]
    [buffer_cell] = [i for i, source, tags in code if "solution" in tags
                     and "class OutboundBuffer" in source]
    assert first('prompts.prompt("vague")') < prompt_cell < first('prompts.prompt("better")')
    for reveal in ('prompts.code("better")', "OutboundWindow.add", "Channel.run", "Channel._work"):
        assert buffer_cell < first(reveal), reveal
