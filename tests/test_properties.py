"""Property-based tests: the production design delivers every message exactly once
and in order under random fault schedules, within each run's time limit.

Hypothesis builds a random :class:`wslab.FaultPlan` (cuts, server restarts, black
holes, refusals, latency with jitter, frame drops and duplicates either way, on
data frames or only on messages or acknowledgements), a number of clients, a
workload and a seed, and runs the production design through it on real sockets.
Every run must end with every message delivered (none lost, none rejected),
none duplicated, out of order or unexpected, and no exception in the design. A
failure prints the exact ``wslab.run(...)`` call that reproduces it, the plan as
the lab describes it, and the summary.

A run ends ``settle_s`` (3 s) after its last message was produced and its last
fault window closed; a message not delivered by then is lost (or rejected, when
the design reports it at the end of the run: that fails the property too). The explicit
example is the MIT 6.824 unreliable network (10 % of requests and 10 % of
acknowledgements dropped, for the whole run). Hypothesis runs explicit examples
first and, when one fails, stops there without generating any.

``derandomize=True`` makes the examples the same on every machine (CI is
reproducible). ``WSLAB_PROPERTY_EXAMPLES=60`` runs more examples locally, and
``WSLAB_PROPERTY_SHRINK=1`` lets Hypothesis shrink a failure (each shrink step is
a run of a few seconds, and Hypothesis shrinks for up to 5 minutes, so it is off
by default).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import wslab
from wslab import (BlackHole, Cut, FaultPlan, FrameFault, Latency, Refuse, ServerRestart,
                   TextContaining, Workload)
from wslab.frames import data_frames

EXAMPLES = int(os.environ.get("WSLAB_PROPERTY_EXAMPLES", "30"))
SHRINK = os.environ.get("WSLAB_PROPERTY_SHRINK", "") not in ("", "0")
SETTLE_S = 3.0  # after the last message is produced and the last fault window ends
TIME_LIMIT_S = 30.0
RATE_PER_S = 100
# A passing run takes 1-3 s (1.5 s on average, measured on 2 cores), a failing
# one waits out the settle window (up to ~7 s).
PER_EXAMPLE_S = 12

PHASES = (Phase.explicit, Phase.reuse, Phase.generate) + ((Phase.shrink,) if SHRINK else ())


# The case: what one example runs, printable as the call that reproduces it ----------

def _value_code(value: object) -> str:
    if value is data_frames:
        return "wslab.frames.data_frames"
    if isinstance(value, TextContaining):
        return f"wslab.{value!r}"
    if isinstance(value, frozenset):
        return f"frozenset({sorted(value)!r})"
    return repr(value)


def _object_code(obj: object) -> str:
    """``wslab.Cut(start_s=0.5, duration_s=0.2)``: the fields that differ from the default."""
    args = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if not f.init:
            continue
        value = getattr(obj, f.name)
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else dataclasses.MISSING)
        if value is default or (default is not dataclasses.MISSING and value == default):
            continue
        args.append(f"{f.name}={_value_code(value)}")
    return f"wslab.{type(obj).__name__}({', '.join(args)})"


class Case:
    """One example: clients, workload, fault plan and seed.

    A plain class, not a dataclass, so that Hypothesis prints a falsifying
    example with ``__repr__``: the call that reproduces it.
    """

    def __init__(self, *, clients: int, workload: Workload, plan: FaultPlan, seed: int) -> None:
        self.clients, self.workload, self.plan, self.seed = clients, workload, plan, seed

    def code(self) -> str:
        """The exact call that runs this example again."""
        faults = ",\n        ".join(_object_code(f) for f in self.plan)
        return (
            'wslab.run("production", "network_interruption",\n'
            f"    workload={_object_code(self.workload)},\n"
            f"    faults=wslab.FaultPlan([\n        {faults},\n    ]),\n"
            f"    clients={self.clients}, seed={self.seed}, settle_s={SETTLE_S}, "
            f"time_limit_s={TIME_LIMIT_S})"
        )

    def describe(self) -> str:
        return "\n".join(f"  - {fault.describe()}" for fault in self.plan)

    def __repr__(self) -> str:  # what Hypothesis prints as the falsifying example
        return self.code()

    def run(self) -> wslab.Run:
        return wslab.run("production", "network_interruption", workload=self.workload,
                         faults=self.plan, clients=self.clients, seed=self.seed,
                         settle_s=SETTLE_S, time_limit_s=TIME_LIMIT_S)


# Strategies ---------------------------------------------------------------------------

def seconds(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Seconds in [lo, hi] to the hundredth, so that a reproduction reads well."""
    return st.integers(round(lo * 100), round(hi * 100)).map(lambda n: n / 100)


START = seconds(0.1, 1.5)
SHORT = seconds(0.05, 0.5)
ACKS = TextContaining('"ack"')
MESSAGES = TextContaining('"msg"')


def some_clients(n: int) -> st.SearchStrategy[frozenset[int] | None]:
    """All clients (most often) or a non-empty subset of the ``n`` clients."""
    return st.one_of(st.none(), st.none(), st.frozensets(st.integers(0, n - 1), min_size=1))


@st.composite
def latency(draw, n: int) -> Latency:
    delay = draw(seconds(0.0, 0.2))
    jitter = draw(seconds(0.0, delay))
    return Latency(start_s=draw(START), duration_s=draw(seconds(0.1, 1.5)), delay_s=delay,
                   jitter_s=jitter, direction=draw(st.sampled_from(["both", "up", "down"])),
                   clients=draw(some_clients(n)))


@st.composite
def frame_fault(draw, n: int) -> FrameFault:
    direction = draw(st.sampled_from(["up", "down"]))
    # Every data frame, or only messages, or only acknowledgements (which go
    # server→client for the up stream, client→server for down and echo).
    match = draw(st.sampled_from([data_frames, MESSAGES, ACKS]))
    return FrameFault(start_s=draw(START), duration_s=draw(seconds(0.1, 1.5)),
                      direction=direction, action=draw(st.sampled_from(["drop", "duplicate"])),
                      probability=draw(seconds(0.01, 0.3)), match=match,
                      clients=draw(some_clients(n)))


def fault(n: int) -> st.SearchStrategy:
    return st.one_of(
        st.builds(Cut, start_s=START, duration_s=SHORT, clients=some_clients(n)),
        st.builds(ServerRestart, start_s=START, duration_s=SHORT),
        st.builds(BlackHole, start_s=START, duration_s=SHORT,
                  direction=st.sampled_from(["both", "up", "down"]), clients=some_clients(n)),
        st.builds(Refuse, start_s=START, duration_s=SHORT, clients=some_clients(n)),
        latency(n),
        frame_fault(n),
    )


@st.composite
def cases(draw) -> Case:
    n = draw(st.integers(1, 3))
    direction, echo = draw(st.sampled_from([("up", False), ("up", False), ("up", True),
                                            ("both", False)]))
    workload = Workload(count=draw(st.integers(50, 150)), rate_per_s=RATE_PER_S,
                        direction=direction, echo=echo)
    plan = FaultPlan(draw(st.lists(fault(n), min_size=1, max_size=4)))
    return Case(clients=n, workload=workload, plan=plan, seed=draw(st.integers(0, 2**16)))


# 10 % of requests and 10 % of acknowledgements dropped, for the whole run: the
# unreliable network of the MIT 6.824 labs.
LOSSY_6824 = FaultPlan([
    FrameFault(direction="up", action="drop", probability=0.1),
    FrameFault(direction="down", action="drop", probability=0.1, match=ACKS),
])


# The property ------------------------------------------------------------------------

def check_exactly_once_in_order(case: Case) -> None:
    try:
        run = case.run()
    except Exception as exc:  # past the hard time limit, hung at teardown, or the lab broke
        raise AssertionError(
            f"the run did not finish cleanly: {type(exc).__name__}: {exc!r}\n"
            f"faults:\n{case.describe()}\nreproduce with:\n{case.code()}") from exc
    s = run.summary()
    rejected = [(r.msg_id, r.reject_reason) for r in run.ledger.records.values()
                if r.rejected_s is not None and not r.deliveries]
    # "rejected" too: a design that reports at the end of the run what it could
    # not deliver (app.reject) is honest, but it did not deliver every message.
    verdict = {k: s[k] for k in ("lost", "rejected", "duplicated", "out_of_order", "unexpected")}
    ok = not any(verdict.values()) and s["delivered"] == s["sent"]
    assert ok and run.errors == [], (
        f"not exactly once and in order: {verdict}, delivered {s['delivered']} of "
        f"{s['sent']}, {len(run.errors)} error(s) in the design\n"
        f"faults:\n{case.describe()}\n"
        f"summary: {s}\n"
        f"frames: {run.frames}\n"
        f"lost (first 10): {run.ledger.lost_ids()[:10]}\n"
        f"rejected (first 10): {rejected[:10]}\n"
        f"out of order (first 10): {run.ledger.out_of_order_ids()[:10]}\n"
        f"errors: {run.errors[:5]}\n"
        f"reproduce with:\n{case.code()}"
    )


@pytest.mark.timeout(60 + PER_EXAMPLE_S * (EXAMPLES + 1) + (330 if SHRINK else 0))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow])
@example(case=Case(clients=1, workload=Workload(count=150, rate_per_s=RATE_PER_S),
                   plan=LOSSY_6824, seed=0))
@given(case=cases())
def test_production_delivers_exactly_once_in_order_under_random_faults(case):
    check_exactly_once_in_order(case)


# The naive design, for contrast -----------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_naive_loses_every_dropped_request_on_a_lossy_network(seed):
    # No acknowledgement, no resend: each request frame the network drops is a
    # message lost (and nothing else goes wrong, so the count is exact).
    run = wslab.run("naive", "network_interruption", workload=Workload(count=100, rate_per_s=100),
                    faults=LOSSY_6824, seed=seed, settle_s=0.5, time_limit_s=TIME_LIMIT_S)
    s = run.summary()
    assert s["lost"] > 0, s
    assert s["lost"] == run.frames["dropped"], (s, run.frames)
