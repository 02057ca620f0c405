"""Lesson 02's exercise: name the failure modes a run shows, from its record alone."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ..run import Run
from .checking import Verdict, call_safely

MODES = ("lost", "duplicated", "out of order", "never came back")


def observed_modes(run: Run) -> set[str]:
    """What the ledger and the connection record show (the checker's answer)."""
    s = run.summary()
    modes = {mode for mode, key in (("lost", "lost"), ("duplicated", "duplicated"),
                                    ("out of order", "out_of_order")) if s[key] > 0}
    recovery = run.recovery_s
    if recovery is not None and math.isnan(recovery):
        modes.add("never came back")
    return modes


def _evidence(run: Run, mode: str) -> str:
    s = run.summary()
    if mode == "lost":
        first = next((r for r in run.ledger.records.values()
                      if not r.deliveries and r.rejected_s is None), None)
        where = f", the first {first.msg_id} produced at {first.produced_s:.2f} s" if first else ""
        return f"{s['lost']} message(s) produced, never delivered and never refused{where}"
    if mode == "duplicated":
        return f"{s['duplicated']} deliveries beyond the first of the same id"
    if mode == "out of order":
        late = run.ledger.out_of_order_ids()[:3]
        return f"{s['out_of_order']} first deliveries after a later message of the same sender ({', '.join(late)})"
    connected = sorted({c for t, c in run.server_opens if c is not None})
    return (f"client(s) {connected} were connected before the outage and not all came back "
            "(run.server_opens lists every connection the server saw)")


def check_failure_modes(fn: Callable[[Run], Iterable[str]], runs: Iterable[Run]) -> Verdict:
    """``fn(run)`` returns the failure modes the run shows, a set drawn from
    :data:`MODES`; checked against the record of each run, with the evidence for
    anything missed or invented."""
    runs = list(runs)
    if not runs:
        return Verdict(False, "give the checker some runs, for example the ones in the scorecard")
    for run in runs:
        label = f"{run.design} × {run.scenario}"
        got, error = call_safely(fn, run)
        if error:
            return Verdict(False, f"for {label}: {error}")
        try:
            got = set(got)
        except TypeError:
            return Verdict(False, f"return a set of mode names; for {label} you returned {got!r}")
        unknown = got - set(MODES)
        if unknown:
            return Verdict(False, f"for {label} you returned {sorted(unknown)}: the modes are "
                                  f"{', '.join(MODES)}")
        expected = observed_modes(run)
        missed, invented = expected - got, got - expected
        if missed:
            mode = sorted(missed)[0]
            return Verdict(False, f"for {label} you missed {mode!r}: {_evidence(run, mode)}")
        if invented:
            mode = sorted(invented)[0]
            hint = {"lost": "a refused message (rejected_s set) or a late one is not lost",
                    "never came back": "recovery_s is None without an outage and a number "
                                       "when every client came back; only nan means never",
                    }.get(mode, "the summary's count for it is 0")
            return Verdict(False, f"for {label} you said {mode!r}, but the record does not show it: "
                                  f"{hint}")
    return Verdict(True, f"your diagnosis agrees with the record on {len(runs)} run(s)")
