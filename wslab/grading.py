"""The grader: run a design through the standard failure scenarios, score each run.

``await wslab.agrade(design)`` (or ``wslab.grade(design)`` outside a running
loop) runs the design under every scenario of :data:`wslab.SCENARIOS` and
returns a :class:`Scorecard`: one row per scenario with what was measured,
each criterion passed or failed with the measured value, and for every
failure the lesson that teaches the fix. Several designs at once give a
:class:`Gradebook`, which also draws the designs × scenarios grid.

The criteria are stated in :data:`CRITERIA`, one list per scenario; each is a
robust fact about the run (nothing lost, at most N messages queued, every
client back), never a timing to the millisecond. A run that does not finish
(the design hangs at teardown, or passes the time limit) fails its scenario
with the reason; the grader goes on with the next one.

A design given as a file is loaded by :func:`wslab.loader.load_design`, which
explains what is wrong with a file that does not fit, and read by
:func:`wslab.audit.audit`: the scorecard carries that report as advice (it
does not decide the grade; the measurements do).
"""

from __future__ import annotations

import asyncio
import html
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audit import AuditReport, audit
from .causes import Cause, causes
from .clock import run_in_lab_loop_sync
from .course import lesson
from .designs import get_design
from .errors import ConfigError, RunError
from .faults import Revoke
from .lab import arun
from .run import Run
from .scenarios import SCENARIOS, Scenario, get_scenario

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .contract import Design

# A design that bounds its queues holds at most this many messages accepted and
# not yet processed while the producer outruns the consumer fourfold; an
# unbounded one holds the whole backlog (about 380 in the overload scenarios).
MAX_QUEUE = 256
# A dead peer must be noticed (the connection closed on the client's side)
# within this long after a black hole opens.
MAX_DETECTION_S = 2.0
# Connection attempts per client through the reconnect storm (the first connection
# and the one that succeeds included): exponential backoff makes 4-5.2 through the
# 0.4 s restart (measured), the library's reconnection 6.5-7, a fixed 50 ms retry
# about 9. (Bursts per 10 ms are not graded: a loaded machine stalls the event loop
# and fires many timers in one bucket, so that number measures the machine.)
MAX_ATTEMPTS_PER_CLIENT = 6.0
# A revoked client's messages produced this long after the revocation must not
# be delivered (time for the server to notice the token).
REVOKE_GRACE_S = 0.5


@dataclass(frozen=True)
class Criterion:
    """One stated requirement: ``measure(run)`` returns ``(passed, measured)``."""

    key: str  # "no loss"
    text: str  # what must hold, for a person
    lesson: str  # the lesson number that teaches the fix
    measure: Callable[[Run], tuple[bool, str]] = field(repr=False, compare=False)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _no_loss(teacher: str) -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        s = run.summary()
        return s["lost"] == 0, f"{s['lost']} of {s['sent']} lost"
    return Criterion("no loss", "every message delivered or explicitly refused", teacher, measure)


def _no_duplicates(teacher: str = "10") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        d = run.summary()["duplicated"]
        return d == 0, f"{d} duplicate deliveries"
    return Criterion("no duplicates", "each message processed once", teacher, measure)


def _in_order(teacher: str = "10") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        n = run.summary()["out_of_order"]
        return n == 0, f"{n} out of order"
    return Criterion("in order", "each sender's messages processed in order", teacher, measure)


def _came_back(teacher: str = "03") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        r = run.recovery_s
        if r is None:
            return True, "no outage"
        if _nan(r):
            return False, "a client never came back"
        return True, f"back {r:.2f} s after the outage"
    return Criterion("came back", "every client reconnects after the outage", teacher, measure)


def _bounded(teacher: str = "05") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        peak = run.summary()["peak_queue"]
        return peak <= MAX_QUEUE, f"peak queue {peak} messages"
    return Criterion("bounded", f"at most {MAX_QUEUE} messages accepted and not yet processed "
                     "(the producer waits or is refused)", teacher, measure)


def _noticed(teacher: str = "06") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        d = run.detection_s
        if d is None or _nan(d):
            return False, "the dead connection was still open (or closing) when the run ended"
        return d <= MAX_DETECTION_S, f"noticed after {d:.2f} s"
    return Criterion("dead peer noticed", f"a silently dead connection closed within "
                     f"{MAX_DETECTION_S:g} s", teacher, measure)


def _no_false_alarm(teacher: str = "06") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        n = run.summary()["reconnects"]
        return n == 0, f"{n} reconnection(s)"
    return Criterion("no false alarm", "a slow but live connection is not dropped", teacher,
                     measure)


def _nothing_left(teacher: str = "08") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        n = run.summary()["tasks_left"]
        return n == 0, f"{n} task(s) left running"
    return Criterion("nothing left running", "no task outlives the design's client and server",
                     teacher, measure)


def _revoked_refused(teacher: str = "09") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        revokes = [f for f in run.faults if isinstance(f, Revoke)]
        late = 0
        for fault in revokes:
            for record in run.ledger.records.values():
                client = _client_of(record.msg_id)
                revoked = fault.clients is None or client in fault.clients
                if revoked and record.produced_s > fault.start_s + REVOKE_GRACE_S and record.deliveries:
                    late += 1
        return late == 0, f"{late} message(s) of a revoked session delivered"
    return Criterion("revocation enforced", "a revoked session's later messages are refused",
                     teacher, measure)


def _backs_off(teacher: str = "03") -> Criterion:
    def measure(run: Run) -> tuple[bool, str]:
        per_client = run.connect_attempts / run.clients
        return (per_client <= MAX_ATTEMPTS_PER_CLIENT,
                f"{per_client:.1f} connection attempts per client")
    return Criterion("backs off", f"at most {MAX_ATTEMPTS_PER_CLIENT:g} connection attempts per "
                     "client through the restart", teacher, measure)


def _client_of(msg_id: str) -> int | None:
    # "u3.17" -> 3 (see wslab.workload); None for ids of another shape
    head = msg_id.split(".", 1)[0]
    return int(head[1:]) if head[1:].isdigit() else None


# Scenario name -> what a production design must show in it.
CRITERIA: dict[str, list[Criterion]] = {
    "network_interruption": [_no_loss("04"), _came_back(), _no_duplicates(), _in_order()],
    "server_restart": [_no_loss("04"), _came_back(), _no_duplicates(), _in_order()],
    "slow_consumer": [_no_loss("05"), _bounded()],
    "queue_overflow": [_no_loss("05"), _bounded()],
    "idle_black_hole": [_noticed(), _no_loss("06"), _came_back()],
    "latency_spike": [_no_loss("04"), _no_false_alarm(), _no_duplicates()],
    "lost_acknowledgements": [_no_loss("04"), _no_duplicates()],
    "shutdown_in_flight": [_no_loss("08"), _came_back(), _nothing_left()],
    "token_expiry": [_no_loss("09"), _revoked_refused(), _no_duplicates()],
    "reconnect_storm": [_no_loss("04"), _came_back(), _backs_off()],
}


@dataclass(frozen=True)
class Check:
    """One criterion applied to one run."""

    criterion: Criterion
    passed: bool
    measured: str

    @property
    def lesson(self) -> str:
        return str(lesson(self.criterion.lesson))


@dataclass
class ScenarioGrade:
    """One scenario's row: the run (None when it did not finish), the checks, a failure."""

    scenario: str
    run: Run | None
    checks: list[Check]
    error: str | None = None  # why the run did not finish

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def lessons(self) -> list[str]:
        """The lessons that teach the fixes, first failure first, each once."""
        if self.error is not None:
            return [str(lesson("08"))]
        return list(dict.fromkeys(c.lesson for c in self.failures))

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
        return {k: s[k] for k in ("sent", "lost", "rejected", "duplicated", "out_of_order",
                                  "peak_queue", "detection_s", "recovery_s", "reconnects",
                                  "connect_attempts", "tasks_left", "errors")}


_COLUMNS = [("lost", "lost"), ("duplicated", "dup"), ("out_of_order", "out of order"),
            ("peak_queue", "peak queue"), ("detection_s", "dead peer noticed (s)"),
            ("recovery_s", "back after (s)"), ("tasks_left", "tasks left")]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if _nan(value):
        return "never"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


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

    def text(self) -> str:
        passed = sum(row.passed for row in self.rows)
        lines = [f"{self.design}: {passed} of {len(self.rows)} scenarios passed"]
        width = max(len(row.scenario) for row in self.rows)
        for row in self.rows:
            mark = "PASS" if row.passed else "FAIL"
            lines.append(f"  {mark}  {row.scenario:<{width}}  {row.verdict()}")
            for name in (row.lessons if not row.passed else []):
                lines.append(f"  {'':4}  {'':<{width}}  → {name}")
            lines.extend(f"  {'':4}  {'':<{width}}  cause: {text}" for text in _causes_shown(row))
        if self.audit is not None and self.audit.findings:
            lines.append(f"  audit (advice): {len(self.audit.findings)} finding(s): "
                         + ", ".join(sorted(set(self.audit.rules))))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _COLUMNS)
        body = []
        for row in self.rows:
            values = row.measured()
            cells = "".join(f"<td>{html.escape(_cell(values.get(k)))}</td>" for k, _ in _COLUMNS)
            color = "#e6f4ea" if row.passed else "#fde8e8"
            fix = "<br>".join(html.escape(name) for name in row.lessons) if not row.passed else ""
            fix += "".join(f"<br><i>cause</i>: {html.escape(text)}" for text in _causes_shown(row))
            body.append(f"<tr style='background:{color}'><th style='text-align:left'>"
                        f"{html.escape(row.scenario)}</th>{cells}"
                        f"<td style='text-align:left'>{html.escape(row.verdict())}</td>"
                        f"<td style='text-align:left'>{fix}</td></tr>")
        passed = sum(row.passed for row in self.rows)
        audit_line = ""
        if self.audit is not None:
            audit_line = (f"<p>Audit (advice, not graded): "
                          f"{len(self.audit.findings)} finding(s)"
                          + (": " + html.escape(", ".join(sorted(set(self.audit.rules))))
                             if self.audit.findings else "") + "</p>")
        return (f"<p><b>{html.escape(self.design)}</b>: {passed} of {len(self.rows)} scenarios "
                f"passed</p><table><thead><tr><th>scenario</th>{head}<th>verdict</th>"
                f"<th>lesson for the fix</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
                + audit_line)

    def to_json(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            return None if _nan(value) else value

        return {
            "design": self.design, "passed": self.passed,
            "scenarios": [{
                "scenario": row.scenario, "passed": row.passed, "error": row.error,
                "measured": {k: clean(v) for k, v in row.measured().items()},
                "checks": [{"criterion": c.criterion.key, "requires": c.criterion.text,
                            "passed": c.passed, "measured": c.measured,
                            "lesson": c.lesson} for c in row.checks],
                "lessons": row.lessons,
                "causes": [cause.to_json() for cause in row.causes],
            } for row in self.rows],
            "audit": self.audit.to_json() if self.audit is not None else None,
        }


_CAUSES_SHOWN = 3  # per scenario, on the card; the JSON has them all


def _causes_shown(row: ScenarioGrade) -> list[str]:
    found = row.causes
    shown = [cause.text() for cause in found[:_CAUSES_SHOWN]]
    if len(found) > _CAUSES_SHOWN:
        shown.append(f"... and {len(found) - _CAUSES_SHOWN} more (in the JSON)")
    return shown


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
        return "\n\n".join(card.text() for card in self.cards)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        scenarios = [row.scenario for row in self.cards[0].rows]
        head = "".join(f"<th>{html.escape(s)}</th>" for s in scenarios)
        body = []
        for card in self.cards:
            cells = []
            for row in card.rows:
                color = "#e6f4ea" if row.passed else "#fde8e8"
                text = "pass" if row.passed else row.verdict()
                cells.append(f"<td style='background:{color}'>{html.escape(text)}</td>")
            body.append(f"<tr><th style='text-align:left'>{html.escape(card.design)}</th>"
                        f"{''.join(cells)}</tr>")
        return (f"<table><thead><tr><th>design</th>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>")

    def to_json(self) -> list[dict[str, Any]]:
        return [card.to_json() for card in self.cards]


# Running -------------------------------------------------------------------------


class _Progress:
    """A progress bar: a widget in Jupyter, a line on a terminal, nothing otherwise.

    Progress is planned seconds done over planned seconds in all: each run
    reports its own fraction, so runs going on at once add up."""

    def __init__(self, total_s: float, mode: "bool | None") -> None:
        self.total_s, self.widget, self.stream = max(total_s, 1e-9), None, None
        self.done: dict[str, float] = {}  # run label -> planned seconds done
        self._shown: tuple[int, str] = (-1, "")
        if mode is False:
            return
        if _in_jupyter():
            import ipywidgets as widgets
            from IPython.display import display

            self.widget = widgets.FloatProgress(value=0, min=0, max=1, description="grading",
                                                layout=widgets.Layout(width="420px"))
            self.label = widgets.Label()
            display(widgets.HBox([self.widget, self.label]))
        elif mode is True or sys.stderr.isatty():
            self.stream = sys.stderr

    def update(self, label: str, fraction: float, step_s: float) -> None:
        self.done[label] = fraction * step_s
        value = min(1.0, sum(self.done.values()) / self.total_s)
        if self.widget is not None:
            if int(value * 100) != self._shown[0]:  # a message to the browser per percent, no more
                self._shown = (int(value * 100), label)
                self.widget.value = value
                self.label.value = label
        elif self.stream is not None and (int(value * 50), label) != self._shown:
            self._shown = (int(value * 50), label)
            bar = "#" * int(value * 30)
            self.stream.write(f"\r[{bar:<30}] {value:4.0%} {label:<60.60}")
            self.stream.flush()

    def close(self) -> None:
        if self.widget is not None:
            self.widget.value, self.widget.bar_style = 1.0, "success"
            self.label.value = "done"
        elif self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _audit_of(design: "Design", given: Any) -> AuditReport | None:
    """The audit of the design's source file, when there is one to read, named by
    its path relative to here (never a path of this machine in a notebook)."""
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


async def _grade_scenario(design: "Design", scenario: Scenario, progress: _Progress,
                          slots: asyncio.Semaphore) -> ScenarioGrade:
    label = f"{design.name} × {scenario.name}"
    step_s = scenario.planned_s + 0.5
    async with slots:
        try:
            run = await arun(design, scenario,
                             progress=lambda f: progress.update(label, f, step_s))
        except RunError as exc:
            return ScenarioGrade(scenario.name, None, [], error=str(exc))
        finally:
            progress.update(label, 1.0, step_s)
    checks = [Check(c, *c.measure(run)) for c in CRITERIA.get(scenario.name, [])]
    return ScenarioGrade(scenario.name, run, checks)


async def agrade(*designs: Any, scenarios: "Sequence[str | Scenario] | None" = None,
                 progress: "bool | None" = None, concurrency: int = 1) -> "Scorecard | Gradebook":
    """Grade one design (a :class:`Scorecard`) or several (a :class:`Gradebook`).

    ``designs``: design names, :class:`~wslab.Design` objects, modules, or
    paths of Python files (see :func:`wslab.get_design`). ``scenarios``:
    names or :class:`~wslab.Scenario` objects, all of :data:`wslab.SCENARIOS`
    by default; a scenario the grader has no criteria for is run and shown,
    with no check. ``progress``: None shows a bar in Jupyter and on a
    terminal, True always, False never. A design that does not load or fit
    the contract raises :class:`~wslab.DesignContractError` before any run.

    ``concurrency`` runs that many scenarios at once, each in its own lab (own
    loop, ports and ledger). In virtual time runs at once get exactly the
    results they get alone; a scenario on another clock (CPU-charged or real)
    runs alone, since runs at once would share the CPU it measures.
    """
    if not designs:
        raise ConfigError("grade what? give a design name, a Design, or a .py file")
    chosen = [get_scenario(s) for s in (scenarios if scenarios is not None else list(SCENARIOS))]
    if not chosen:
        raise ConfigError("scenarios is empty: give at least one scenario name")
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 16:
        raise ConfigError(f"concurrency must be an integer from 1 to 16, got {concurrency!r}")
    resolved = [(given, get_design(given)) for given in designs]  # all checked before any run
    total_s = sum(s.planned_s + 0.5 for s in chosen) * len(designs)
    bar = _Progress(total_s, progress)
    slots = asyncio.Semaphore(concurrency)
    pairs = [(design, scenario) for _, design in resolved for scenario in chosen]
    alone = asyncio.Semaphore(1)

    async def grade_pair(design: "Design", scenario: Scenario) -> ScenarioGrade:
        if scenario.clock == "virtual":
            return await _grade_scenario(design, scenario, bar, slots)
        async with alone:  # CPU or real time is measured: nothing else at once
            return await _grade_scenario(design, scenario, bar, slots)

    try:
        rows = await asyncio.gather(*(grade_pair(d, s) for d, s in pairs))
    finally:
        bar.close()
    n = len(chosen)
    cards = [Scorecard(design.name, list(rows[i * n:(i + 1) * n]), _audit_of(design, given))
             for i, (given, design) in enumerate(resolved)]
    return cards[0] if len(cards) == 1 else Gradebook(cards)


def grade(*designs: Any, scenarios: "Sequence[str | Scenario] | None" = None,
          progress: "bool | None" = None, concurrency: int = 1) -> "Scorecard | Gradebook":
    """:func:`agrade` from synchronous code (a script, a test, a notebook cell
    without ``await``). The grading loop runs in a thread of its own, and each
    run in a lab loop of its own (see :mod:`wslab.clock`), so nothing nests."""
    options = dict(scenarios=scenarios, progress=progress, concurrency=concurrency)
    return run_in_lab_loop_sync(lambda: agrade(*designs, **options), clock="real",
                                wall_limit_s=None, name="grading")
