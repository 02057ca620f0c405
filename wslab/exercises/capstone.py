"""Lesson 12's exercise: write an attack that the almost-right code fails and production survives.

The learner writes ``my_attack()``, returning a :class:`~wslab.scenarios.Scenario`
that combines at least two faults. :func:`check_attack` runs it for real, in
two labs at once: against the code the vague prompt keeps
(``data/prompts/12_capstone/vague.py``) and against the production design.
Both runs are judged by the plan's generic criteria
(:func:`wslab.experiments.capstone.generic_criteria`): nothing lost,
duplicated or reordered, bounded per client, every client back, and a revoked
session refused when the attack revokes one. The verdict says which criterion
failed on which side, with the evidence (which messages were lost, and what
they were).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..errors import RunError
from ..experiments.capstone import ATTACKS, judge, lost_kinds
from ..grading import ScenarioGrade
from ..lab import arun
from ..prompts import load
from ..run import Run
from ..scenarios import Scenario
from .checking import Verdict, call_safely

MAX_PLANNED_S = 6.0  # an attack runs for at most this long (workload, faults, settle)
MAX_CLIENTS = 50

#: What the almost-right code does not do (the hint when an attack misses all of it).
WEAK_SPOTS = (
    "server pushes (a workload with direction 'down' or 'both') and echo replies are sent "
    "once and never acknowledged, so whatever is in flight when a connection dies is gone; "
    "its queues have no bound; a revoked token makes the client's fetch_token() raise and "
    "the client task dies; it does not de-duplicate what the server sends"
)


_PLURAL = {"client message": "client messages", "server push": "server pushes",
           "echo reply": "echo replies"}


def _failures(grade: ScenarioGrade) -> str:
    return "; ".join(f"{c.criterion.key}: {c.measured}" for c in grade.failures)


def _loss_evidence(run: Run) -> str:
    lost = run.ledger.lost_ids()
    if not lost:
        return ""
    kinds = ", ".join(f"{n} {_PLURAL.get(kind, kind) if n > 1 else kind}"
                      for kind, n in lost_kinds(run).items())
    first = min((run.ledger.records[i] for i in lost), key=lambda r: r.produced_s)
    return f" ({kinds}; the first, {first.msg_id}, produced at {first.produced_s:.2f} s)"


def _in_the_plan(scenario: Scenario) -> str | None:
    for number, attack in enumerate(ATTACKS.values(), 1):
        if (attack.workload, attack.faults, attack.clients) == (
                scenario.workload, scenario.faults, scenario.clients):
            return f"attack {number} of the plan ({attack.name})"
    return None


async def check_attack(fn: Callable[[], Scenario]) -> Verdict:
    """``fn()`` returns a :class:`Scenario` combining at least two faults; it passes
    when the almost-right code fails at least one criterion under it and the
    production design passes every one."""
    scenario, error = call_safely(fn)
    if error:
        return Verdict(False, f"my_attack(): {error}")
    if not isinstance(scenario, Scenario):
        return Verdict(False, "return a wslab.Scenario(name, description, workload, faults, ...); "
                              f"my_attack() returned {type(scenario).__name__}: {scenario!r:.80}")
    faults = list(scenario.faults)
    if len(faults) < 2:
        shown = faults[0].describe() if faults else "none"
        return Verdict(False, f"combine at least two faults; yours has {len(faults)} ({shown}). "
                              "The standard scenarios already test one fault at a time.")
    if scenario.planned_s > MAX_PLANNED_S:
        return Verdict(False, f"your attack is planned for {scenario.planned_s:.1f} s (workload, "
                              f"last fault window, settle_s); keep it under {MAX_PLANNED_S:g} s: "
                              "fewer messages, a higher rate, or faults that end sooner")
    if scenario.clients > MAX_CLIENTS:
        return Verdict(False, f"{scenario.clients} clients: use at most {MAX_CLIENTS} here so the "
                              "check stays quick (the effect you want shows with a few)")
    if (known := _in_the_plan(scenario)) is not None:
        return Verdict(False, f"that is {known}: write an attack of your own")
    pair = load("12_capstone")
    try:
        almost, production = await asyncio.gather(arun(pair.design("vague"), scenario),
                                                   arun(pair.design("better"), scenario))
    except RunError as exc:
        return Verdict(False, f"the attack did not run to the end: {exc}")
    weak, strong = judge(almost, scenario), judge(production, scenario)
    s = production.summary()
    if not strong.passed:
        return Verdict(False, f"your attack breaks production too ({_failures(strong)}"
                              f"{_loss_evidence(production)}). Worth a report, but this exercise "
                              "asks for an attack that separates the two: the almost-right code "
                              "fails, production holds. Is a fault permanent, or the load beyond "
                              "what any design could deliver before the run ends?")
    if weak.passed:
        a = almost.summary()
        return Verdict(False, f"the almost-right code survived your attack: {a['delivered']} of "
                              f"{a['sent']} delivered, {a['duplicated']} duplicated, peak queue "
                              f"{a['peak_queue']}. Aim at what it does not do: {WEAK_SPOTS}.")
    return Verdict(True, f"the almost-right code failed: {_failures(weak)}"
                         f"{_loss_evidence(almost)}; production passed all {len(strong.checks)} "
                         f"criteria ({s['delivered']} of {s['sent']} delivered, {s['reconnects']} "
                         f"reconnection{'s' if s['reconnects'] != 1 else ''})")
