"""Lesson 01's exercise: when did the loss happen?"""

from __future__ import annotations

from collections.abc import Callable

from ..run import Run
from .checking import Verdict, call_safely


def check_loss_window(fn: Callable[[Run], "tuple[float, float] | None"], *runs: Run) -> Verdict:
    """Lesson 01: ``fn(run)`` returns when the first and the last lost message
    were produced, ``(first_s, last_s)``, or None when nothing was lost."""
    for run in runs:
        records = list(run.ledger.records.values())
        lost = [r for r in records if not r.deliveries and r.rejected_s is None]
        expected = (min(r.produced_s for r in lost), max(r.produced_s for r in lost)) if lost else None
        got, error = call_safely(fn, run)
        label = f"{run.design} × {run.scenario}"
        if error:
            return Verdict(False, error)
        if expected is None:
            if got is not None:
                return Verdict(False, f"in {label} nothing was lost, so the answer is None; you returned {got!r}")
            continue
        if not (isinstance(got, tuple) and len(got) == 2):
            return Verdict(False, f"return a tuple (first_s, last_s); for {label} you returned {got!r}")
        if abs(got[0] - expected[0]) > 1e-9 or abs(got[1] - expected[1]) > 1e-9:
            hint = "use produced_s (when the application created the message), not delivery times"
            if any(abs(got[0] - r.produced_s) < 1e-9 for r in records if r.deliveries):
                hint = ("your first message was delivered: a lost record has an empty "
                        "'deliveries' list")
            return Verdict(False, f"for {label} expected {expected[0]:.2f}–{expected[1]:.2f} s, "
                                  f"got {got[0]:.2f}–{got[1]:.2f} s: {hint}")
    return Verdict(True, f"your function agrees with the ledger on {len(runs)} run(s)")
