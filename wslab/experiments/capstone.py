"""Lesson 12 (notebooks/12_capstone.ipynb): the reliability engineer's test plan, run.

The ten standard scenarios each test one failure. The better prompt of lesson 12
asks an assistant to act as a reliability engineer and *break* the service:
its answer is a test plan of attacks that combine faults the standard set
tests one at a time (``data/prompts/12_capstone/test_plan.md``). This module
holds the same attacks as :class:`~wslab.scenarios.Scenario` objects, each with
the criteria it is judged by, and runs the plan:

- :data:`ATTACKS`: attack name -> scenario; :data:`ATTACK_CRITERIA`: attack
  name -> the criteria that must hold (the grader's own criteria from
  :data:`wslab.grading.CRITERIA`, plus :func:`delivered_all` and
  :func:`bounded_per_client`, which this plan adds);
- :func:`judge`: one run against its attack's criteria, a
  :class:`~wslab.grading.ScenarioGrade` (so the plan's results draw with
  :meth:`wslab.grading.Gradebook.plot`);
- :func:`run_plan`: every design through every attack, all at once (each run
  in its own lab), a :class:`~wslab.grading.Gradebook`;
- :func:`lost_kinds`: what the lost messages of a run were (client messages,
  server pushes, echo replies), from their ids.

What it measures is what the ledger records: messages lost (produced, never
delivered, never refused), refused, duplicated, out of order, the peak queue,
reconnections and connection attempts. No criterion is a timing to the
millisecond.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..designs import get_design
from ..faults import (BlackHole, Cut, FaultPlan, FrameFault, Latency, Revoke, ServerRestart,
                      SlowConsumer)
from ..frames import TextContaining
from ..grading import CRITERIA, MAX_QUEUE, Check, Criterion, Gradebook, ScenarioGrade, Scorecard
from ..lab import arun
from ..prompts import DATA
from ..run import Run
from ..scenarios import Scenario
from ..workload import Workload

__all__ = ["ATTACKS", "ATTACK_CRITERIA", "TEST_PLAN", "bounded_per_client", "criterion",
           "delivered_all", "excerpt", "generic_criteria", "judge", "lost_kinds", "predictions",
           "run_plan", "test_plan"]

#: The plan as the reliability engineer wrote it (Markdown; one table row per attack).
TEST_PLAN = DATA / "12_capstone" / "test_plan.md"

ACKNOWLEDGEMENT = TextContaining('"ack"')  # the ack frames of both codes in the lesson


def criterion(key: str) -> Criterion:
    """The grader's criterion named ``key`` ("no loss", "came back"...), as the
    standard scenarios use it (see :data:`wslab.grading.CRITERIA`)."""
    for criteria in CRITERIA.values():
        for c in criteria:
            if c.key == key:
                return c
    raise KeyError(f"no criterion {key!r} in wslab.grading.CRITERIA")


def _delivered_all(run: Run) -> tuple[bool, str]:
    s = run.summary()
    missing = s["sent"] - s["delivered"]
    return missing == 0, (f"{s['delivered']} of {s['sent']} delivered"
                          + (f" ({s['rejected']} refused)" if s["rejected"] else ""))


delivered_all = Criterion(
    "all delivered", "every message delivered: the network recovers, so nothing may be "
    "refused either", "04", _delivered_all)


def _bounded_per_client(run: Run) -> tuple[bool, str]:
    peak = run.summary()["peak_queue"]
    per_client = peak / run.clients
    return per_client <= MAX_QUEUE, f"peak queue {peak} messages ({per_client:.0f} per client)"


bounded_per_client = Criterion(
    "bounded", f"at most {MAX_QUEUE} messages per client accepted and not yet processed",
    "05", _bounded_per_client)


def _attacks() -> dict[str, Scenario]:
    return {s.name: s for s in [
        Scenario(
            "restart_during_latency_spike",
            "A deploy restarts the server (0.4 s down) in the middle of a 1 s latency spike "
            "(150 ± 30 ms each way); 3 clients, every message echoed.",
            Workload(count=120, rate_per_s=100, direction="up", echo=True),
            FaultPlan([Latency(start_s=0.4, duration_s=1.0, delay_s=0.15, jitter_s=0.03),
                       ServerRestart(start_s=0.8, duration_s=0.4)]), clients=3, seed=121),
        Scenario(
            "black_hole_during_overload",
            "The client produces 1000 messages/s for 0.4 s, the server processes 250/s, and "
            "at 0.25 s a NAT forgets the flow for 0.5 s.",
            Workload(count=400, rate_per_s=1000, direction="up"),
            FaultPlan([SlowConsumer(side="server", delay_s=0.004),
                       BlackHole(start_s=0.25, duration_s=0.5)]), seed=122, settle_s=3.0),
        Scenario(
            "cut_during_token_refresh",
            "Tokens live 0.6 s; the network drops at 0.33 s (as the first refresh is due) and "
            "again at 0.7 s, and client 1's session is revoked while it is disconnected.",
            Workload(count=120, rate_per_s=100, direction="up"),
            FaultPlan([Cut(start_s=0.33, duration_s=0.1), Cut(start_s=0.7, duration_s=0.3),
                       Revoke(start_s=0.75, clients=frozenset({1}))]),
            clients=2, seed=123, token_ttl_s=0.6),
        Scenario(
            "many_clients_lost_acks",
            "20 clients; half of all acknowledgements are dropped for the whole run, and the "
            "network drops every connection at 0.8 s for 0.2 s.",
            Workload(count=30, rate_per_s=20, direction="up"),
            FaultPlan([FrameFault(start_s=0.0, direction="down", action="drop", probability=0.5,
                                  match=ACKNOWLEDGEMENT),
                       Cut(start_s=0.8, duration_s=0.2)]), clients=20, seed=124),
        Scenario(
            "duplicated_frames",
            "A congested middlebox delays every frame (50 ± 20 ms) and replays 30% of the "
            "data frames, both ways, for 0.8 s, while both sides send.",
            Workload(count=100, rate_per_s=100, direction="both"),
            FaultPlan([Latency(start_s=0.2, duration_s=0.8, delay_s=0.05, jitter_s=0.02),
                       FrameFault(start_s=0.2, duration_s=0.8, direction="both",
                                  action="duplicate", probability=0.3)]), seed=125),
        Scenario(
            "flapping_network",
            "A mobile network (50 ms each way) drops every connection three times, 0.3 s "
            "apart, while both sides send.",
            Workload(count=120, rate_per_s=100, direction="both"),
            FaultPlan([Latency(delay_s=0.05),
                       Cut(start_s=0.3, duration_s=0.1), Cut(start_s=0.6, duration_s=0.1),
                       Cut(start_s=0.9, duration_s=0.1)]), seed=126,
            # After three cuts in a row the backoff is near its cap (1 s): time to come back.
            settle_s=1.5),
        Scenario(
            "latency_beyond_keepalive",
            "A congested link for 0.8 s: 300 ms each way, a round trip (0.6 s) longer than "
            "the keepalive's ping timeout (0.5 s), and half the acknowledgements dropped. The "
            "peer is slow, not dead.",
            Workload(count=150, rate_per_s=100, direction="up"),
            FaultPlan([Latency(start_s=0.4, duration_s=0.8, delay_s=0.3),
                       FrameFault(start_s=0.4, duration_s=0.8, direction="down", action="drop",
                                  probability=0.5, match=ACKNOWLEDGEMENT)]), seed=127),
        Scenario(
            "big_messages_through_a_cut",
            "Messages of 80 KiB (well under the 1 MiB limit), 50 a second; the network drops "
            "the connection at 0.4 s for 0.4 s.",
            Workload(count=60, rate_per_s=50, direction="up", size_bytes=80 * 1024),
            FaultPlan([Cut(start_s=0.4, duration_s=0.4)]), seed=128),
    ]}


#: The test plan's attacks, in the order of ``data/prompts/12_capstone/test_plan.md``.
ATTACKS: dict[str, Scenario] = _attacks()

_LOSS = [criterion("no loss"), criterion("no duplicates"), criterion("in order")]

#: What each attack must show: the plan's pass criteria.
ATTACK_CRITERIA: dict[str, list[Criterion]] = {
    "restart_during_latency_spike": [*_LOSS, delivered_all, criterion("came back")],
    "black_hole_during_overload": [*_LOSS, delivered_all, bounded_per_client,
                                   criterion("dead peer noticed")],
    "cut_during_token_refresh": [*_LOSS, criterion("revocation enforced"),
                                 criterion("came back")],
    "many_clients_lost_acks": [*_LOSS, delivered_all, criterion("backs off")],
    "duplicated_frames": [*_LOSS, delivered_all],
    "flapping_network": [*_LOSS, delivered_all, criterion("came back")],
    "latency_beyond_keepalive": [*_LOSS, delivered_all, criterion("no false alarm")],
    "big_messages_through_a_cut": [*_LOSS, delivered_all, criterion("came back")],
}


def generic_criteria(scenario: Scenario) -> list[Criterion]:
    """Criteria for an attack the plan does not know (a learner's): nothing lost,
    duplicated or reordered, bounded per client, every client back after an
    outage, and a revoked session refused when the attack revokes one."""
    chosen = [*_LOSS, bounded_per_client, criterion("came back")]
    if scenario.faults.of(Revoke):
        chosen.append(criterion("revocation enforced"))
    if scenario.faults.of(BlackHole):
        chosen.append(criterion("dead peer noticed"))
    return chosen


def judge(run: Run, scenario: Scenario | None = None) -> ScenarioGrade:
    """``run`` checked against its attack's criteria (:data:`ATTACK_CRITERIA`, or
    :func:`generic_criteria` for an attack outside the plan)."""
    criteria = ATTACK_CRITERIA.get(run.scenario)
    if criteria is None:
        criteria = generic_criteria(scenario if scenario is not None else ATTACKS.get(run.scenario)
                                    or Scenario(run.scenario, "", faults=run.faults))
    return ScenarioGrade(run.scenario, run, [Check(c, *c.measure(run)) for c in criteria])


async def run_plan(*designs: Any, attacks: Iterable[str | Scenario] | None = None,
                   names: Sequence[str] | None = None) -> Gradebook:
    """Run every design (names, :class:`~wslab.Design` objects or files) through
    every attack (all of :data:`ATTACKS` by default), all runs at once, each in
    its own lab; return the judged results as a :class:`~wslab.grading.Gradebook`
    (one :class:`~wslab.grading.Scorecard` per design, cards named by ``names``
    when given)."""
    chosen = [ATTACKS[a] if isinstance(a, str) else a for a in (attacks or ATTACKS)]
    resolved = [get_design(d) for d in designs]
    labels = list(names) if names is not None else [d.name for d in resolved]
    if len(labels) != len(resolved):
        raise ValueError(f"give one name per design: {len(resolved)} designs, {len(labels)} names")
    runs = await asyncio.gather(*(arun(design, attack) for design in resolved for attack in chosen))
    n = len(chosen)
    return Gradebook([Scorecard(label, [judge(run, attack) for run, attack
                                        in zip(runs[i * n:(i + 1) * n], chosen)])
                      for i, label in enumerate(labels)])


def lost_kinds(run: Run) -> Counter:
    """The lost messages of ``run`` by kind, from their ids: ``"client message"``
    (``u…``), ``"server push"`` (``d…``), ``"echo reply"`` (``e…``)."""
    names = {"u": "client message", "d": "server push", "e": "echo reply"}
    return Counter(names.get(msg_id[:1], "other") for msg_id in run.ledger.lost_ids())


def test_plan() -> Any:
    """The test plan, rendered as Markdown in a notebook."""
    from IPython.display import Markdown

    return Markdown(TEST_PLAN.read_text())


def predictions() -> dict[str, bool]:
    """What the plan predicts for the code as it was: attack name -> True when
    the plan says it **fails**, read from the plan's table (in its order)."""
    rows = re.findall(r"^\|\s*\d+\s*\|\s*`(\w+)`\s*\|(.*)\|\s*$", TEST_PLAN.read_text(), re.MULTILINE)
    return {name: "**fails**" in rest.rsplit("|", 1)[-1] for name, rest in rows}


def excerpt(obj: Any, first: str, last: str) -> str:
    """The lines of ``obj``'s source from the first line containing ``first``
    to the next line containing ``last``, dedented: a piece of a long method
    to read in a lesson (the package stays the source of truth)."""
    lines = inspect.getsource(obj).splitlines()
    start = next(i for i, line in enumerate(lines) if first in line)
    end = next(i for i in range(start, len(lines)) if last in lines[i])
    chunk = lines[start:end + 1]
    indent = min(len(line) - len(line.lstrip()) for line in chunk if line.strip())
    return "\n".join(line[indent:] for line in chunk)
