"""Lesson 12 (capstone): the test plan and its scenarios agree, the attack checker
passes the worked solution and explains wrong attacks, and the prompts' codes do
under the plan what notebooks/12_capstone.ipynb says. Real runs on loopback, no
timing asserted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import wslab
from wslab.exercises.capstone import MAX_PLANNED_S, check_attack
from wslab.experiments import capstone as experiment
from wslab.production.channel import Channel

pytestmark = pytest.mark.timeout(120)

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "12_capstone.ipynb"


def worked_solution():
    """The function in the notebook's cell tagged "solution" that defines it (the other
    solution cell is the prompt exercise's)."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    [source] = ["".join(c["source"]) for c in cells if "solution" in c["metadata"].get("tags", [])
                and "def my_attack(" in "".join(c["source"])]
    namespace = {"wslab": wslab}
    exec(source, namespace)  # noqa: S102 (the notebook's own solution cell)
    return namespace["my_attack"]


def test_the_plan_and_its_scenarios_agree():
    predicted = experiment.predictions()
    assert list(predicted) == list(experiment.ATTACKS) == list(experiment.ATTACK_CRITERIA)
    assert predicted["cut_during_token_refresh"] and not predicted["big_messages_through_a_cut"]
    for name, attack in experiment.ATTACKS.items():
        # Combinations only: two faults, or a fault with messages far larger than the standard set's.
        assert attack.name == name, name
        assert len(attack.faults) >= 2 or attack.workload.size_bytes >= 64 * 1024, name
        assert attack.planned_s <= 4.0, name  # each ends early once all is delivered
        keys = [c.key for c in experiment.ATTACK_CRITERIA[name]]
        assert keys[:3] == ["no loss", "no duplicates", "in order"], name
    assert "fetch_token" in experiment.TEST_PLAN.read_text()
    with pytest.raises(KeyError, match="no criterion"):
        experiment.criterion("fast enough")


def test_excerpt_shows_the_batching_lines_only():
    text = experiment.excerpt(Channel._write_frames, "item = self.window.next_to_send()",
                              "await self.websocket.send(frame)")
    lines = text.splitlines()
    assert lines[0] == "item = self.window.next_to_send()"
    assert lines[-1].strip() == "await self.websocket.send(frame)"
    assert "batch_max" in text and "acks_due" not in text


def _run(coroutine):
    return asyncio.run(coroutine)


def test_the_checker_passes_the_solution_and_explains_wrong_attacks():
    solution = worked_solution()

    def one_fault():
        return wslab.Scenario("cut", "", wslab.Workload(count=100, rate_per_s=100),
                              [wslab.Cut(start_s=0.3, duration_s=0.2)])

    def only_client_messages():  # the almost-right code acknowledges and resends these
        return wslab.Scenario("cut under latency", "", wslab.Workload(count=100, rate_per_s=100),
                              [wslab.Cut(start_s=0.3, duration_s=0.2),
                               wslab.Latency(start_s=0.1, duration_s=0.5, delay_s=0.05)])

    def server_never_returns():  # nobody can deliver through that
        return wslab.Scenario("down for good", "",
                              wslab.Workload(count=100, rate_per_s=100, direction="both"),
                              [wslab.Cut(start_s=0.3, duration_s=0.2),
                               wslab.ServerRestart(start_s=0.6)])

    async def verdicts():
        return await asyncio.gather(check_attack(solution), check_attack(only_client_messages),
                                    check_attack(server_never_returns))

    passed, survived, both_fail = _run(verdicts())
    assert passed, passed.message
    assert "server pushes" in passed.message and "production passed all" in passed.message

    assert not survived and "the almost-right code survived" in survived.message
    assert "direction 'down' or 'both'" in survived.message  # where to aim

    assert not both_fail and "breaks production too" in both_fail.message
    assert "server push" in both_fail.message  # which messages production lost

    single = _run(check_attack(one_fault))
    assert not single and "at least two faults" in single.message and "cut 0.3 s" in single.message

    copied = _run(check_attack(lambda: experiment.ATTACKS["flapping_network"].with_(name="mine")))
    assert not copied and "attack 6 of the plan" in copied.message

    too_long = _run(check_attack(lambda: solution().with_(settle_s=MAX_PLANNED_S)))
    assert not too_long and "keep it under" in too_long.message

    not_a_scenario = _run(check_attack(lambda: [wslab.Cut(start_s=0.1)]))
    assert not not_a_scenario and "return a wslab.Scenario" in not_a_scenario.message

    crash = _run(check_attack(lambda: wslab.Workload(count=-1)))
    assert not crash and "ConfigError" in crash.message and "line" in crash.message


def test_the_prompts_codes_under_the_plan_do_what_the_lesson_says():
    pair = wslab.prompts.load("12_capstone")
    attacks = ["cut_during_token_refresh", "duplicated_frames", "big_messages_through_a_cut"]
    huge = experiment.ATTACKS["big_messages_through_a_cut"].with_(
        workload=wslab.Workload(count=5, rate_per_s=20, direction="up", size_bytes=2 * 1024 * 1024),
        faults=[])

    async def runs():
        return await asyncio.gather(
            experiment.run_plan(pair.design("vague"), pair.design("better"), attacks=attacks,
                                names=["almost right", "production"]),
            wslab.arun("production", huge))

    plan, huge_run = _run(runs())
    almost, shipped = plan["almost right"], plan["production"]
    # The lesson's side by side: the revoked client dies, its messages are lost...
    assert almost.failed == ["cut_during_token_refresh", "duplicated_frames"]
    revoked = almost["cut_during_token_refresh"].run
    assert experiment.lost_kinds(revoked)["client message"] > 20
    assert any("TokenRevoked" in e.error for e in revoked.errors if e.where == "client 1")
    # ...production refuses them, de-duplicates, and (since the plan's finding was fixed)
    # gets big messages through a cut: batches are bounded by max_size, not only by count.
    assert shipped.failed == []
    big = shipped["big_messages_through_a_cut"].run
    assert not any(entry.get("reason") == "closed with code 1009" for entry in big.logs)
    # A message that could never fit is refused when produced, not resent forever.
    h = huge_run.summary()
    reasons = {r.reject_reason for r in huge_run.ledger.records.values() if r.rejected_s is not None}
    assert h["lost"] == 0 and h["rejected"] == h["sent"] and reasons == {"larger than max_size"}
    figure = plan.plot()
    assert len(figure.axes[0].patches) == 2 * len(attacks)


def test_lost_kinds_names_what_was_lost():
    run = wslab.run(wslab.prompts.load("12_capstone").design("vague"),
                    experiment.ATTACKS["flapping_network"])
    kinds = experiment.lost_kinds(run)
    assert set(kinds) == {"server push"} and sum(kinds.values()) == run.summary()["lost"] > 0
    grade = experiment.judge(run)
    assert not grade.passed and grade.failures[0].criterion.key == "no loss"


def test_nothing_a_learner_sees_before_writing_the_attack_gives_it_away():
    """The learner edition keeps the solution's docstring, and the markdown after the
    checker is read before the learner's attack passes: neither names the worked attack."""
    from wslab.learner import stub_source

    cells = json.loads(NOTEBOOK.read_text())["cells"]
    [at] = [i for i, c in enumerate(cells) if "def my_attack(" in "".join(c["source"])]
    stub, names = stub_source("".join(cells[at]["source"]))
    assert names == ("my_attack",)
    checker = next(i for i in range(at + 1, len(cells)) if cells[i]["cell_type"] == "code")
    after = "".join(cells[checker + 1]["source"])
    assert cells[checker + 1]["cell_type"] == "markdown"
    for text in (stub, after):
        lowered = text.lower()
        assert not any(word in lowered for word in ("push", "black", "nat ", "keepalive")), text
