"""Lesson 13 (prompt lab): the production prompt template, the sample programs, and
what a reading of the code catches against what the runs measure.

- :func:`fill` fills the template's ``[[placeholders]]`` with a deployment's
  operational assumptions; :data:`LAB_ASSUMPTIONS` are the lab's (lesson 13's
  better prompt is the template filled with them).
- :func:`load_error` is the loader's message for a piece of code, or None.
- :func:`audit_sample` and :func:`grade_samples` read and run the samples in
  ``data/submissions/`` that fit the contract.
- :func:`compare` sets one design's audit (a reading: the lab's stand-in for
  the self-review the self-audit prompt asks for) against its scorecard (what
  the grader measured). Per grader criterion, the answer is *caught* (it
  failed, and a finding predicted it), *missed* (it failed, and nothing in the
  reading pointed at it), *no measured consequence* (a finding predicted it,
  and the runs did not fail it) or clean. :data:`PREDICTS` states what each
  audit rule predicts; :func:`reading_figure` draws the grid.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..audit import RULES, AuditReport, audit
from ..errors import ConfigError, DesignContractError
from ..grading import CRITERIA, Gradebook, Scorecard, agrade
from ..loader import load_design
from ..prompts import DATA
from ..scenarios import SCENARIOS, Scenario

if TYPE_CHECKING:
    from ..contract import Design

ROOT = Path(__file__).resolve().parent.parent.parent
SUBMISSIONS = ROOT / "data" / "submissions"
TEMPLATE = DATA / "13_prompt_lab" / "template.md"
SELF_AUDIT = DATA / "13_prompt_lab" / "self_audit.md"

# The samples that fit the contract, from tutorial-grade to almost right; the
# three others are standalone programs (a server or a client started with asyncio.run).
FITTING = ("chat_tutorial.py", "reconnects_but_loses.py", "queues_without_bound.py",
           "acks_without_dedup.py")
STANDALONE = ("tutorial_echo.py", "background_worker_queue.py", "sensor_reconnect_loop.py")

# The template ------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\[\[(\w+)\]\]")

# The lab's operational assumptions, from its standard scenarios (time scaled
# down about a hundredfold, see wslab.production.settings).
LAB_ASSUMPTIONS: dict[str, str] = {
    "service": ("Devices stream small updates to a server, which processes each one and "
                "answers some of them; the server can also push updates to each device."),
    "clients": "up to 200 devices connected at once",
    "message_rate": "100 messages a second, in bursts of 1,000 a second for half a second",
    "message_size": "64 bytes to 1 KiB",
    "outage": "up to 0.5 s",
    "restart": "up to 0.5 s",
    "latency": "under 1 ms",
    "latency_spike": "300 ms (± 60 ms) for a second",
    "detection_target": "1 s",
    "delivery_guarantee": ("every message processed exactly once and in order per device, "
                           "or refused explicitly (the application is told); never silently lost"),
    "memory_bound": "at most 256 messages waiting per connection; when full, the producer waits",
    "auth": ("tokens that live 0.6 s, refreshed in-band without losing a message; a revoked "
             "session is refused (close 4403) and must not retry"),
}


def template() -> str:
    """The production prompt template, with its ``[[placeholders]]``."""
    return TEMPLATE.read_text()


def placeholders(text: str) -> list[str]:
    """The placeholder names in ``text``, each once, in order of appearance."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text)))


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every ``[[name]]`` replaced by ``values[name]``.

    Raises :class:`~wslab.ConfigError` naming the placeholders left without a
    value, or the values that match no placeholder (a typo), so a prompt never
    goes out with a hole in it.
    """
    wanted = placeholders(text)
    missing = [name for name in wanted if not str(values.get(name, "")).strip()]
    unknown = sorted(set(values) - set(wanted))
    if missing or unknown:
        raise ConfigError("the template needs a value for "
                          + (", ".join(missing) or "nothing more")
                          + (f"; no placeholder is named {', '.join(unknown)}" if unknown else ""))
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


# Loading and reading the samples ------------------------------------------------


def load_error(source: str | Path) -> str | None:
    """What :func:`wslab.loader.load_design` says about ``source``, or None if it loads."""
    try:
        load_design(source)
    except DesignContractError as exc:
        return str(exc)
    return None


def sample_path(name: str) -> Path:
    """``data/submissions/<name>``; raises ConfigError for a sample that is not there."""
    path = SUBMISSIONS / name
    if not path.is_file():
        raise ConfigError(f"no sample {name!r}; samples: {', '.join(FITTING + STANDALONE)}")
    return path


def sample_design(name: str) -> Design:
    """A sample that fits the contract, loaded as a design named after its file."""
    return load_design(sample_path(name))


def audit_sample(name: str) -> AuditReport:
    """The audit of a sample, named by its place in the project (no machine path)."""
    return replace(audit(sample_path(name).read_text()), source_name=f"data/submissions/{name}")


# The standard scenarios, with the reconnect storm at 40 clients instead of 200:
# the grader runs several scenarios at once in one event loop, and five storms of
# 200 clients at once starve the overload scenarios' consumers, whose late
# messages would then count as lost. The storm's criteria are per client.
STORM_CLIENTS = 40
GRADED_SCENARIOS: tuple[Scenario, ...] = tuple(
    s.with_(clients=STORM_CLIENTS) if s.name == "reconnect_storm" else s
    for s in SCENARIOS.values())


async def grade_samples(names: Sequence[str] = FITTING, *,
                        progress: bool | None = None) -> Gradebook | Scorecard:
    """:data:`GRADED_SCENARIOS` for each sample: a :class:`Gradebook` with one card per
    sample, named by its file (a :class:`Scorecard` for one sample)."""
    return await agrade(*(sample_path(n) for n in names), scenarios=GRADED_SCENARIOS,
                        progress=progress)


# A reading against a measurement ------------------------------------------------

# Audit rule -> the grader criteria its finding predicts will fail. Empty: the
# loader refuses the code before any run, or no scenario measures it.
PREDICTS: dict[str, frozenset[str]] = {
    "fire-and-forget-send": frozenset({"no loss"}),
    "task-never-awaited": frozenset({"nothing left running"}),
    "receive-loop-no-shutdown": frozenset({"nothing left running"}),
    "gather-without-cancel": frozenset({"nothing left running"}),
    "unbounded-queue": frozenset({"bounded"}),
    "no-keepalive-settings": frozenset({"dead peer noticed"}),
    "keepalive-disabled": frozenset({"dead peer noticed"}),
    "no-reconnection": frozenset({"came back"}),
    "reconnect-without-backoff": frozenset({"backs off", "spread out"}),  # a literal delay: no jitter either
    "reconnect-without-jitter": frozenset({"spread out"}),  # retries land together
    "outdated-handler-signature": frozenset(),  # refused by the loader
    "asyncio-run-in-notebook": frozenset(),  # refused by the loader
    "shared-mutable-state": frozenset(),  # the lab runs one server process
    "print-instead-of-logging": frozenset(),  # observability is not graded
}

# Every criterion the grader measures, in the order of the figure's columns.
CRITERION_KEYS: tuple[str, ...] = tuple(dict.fromkeys(
    c.key for criteria in CRITERIA.values() for c in criteria))


def unread_criteria() -> list[str]:
    """The criteria no audit rule predicts: only a run can tell."""
    read = set().union(*PREDICTS.values())
    return [key for key in CRITERION_KEYS if key not in read]


@dataclass
class Comparison:
    """One design's reading (audit findings) against its measurement (scorecard)."""

    design: str
    failed: dict[str, list[str]]  # criterion -> scenarios where it failed
    findings: dict[str, list[int]]  # rule -> lines
    caught: list[str] = field(default_factory=list)  # failed, and predicted
    missed: list[str] = field(default_factory=list)  # failed, predicted by nothing
    no_consequence: list[str] = field(default_factory=list)  # rules whose prediction held up
    not_measured: list[str] = field(default_factory=list)  # rules no scenario measures

    def state(self, criterion: str) -> str:
        """``caught``, ``missed``, ``no consequence`` or ``clean`` for one criterion."""
        if criterion in self.caught:
            return "caught"
        if criterion in self.missed:
            return "missed"
        predicted = {c for rule in self.findings for c in PREDICTS.get(rule, ())}
        return "no consequence" if criterion in predicted else "clean"


def compare(card: Scorecard, report: AuditReport) -> Comparison:
    """Set ``report`` (what a reading found) against ``card`` (what the runs measured)."""
    failed: dict[str, list[str]] = {}
    for row in card.rows:
        keys = [c.criterion.key for c in row.failures] or (["did not finish"] if row.error else [])
        for key in keys:
            failed.setdefault(key, []).append(row.scenario)
    findings: dict[str, list[int]] = {}
    for finding in report.findings:
        findings.setdefault(finding.rule, []).append(finding.line)
    predicted = {c for rule in findings for c in PREDICTS.get(rule, ())}
    result = Comparison(card.design, failed, findings)
    result.caught = [k for k in failed if k in predicted]
    result.missed = [k for k in failed if k not in predicted]
    for rule in findings:
        if not PREDICTS.get(rule):
            result.not_measured.append(rule)
        elif not PREDICTS[rule] & set(failed):
            result.no_consequence.append(rule)
    return result


class ComparisonTable:
    """Several comparisons as one table (HTML in Jupyter, text elsewhere)."""

    HEAD = ("design", "measured failures the reading caught", "measured failures it missed",
            "findings with no measured consequence", "findings no scenario measures")

    def __init__(self, comparisons: Sequence[Comparison]) -> None:
        self.comparisons = list(comparisons)

    def rows(self) -> list[tuple[str, ...]]:
        def failures(c: Comparison, keys: list[str]) -> str:
            return ", ".join(f"{k} ({len(c.failed[k])})" for k in keys) or "–"

        return [(c.design, failures(c, c.caught), failures(c, c.missed),
                 ", ".join(c.no_consequence) or "–", ", ".join(c.not_measured) or "–")
                for c in self.comparisons]

    def text(self) -> str:
        return "\n".join(" | ".join(row) for row in [self.HEAD, *self.rows()])

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in self.HEAD)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(v)}</td>"
                                        for v in row) + "</tr>" for row in self.rows())
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                "<p style='font-size:smaller'>(n): the number of scenarios where the criterion "
                "failed.</p>")


_COLORS = {"caught": "#b7dfc0", "missed": "#f4a6a6", "no consequence": "#fbe3a8",
           "clean": "#f2f2f2"}


def reading_figure(comparisons: Sequence[Comparison]) -> Figure:
    """Designs × grader criteria: what the reading caught (green), missed (red),
    predicted without a measured consequence (yellow); grey: passed, not flagged."""
    columns = list(CRITERION_KEYS)
    fig, ax = plt.subplots(figsize=(1.05 * len(columns) + 2.6, 0.62 * len(comparisons) + 1.7),
                           layout="constrained")
    for i, comparison in enumerate(comparisons):
        for j, key in enumerate(columns):
            state = comparison.state(key)
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=_COLORS[state],
                                       edgecolor="white", linewidth=2))
            if state != "clean":
                ax.text(j + 0.5, i + 0.5, state.replace(" ", "\n"), ha="center", va="center",
                        fontsize=7)
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(comparisons), 0)
    ax.set_xticks([j + 0.5 for j in range(len(columns))],
                  [k.replace(" ", "\n", 1) for k in columns], fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(comparisons))],
                  [c.design for c in comparisons], fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    unread = set(unread_criteria())
    for j, key in enumerate(columns):
        if key in unread:
            ax.get_xticklabels()[j].set_color("#b03030")
    ax.set_title("the reading (audit) against the runs (grader), per criterion; "
                 "red labels: no rule reads it", fontsize="medium")
    return fig


def rule_count() -> int:
    """How many checks the audit applies (some report two rule ids)."""
    return len(RULES)
