"""The grader: run a design through the standard failure scenarios, score each run.

``await wslab.agrade(design)`` (or ``wslab.grade(design)`` outside a running
loop) runs the design under every scenario of :data:`wslab.SCENARIOS` and
returns a :class:`Scorecard`: one row per scenario with what was measured,
each criterion passed or failed with the measured value, and for every
failure the lesson that teaches the fix. Several designs at once give a
:class:`Gradebook`, which also draws the designs × scenarios grid. How they are
shown (text, HTML, Markdown, the progress bar) is :mod:`wslab.display`'s part.

The criteria are the checkers of :mod:`wslab.checkers` as each scenario
composes them (:data:`CRITERIA`): loss, duplicates, order and lateness in every
scenario, then the scenario's own. Each is a robust fact about the run
(nothing lost, at most N messages waiting, every client back), never a timing
to the millisecond, and answers pass, fail, not applicable (with why: a
design that never pushes from its server has no push to lose) or unknown (with
why: a timing check that failed in a run whose event loop lagged past the
keepalive's timeout, where the lab, not the design, may be to blame); a scenario
passes when every applicable check passes, and the score counts only those.
Every graded run settles for :data:`GRADING_HORIZON_S` past its planned end
while messages are in flight: a message delivered then is late (the "on
time" check), one not delivered by then is lost. A run that does not finish
(the design hangs at teardown, or passes the time limit) fails its scenario
with the reason; the grader goes on with the next one. A design with a process
(:mod:`wslab.external`) is graded in real time; a scenario it cannot run (more
client processes than the lab starts) is not run, and its row says why
(``not_run``; every check not applicable).

A design given as a file is loaded by :func:`wslab.loader.load_design`, which
explains what is wrong with a file that does not fit, and read by
:func:`wslab.audit.audit`: the scorecard carries that report as advice (it
does not decide the grade; the measurements do).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import display, external
from .audit import AuditReport, audit
from .causes import Cause, causes
from .checkers import (MAX_ATTEMPTS_PER_CLIENT, MAX_BURST_SHARE, MAX_DETECTION_S, MAX_QUEUE,
                       REVOKE_GRACE_S, SCENARIO_CHECKS, Verdict, check, requirement)
from .clock import run_in_lab_loop_sync
from .course import lesson
from .designs import get_design
from .errors import ConfigError, RunError
from .lab import arun
from .run import Run
from .scenarios import SCENARIOS, Scenario, get_scenario

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .contract import Design

__all__ = ["CRITERIA", "Check", "Criterion", "Gradebook", "ScenarioGrade", "Scorecard",
           "agrade", "grade", "GRADING_HORIZON_S", "MAX_ATTEMPTS_PER_CLIENT", "MAX_BURST_SHARE",
           "MAX_DETECTION_S", "MAX_QUEUE", "REVOKE_GRACE_S"]

# Lab seconds past its planned end that a graded run goes on while messages are in
# flight, so that late is told from lost: in virtual (or CPU-charged) time waiting
# costs next to nothing; in real time it costs real seconds, so it is shorter.
GRADING_HORIZON_S = 30.0
GRADING_HORIZON_REAL_S = 5.0


@dataclass(frozen=True)
class Criterion:
    """One checker of :mod:`wslab.checkers` as a scenario uses it: ``measure(run)``
    returns its :class:`~wslab.checkers.Verdict` ``(valid, evidence, applicable)``.
    A criterion of one's own gives ``check``, a function of the run returning
    ``(valid, evidence)`` or a Verdict, in place of a checker's name."""

    key: str  # the checker's name: "no loss"
    text: str  # what must hold, for a person
    lesson: str  # the lesson number that teaches the fix
    check: Callable[[Run], Any] | None = field(default=None, repr=False, compare=False)
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def measure(self, run: Run) -> Verdict:
        if self.check is not None:
            return Verdict(*self.check(run))
        return check(run, self.key, **self.params)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _criteria() -> dict[str, list[Criterion]]:
    return {scenario: [Criterion(name, requirement(name, params), teacher, params=params)
                       for name, teacher, params in uses]
            for scenario, uses in SCENARIO_CHECKS.items()}


# Scenario name -> what a production design must show in it (from
# wslab.checkers.SCENARIO_CHECKS).
CRITERIA: dict[str, list[Criterion]] = _criteria()


@dataclass(frozen=True)
class Check:
    """One criterion applied to one run: ``passed`` True, False, or None (not
    applicable, or unknown: ``applicable`` tells which), ``measured`` the evidence."""

    criterion: Criterion
    passed: bool | None
    measured: str
    applicable: bool = True

    @property
    def lesson(self) -> str:
        return str(lesson(self.criterion.lesson))

    @property
    def mark(self) -> str:
        """"pass", "FAIL", "n/a" or "unknown"."""
        if self.passed is None:
            return "unknown" if self.applicable else "n/a"
        return "pass" if self.passed else "FAIL"


@dataclass
class ScenarioGrade:
    """One scenario's row: the run (None when it did not finish), the checks, a failure."""

    scenario: str
    run: Run | None
    checks: list[Check]
    error: str | None = None  # why the run did not finish
    not_run: str | None = None  # why the scenario cannot apply to the design (its checks n/a)

    @property
    def passed(self) -> bool:
        """Every applicable check passed (an unknown one does not pass)."""
        return self.error is None and all(c.passed for c in self.applicable)

    @property
    def applicable(self) -> list[Check]:
        """The checks that count: all but the not applicable ones."""
        return [c for c in self.checks if c.applicable]

    @property
    def failures(self) -> list[Check]:
        """The checks that failed or could not be decided (unknown)."""
        return [c for c in self.applicable if not c.passed]

    @property
    def lessons(self) -> list[str]:
        """The lessons that teach the fixes, each once: those of the measured causes
        first (what ended the design's work), then those of the failed checks."""
        if self.error is not None:  # did not finish: a task that would not end (lesson 08b)
            return [str(lesson("08b"))]
        return list(dict.fromkeys([*(str(lesson(c.lesson)) for c in self.causes),
                                   *(c.lesson for c in self.failures)]))

    @property
    def causes(self) -> list[Cause]:
        """What ended the design's work in a failed run, with the fix (:mod:`wslab.causes`)."""
        return causes(self.run) if self.run is not None and not self.passed else []

    def verdict(self) -> str:
        if self.error is not None:
            return f"did not finish: {self.error}"
        if self.passed:
            return "pass"
        return "; ".join(f"{c.criterion.key}: {c.measured}" for c in self.failures)

    def measured(self) -> dict[str, Any]:
        """The numbers of the row (empty when the run did not finish)."""
        if self.run is None:
            return {}
        s = self.run.summary()
        out = {k: s[k] for k in ("sent", "lost", "late", "rejected", "duplicated", "out_of_order",
                                 "peak_queue", "peak_backlog", "detection_s", "recovery_s",
                                 "reconnects", "connect_attempts", "tasks_left", "errors")}
        out["late_max_s"] = s["late_s"]["max"]
        if any(c.criterion.key == "no loss" and not c.applicable for c in self.checks):
            for key in ("lost", "late", "late_max_s", "peak_backlog"):
                out[key] = None  # out of the design's scope: nothing to count (see the checks)
        return out


@dataclass
class Scorecard:
    """A design's grade: one :class:`ScenarioGrade` per scenario, and the audit."""

    design: str
    rows: list[ScenarioGrade]
    audit: AuditReport | None = None

    @property
    def passed(self) -> bool:
        """Every scenario passed (the audit is advice and does not count)."""
        return all(row.passed for row in self.rows)

    def __getitem__(self, scenario: str) -> ScenarioGrade:
        for row in self.rows:
            if row.scenario == scenario:
                return row
        raise KeyError(f"{scenario!r} was not graded; graded: {', '.join(r.scenario for r in self.rows)}")

    @property
    def failed(self) -> list[str]:
        """The scenarios that failed, in order."""
        return [row.scenario for row in self.rows if not row.passed]

    def lessons(self) -> list[str]:
        """Every lesson that teaches a fix this design needs, in course order."""
        return sorted({name for row in self.rows for name in row.lessons})

    def score(self) -> tuple[int, int, int]:
        """``(passed, applicable, not applicable)`` checks over every scenario that ran."""
        checks = [c for row in self.rows for c in row.checks]
        applicable = [c for c in checks if c.applicable]
        return sum(bool(c.passed) for c in applicable), len(applicable), len(checks) - len(applicable)

    def text(self) -> str:
        """Every check of every scenario, with the lessons and causes (:mod:`wslab.display`)."""
        return display.scorecard_text(self)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return display.scorecard_html(self)

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            return None if _nan(value) else value

        ok, applicable, na = self.score()
        return {
            "design": self.design, "passed": self.passed,
            "checks_passed": ok, "checks_applicable": applicable, "checks_not_applicable": na,
            "scenarios": [{
                "scenario": row.scenario, "passed": row.passed, "error": row.error,
                "not_run": row.not_run,
                "measured": {k: clean(v) for k, v in row.measured().items()},
                "checks": [{"criterion": c.criterion.key, "requires": c.criterion.text,
                            "passed": c.passed, "applicable": c.applicable, "status": c.mark,
                            "measured": c.measured, "lesson": c.lesson} for c in row.checks],
                "lessons": row.lessons,
                "causes": [cause.to_json() for cause in row.causes],
            } for row in self.rows],
            "audit": self.audit.to_json() if self.audit is not None else None,
        }


@dataclass
class Gradebook:
    """Several designs graded on the same scenarios."""

    cards: list[Scorecard]

    def __getitem__(self, design: str) -> Scorecard:
        for card in self.cards:
            if card.design == design:
                return card
        raise KeyError(f"{design!r} was not graded; graded: {', '.join(c.design for c in self.cards)}")

    def __iter__(self):
        return iter(self.cards)

    @property
    def passed(self) -> bool:
        return all(card.passed for card in self.cards)

    def plot(self) -> "Figure":
        """The designs × scenarios grid (see :func:`wslab.plots.scorecard`)."""
        from .plots import scorecard

        return scorecard(self)

    def text(self) -> str:
        return display.gradebook_text(self.cards)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return display.gradebook_html(self.cards)

    def markdown(self) -> str:
        """The designs × scenarios table in Markdown (:func:`wslab.display.gradebook_markdown`)."""
        return display.gradebook_markdown(self.cards)

    def to_json(self) -> list[dict[str, Any]]:
        return [card.to_json() for card in self.cards]


# Running -------------------------------------------------------------------------


def _audit_of(design: "Design", given: Any) -> AuditReport | None:
    """The audit of the design's source file, when there is one to read, named by
    its path relative to here (never a path of this machine in a notebook). A
    design with a process has none: the audit reads Python only."""
    if external.is_external(design):
        return None
    if isinstance(given, (str, Path)) and str(given).endswith(".py"):
        path = Path(given)
    else:
        try:
            found = inspect.getsourcefile(design.handler)
        except TypeError:
            return None
        if not found or not Path(found).is_file():
            return None
        path = Path(found)
    report = audit(path)
    relative = os.path.relpath(path) if path.is_absolute() else str(path)
    return replace(report, source_name=path.name if relative.startswith("..") else relative)


async def _grade_scenario(design: "Design", scenario: Scenario,
                          progress: display.GradingProgress) -> ScenarioGrade:
    label = f"{design.name} × {scenario.name}"
    step_s = scenario.planned_s + 0.5
    why = external.not_applicable(design, scenario)
    if why is not None:  # not run: every check says why
        progress.update(label, 1.0, step_s)
        return ScenarioGrade(scenario.name, None, [
            Check(c, None, f"not applicable: {why}", applicable=False)
            for c in CRITERIA.get(scenario.name, [])], not_run=why)
    if external.is_external(design):  # processes keep real time (its shorter horizon too)
        scenario = scenario.with_(clock="real")
    try:
        run = await arun(design, _settling(scenario),
                         progress=lambda f: progress.update(label, f, step_s))
    except RunError as exc:
        return ScenarioGrade(scenario.name, None, [], error=str(exc))
    finally:
        progress.update(label, 1.0, step_s)
    return ScenarioGrade(scenario.name, run, checks_of(run, scenario.name))


def checks_of(run: Run, scenario: str | None = None) -> list[Check]:
    """The criteria of ``scenario`` (``run.scenario`` by default) applied to ``run``."""
    return [Check(c, *c.measure(run)) for c in CRITERIA.get(scenario or run.scenario, [])]


def _settling(scenario: Scenario) -> Scenario:
    """``scenario`` as the grader runs it: settling past its planned end (late, not lost)."""
    return scenario.settling(GRADING_HORIZON_REAL_S if scenario.clock == "real"
                             else GRADING_HORIZON_S)


async def agrade(*designs: Any, scenarios: "Sequence[str | Scenario] | None" = None,
                 progress: "bool | None" = None) -> "Scorecard | Gradebook":
    """Grade one design (a :class:`Scorecard`) or several (a :class:`Gradebook`).

    ``designs``: design names, :class:`~wslab.Design` objects, modules, or
    paths of Python files (see :func:`wslab.get_design`). ``scenarios``:
    names or :class:`~wslab.Scenario` objects, all of :data:`wslab.SCENARIOS`
    by default; a scenario the grader has no criteria for is run and shown,
    with no check. ``progress``: None shows a bar in Jupyter and on a
    terminal, True always, False never (:class:`wslab.display.GradingProgress`:
    a widget in Jupyter, else a line on stderr, never stdout). A design that does not load or fit
    the contract raises :class:`~wslab.DesignContractError` before any run.

    The runs go one after the other (lab loops take turns, see
    :mod:`wslab.clock`): in virtual time a run costs only the CPU it uses, so
    runs at once would be no faster, and they would not be alone.
    """
    if not designs:
        raise ConfigError("grade what? give a design name, a Design, or a .py file")
    chosen = [get_scenario(s) for s in (scenarios if scenarios is not None else list(SCENARIOS))]
    if not chosen:
        raise ConfigError("scenarios is empty: give at least one scenario name")
    resolved = [(given, get_design(given)) for given in designs]  # all checked before any run
    total_s = sum(s.planned_s + 0.5 for s in chosen) * len(designs)
    bar = display.GradingProgress(total_s, progress)
    pairs = [(design, scenario) for _, design in resolved for scenario in chosen]
    finished = False
    try:
        rows = [await _grade_scenario(design, scenario, bar) for design, scenario in pairs]
        finished = True
    finally:
        bar.close(finished=finished)
    n = len(chosen)
    cards = [Scorecard(design.name, list(rows[i * n:(i + 1) * n]), _audit_of(design, given))
             for i, (given, design) in enumerate(resolved)]
    return cards[0] if len(cards) == 1 else Gradebook(cards)


def grade(*designs: Any, scenarios: "Sequence[str | Scenario] | None" = None,
          progress: "bool | None" = None) -> "Scorecard | Gradebook":
    """:func:`agrade` from synchronous code (a script, a test, a notebook cell
    without ``await``). The grading loop runs in a thread of its own, and each
    run in a lab loop of its own (see :mod:`wslab.clock`), so nothing nests."""
    options = dict(scenarios=scenarios, progress=progress)
    return run_in_lab_loop_sync(lambda: agrade(*designs, **options), clock="real",
                                wall_limit_s=None, name="grading")
