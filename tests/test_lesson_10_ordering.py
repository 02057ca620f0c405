"""Lesson 10 (ordering and duplicates): the prompt codes, the experiments and the
exercise checker behave as notebooks/10_ordering.ipynb says. Real runs on
loopback, several at once in one event loop; no timing assertions."""

from __future__ import annotations

import asyncio

import matplotlib.pyplot as plt
import pytest

import wslab
from wslab.exercises import ordering as exercise
from wslab.experiments import ordering as experiment

PROMPTS = wslab.prompts.load("10_ordering")


def gather(*coroutines):
    async def main():
        return await asyncio.gather(*coroutines)

    return asyncio.run(main())


# The worked solution and realistic wrong answers -----------------------------


class Solution:
    def __init__(self):
        self.next_expected = {}

    def receive(self, session, seq, body):
        expected = self.next_expected.get(session, 0)
        if seq != expected:
            return [], expected - 1
        self.next_expected[session] = expected + 1
        return [body], seq


class HoldsEarlyMessages(Solution):
    """Also correct: keeps a message that came early and delivers it with the gap."""

    def __init__(self):
        super().__init__()
        self.held = {}

    def receive(self, session, seq, body):
        expected = self.next_expected.get(session, 0)
        if seq < expected:
            return [], expected - 1
        held = self.held.setdefault(session, {})
        held[seq] = body
        ready = []
        while expected in held:
            ready.append(held.pop(expected))
            expected += 1
        self.next_expected[session] = expected
        return ready, expected - 1


class DeliversEverything:
    def receive(self, session, seq, body):
        return [body], seq


class OneCounterForEveryone:
    def __init__(self):
        self.next_expected = 0

    def receive(self, session, seq, body):
        if seq != self.next_expected:
            return [], self.next_expected - 1
        self.next_expected += 1
        return [body], seq


class SeenSet:
    def __init__(self):
        self.seen = {}

    def receive(self, session, seq, body):
        seen = self.seen.setdefault(session, set())
        if seq in seen:
            return [], max(seen)
        seen.add(seq)
        return [body], max(seen)


class HighestSeen:
    def __init__(self):
        self.last = {}

    def receive(self, session, seq, body):
        last = self.last.get(session, -1)
        if seq <= last:
            return [], last
        self.last[session] = seq
        return [body], seq


class SilentOnCopies(Solution):
    def receive(self, session, seq, body):
        if seq < self.next_expected.get(session, 0):
            return [], None
        return super().receive(session, seq, body)


class ReturnsOneBody(Solution):
    def receive(self, session, seq, body):
        ready, ack = super().receive(session, seq, body)
        return (ready[0] if ready else None), ack


class BrokenConstructor:
    def __init__(self):
        raise RuntimeError("oops")


def test_the_worked_solution_and_a_holding_receiver_pass_offline_and_in_the_lab():
    offline = [exercise.check_deduplication_offline(c) for c in (Solution, HoldsEarlyMessages)]
    assert all(offline), offline
    verdicts = gather(exercise.check_deduplication(Solution),
                      exercise.check_deduplication(HoldsEarlyMessages))
    for verdict in verdicts:
        assert verdict, verdict
        assert "each message processed once, in order" in verdict.message
        assert "240 messages from 2 sessions" in verdict.message


@pytest.mark.parametrize("wrong, hint", [
    (DeliversEverything, "delivered 'a1' a second time"),
    (OneCounterForEveryone, "keep the next expected number per session"),
    (SeenSet, "delivered 'a4' while session-a's seq 3 has not arrived"),
    (HighestSeen, "delivered 'a4' while session-a's seq 3 has not arrived"),
    (SilentOnCopies, "returned no acknowledgement (None)"),
    (ReturnsOneBody, "to_deliver must be a list of bodies"),
    (BrokenConstructor, "RuntimeError: oops"),
])
def test_wrong_answers_fail_offline_with_a_hint_that_names_the_frame(wrong, hint):
    verdict = exercise.check_deduplication_offline(wrong)
    assert not verdict
    assert hint in verdict.message, verdict.message


def test_in_the_lab_the_hint_names_the_message_processed_twice_or_skipped():
    twice, skipped, mixed = gather(exercise.check_deduplication_in_lab(DeliversEverything),
                                   exercise.check_deduplication_in_lab(HighestSeen),
                                   exercise.check_deduplication_in_lab(OneCounterForEveryone))
    assert not twice and "processed more than once, the first u" in twice.message, twice
    assert "returned the copy again" in twice.message
    # HighestSeen jumps over a dropped frame and acknowledges past it: the client forgets it.
    assert not skipped and "never processed, the first u" in skipped.message, skipped
    assert "hold the acknowledgement at the last number delivered in order" in skipped.message
    assert not mixed and "per session" in mixed.message, mixed


def test_the_full_check_stops_at_the_scripted_frames():
    verdict = asyncio.run(exercise.check_deduplication(SilentOnCopies))
    assert not verdict and "Acknowledge every frame, copies included" in verdict.message


# The prompt codes ------------------------------------------------------------


def test_vague_code_processes_copies_when_acknowledgements_are_lost_and_better_code_does_not():
    vague, better = gather(wslab.arun(PROMPTS.design("vague"), "lost_acknowledgements"),
                           wslab.arun(PROMPTS.design("better"), "lost_acknowledgements"))
    v, b = vague.summary(), better.summary()
    assert v["lost"] == 0 and b["lost"] == 0
    assert v["duplicated"] > 20 and b["duplicated"] == 0 and b["out_of_order"] == 0
    copied_at = experiment.produced_s(vague, list(experiment.copies(vague)))
    assert min(copied_at) >= 0.3  # nothing copied before acknowledgements were dropped
    assert vague.errors == [] and better.errors == []
    assert vague.tasks_left == 0 and better.tasks_left == 0


def test_better_code_survives_a_restart_and_a_cut_without_copies():
    restart, cut = gather(wslab.arun(PROMPTS.design("better"), experiment.busy_restart()),
                          wslab.arun(PROMPTS.design("better"), "network_interruption"))
    for run in (restart, cut):
        s = run.summary()
        assert (s["lost"], s["duplicated"], s["out_of_order"]) == (0, 0, 0), s
        assert s["reconnects"] >= 1


def test_the_playground_knob_moves_the_copies_of_the_vague_code_only():
    few, many, better_all = gather(
        wslab.arun(PROMPTS.design("vague"), experiment.acks_dropped(0.1)),
        wslab.arun(PROMPTS.design("vague"), experiment.acks_dropped(0.7)),
        wslab.arun(PROMPTS.design("better"), experiment.acks_dropped(1.0)),
    )
    assert many.summary()["duplicated"] > few.summary()["duplicated"] + 10
    b = better_all.summary()
    assert b["duplicated"] == 0 and b["lost"] == 0  # every acknowledgement dropped: copies skipped


# The experiments -----------------------------------------------------------------


def test_deduplication_removes_copies_and_memory_sessions_stall_after_a_restart():
    without, production, in_memory, durable = gather(
        wslab.arun(experiment.without_dedup(), "lost_acknowledgements"),
        wslab.arun("production", "lost_acknowledgements"),
        wslab.arun(experiment.memory_sessions(), experiment.busy_restart()),
        wslab.arun("production", experiment.busy_restart()),
    )
    assert without.summary()["duplicated"] > 10 and production.summary()["duplicated"] == 0
    assert production.metrics.total("wslab_duplicates_dropped_total") > 0
    back_at = experiment.RESTART_AT_S + experiment.RESTART_FOR_S
    assert experiment.first_deliveries_after(in_memory, back_at) == 0
    assert in_memory.summary()["rejected"] > 50
    assert in_memory.metrics.total("wslab_gaps_dropped_total") > 0
    d = durable.summary()
    assert d["lost"] == d["rejected"] == d["duplicated"] == d["out_of_order"] == 0
    figure = experiment.plot_copies([without, production], ["without", "production"])
    assert "extra copies processed" in figure.axes[0].get_title()
    plt.close(figure)


def test_a_returning_client_resumes_or_is_told_what_it_missed_and_order_is_per_sender():
    resumed, bounded, first, second = gather(
        wslab.arun("production", experiment.away()),
        wslab.arun(experiment.with_replay_window(20), experiment.away()),
        wslab.arun("production", experiment.several_producers(seed=1)),
        wslab.arun("production", experiment.several_producers(seed=2)),
    )
    r, w = resumed.summary(), bounded.summary()
    assert (r["lost"], r["rejected"], r["duplicated"], r["out_of_order"]) == (0, 0, 0, 0)
    assert r["reconnects"] >= 1
    assert w["rejected"] > 0 and w["lost"] == w["duplicated"] == w["out_of_order"] == 0
    assert bounded.metrics.value("wslab_messages_missed_total", side="client") == w["rejected"]
    for run in (first, second):
        assert run.summary()["out_of_order"] == 0 and run.summary()["lost"] == 0
        assert experiment.cross_sender_inversions(run) > 50
    assert experiment.processing_order(first) != experiment.processing_order(second)
    figure = experiment.plot_interleavings([first, second], ["1", "2"])
    assert len(figure.axes[0].patches) == 2 * 45
    plt.close(figure)


def test_cross_sender_inversions_counts_only_pairs_from_different_senders():
    from wslab.ledger import Ledger
    from wslab.run import Run

    ledger = Ledger()
    for msg_id, produced, delivered in [("u0.0", 0.00, 0.10), ("u1.0", 0.02, 0.03),
                                        ("u1.1", 0.04, 0.05), ("u0.1", 0.06, 0.11)]:
        ledger.produced(msg_id, produced)
        ledger.delivered(msg_id, delivered)
    run = Run("d", "s", 0, 2, wslab.Workload(), wslab.FaultPlan(), ledger)
    assert experiment.processing_order(run) == ["u1.0", "u1.1", "u0.0", "u0.1"]
    assert experiment.cross_sender_inversions(run) == 2  # u0.0 after u1.0 and after u1.1
    assert experiment.sender_of("u1.17") == "u1"


def test_the_lesson_scenarios_fit_a_notebook():
    for scenario in (experiment.acks_dropped(0.3), experiment.busy_restart(), experiment.away(),
                     experiment.several_producers(), exercise.lab_scenario()):
        assert scenario.planned_s <= 2.0, scenario.name
