"""Checkers for the exercises: run the learner's code for real, answer with a hint.

A checker never shows a bare traceback: it says "passed", or what went wrong
and where to look. Each checker names the lesson that sets its exercise.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .run import Run


@dataclass(frozen=True)
class Verdict:
    """``passed`` and a message for a person; shows as one line in Jupyter."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("✅ passed: " if self.passed else "❌ not yet: ") + self.message


def _call(fn: Callable, *args: object) -> tuple[object, str | None]:
    try:
        return fn(*args), None
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return None, (f"your function raised {type(exc).__name__}: {exc} "
                      f"(line {where.lineno}: {where.line!r})")


def check_loss_window(fn: Callable[[Run], "tuple[float, float] | None"], *runs: Run) -> Verdict:
    """Lesson 01: ``fn(run)`` returns when the first and the last lost message
    were produced, ``(first_s, last_s)``, or None when nothing was lost."""
    for run in runs:
        records = list(run.ledger.records.values())
        lost = [r for r in records if not r.deliveries and r.rejected_s is None]
        expected = (min(r.produced_s for r in lost), max(r.produced_s for r in lost)) if lost else None
        got, error = _call(fn, run)
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
