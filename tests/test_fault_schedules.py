"""The lab survives any fault schedule, and production comes through every one.

200 random fault schedules (a seeded generator: the same 200 on every machine),
each with 1 to 20 clients and a tiny workload in virtual time, run against
the production design: cuts, black holes, refusals (in every outage flavour),
server restarts (back to back, overlapping, and apart just after a long
black hole among them), latency with
jitter, frames dropped, delayed or duplicated either way. Across them: no
exception out of the lab, no task left behind (the design's or the lab's),
and production delivers every message exactly once, in order. Each run
settles as the grader's do (``Scenario.settling(GRADING_HORIZON_S)``), so a
client has time to come back from the longest outage; a run ends as soon as
every message is accounted for, so the long horizon costs nothing.

A failure names the schedule, its faults and the call that runs it again.
``WSLAB_SCHEDULES=2000`` runs more locally.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

import wslab
from wslab import (BlackHole, Cut, FaultPlan, FrameFault, Latency, Refuse, ServerRestart,
                   TextContaining, Workload)
from wslab.clock import in_lab_loop
from wslab.faults import FLAVOURS
from wslab.frames import data_frames
from wslab.grading import GRADING_HORIZON_S
from wslab.scenarios import Scenario

SCHEDULES = int(os.environ.get("WSLAB_SCHEDULES", "200"))
MATCHES = {"data_frames": data_frames, "acks": TextContaining('"ack"'),
           "messages": TextContaining('"msg"')}


def _window(rng: random.Random) -> dict[str, float]:
    """A fault window in the first second, to the hundredth (a reproduction reads well)."""
    return dict(start_s=rng.randrange(0, 100) / 100, duration_s=rng.randrange(5, 40) / 100)


def _flavours(rng: random.Random, every_client: bool) -> tuple[str, ...]:
    kinds = [f for f in FLAVOURS if every_client or f != "refused"]
    return tuple(rng.sample(kinds, rng.randint(1, len(kinds))))


def _clients(rng: random.Random, n: int) -> frozenset[int] | None:
    return None if rng.random() < 0.6 else frozenset(rng.sample(range(n), rng.randint(1, n)))


def _restarts(rng: random.Random) -> list:
    """One restart, or two back to back, or two overlapping, or two apart after a black
    hole long enough that clients reconnect into it (their handshakes stuck when the
    first restart begins)."""
    first = ServerRestart(**_window(rng), flavours=_flavours(rng, True),
                          close_code=rng.choice([1001, 1012]))
    shape = rng.choice(["one", "back to back", "overlapping", "after a black hole"])
    if shape == "one":
        return [first]
    if shape == "after a black hole":
        hole = BlackHole(start_s=rng.randrange(0, 30) / 100, duration_s=rng.randrange(80, 120) / 100)
        end = round(hole.start_s + hole.duration_s, 2)
        return [hole, ServerRestart(start_s=round(end + 0.1, 2), duration_s=0.3),
                ServerRestart(start_s=round(end + rng.randrange(45, 80) / 100, 2),
                              duration_s=0.3, flavours=_flavours(rng, True))]
    end = round(first.start_s + first.duration_s, 2)
    start = end if shape == "back to back" else round(first.start_s + first.duration_s / 2, 2)
    return [first, ServerRestart(start_s=start, duration_s=rng.randrange(5, 40) / 100,
                                 flavours=_flavours(rng, True))]


def _fault(rng: random.Random, n: int) -> list:
    kind = rng.choice(["cut", "black hole", "refuse", "restart", "latency", "frames"])
    if kind == "cut":
        clients = _clients(rng, n)
        return [Cut(**_window(rng), clients=clients, flavours=_flavours(rng, clients is None))]
    if kind == "black hole":
        return [BlackHole(**_window(rng), clients=_clients(rng, n),
                          direction=rng.choice(["both", "up", "down"]))]
    if kind == "refuse":
        clients = _clients(rng, n)
        return [Refuse(**_window(rng), clients=clients, flavours=_flavours(rng, clients is None))]
    if kind == "restart":
        return _restarts(rng)
    if kind == "latency":
        delay = rng.randrange(0, 20) / 100
        return [Latency(**_window(rng), delay_s=delay, jitter_s=rng.randrange(0, 100) / 100 * delay,
                        direction=rng.choice(["both", "up", "down"]), clients=_clients(rng, n))]
    action = rng.choice(["drop", "delay", "duplicate"])
    return [FrameFault(**_window(rng), direction=rng.choice(["up", "down"]), action=action,
                       match=MATCHES[rng.choice(list(MATCHES))],
                       probability=rng.randrange(1, 30) / 100,
                       delay_s=rng.randrange(1, 30) / 100 if action == "delay" else 0.0,
                       clients=_clients(rng, n))]


def schedule(index: int) -> Scenario:
    """Schedule number ``index``: clients, a tiny workload, one to four faults, a seed."""
    rng = random.Random(f"wslab fault schedule {index}")
    n = rng.choice([1, 1, 2, 3, 5, 8, 20])
    direction, echo = rng.choice([("up", False), ("up", True), ("down", False), ("both", False)])
    faults = [f for _ in range(rng.randint(1, 4)) for f in _fault(rng, n)]
    return Scenario(f"schedule {index}", "random faults",
                    workload=Workload(count=rng.randint(2, 6), rate_per_s=10, direction=direction,
                                      echo=echo),
                    faults=FaultPlan(faults), clients=n, seed=index,
                    settle_s=0.5).settling(GRADING_HORIZON_S)


@in_lab_loop("virtual")
async def _run_all(count: int) -> list[str]:
    failures = []
    for index in range(count):
        scenario = schedule(index)
        again = f"  again: wslab.run('production', schedule({index}))  # from {__name__}"
        try:
            run = await wslab.arun("production", scenario)
        except Exception as exc:  # noqa: BLE001 - the property: none
            failures.append(f"#{index}: the lab raised {type(exc).__name__}: {exc}\n{again}")
            continue
        s = run.summary()
        verdict = {k: s[k] for k in ("lost", "rejected", "duplicated", "out_of_order", "unexpected")}
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if any(verdict.values()) or s["delivered"] != s["sent"] or run.tasks_left or left \
                or run.errors:
            failures.append(
                f"#{index}: {verdict}, delivered {s['delivered']} of {s['sent']}, "
                f"tasks left {run.tasks_left} (+{len(left)} on the loop), errors {run.errors[:3]}\n"
                + "\n".join(f"  - {f.describe()}" for f in scenario.faults)
                + f"\n{again}")
    return failures


@pytest.mark.timeout(180)
def test_production_comes_through_every_fault_schedule_and_the_lab_leaves_nothing():
    failures = asyncio.run(_run_all(SCHEDULES))
    assert not failures, f"{len(failures)} of {SCHEDULES} schedules failed:\n" + "\n".join(failures)
