"""How grades are shown: text, HTML, Markdown, and the progress bar while grading.

The records (:class:`~wslab.grading.Scorecard`, :class:`~wslab.grading.ScenarioGrade`,
:class:`~wslab.grading.Check`, :class:`~wslab.grading.Gradebook`) hold what was
measured and decided; this module only presents them, and decides nothing. Their
``text()``, ``__repr__`` and ``_repr_html_`` call in here.

- :func:`scorecard_text`, :func:`scorecard_html`: one design, every check of
  every scenario, the lessons for the fixes and the measured causes.
- :func:`gradebook_html`: the designs × scenarios table (a notebook's view).
- :func:`gradebook_markdown`: the same table in Markdown, one short phrase per
  failed check (the README's table is this function's output:
  ``python -m wslab scorecard --markdown``).
- :class:`GradingProgress`: the bar while grading runs (``tqdm.auto``: a widget
  in Jupyter, a line on stderr elsewhere; never on stdout).

Introduced in notebooks/02_failure_modes.ipynb.
"""

from __future__ import annotations

import html
import math
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .grading import Check, ScenarioGrade, Scorecard

__all__ = ["GradingProgress", "gradebook_html", "gradebook_markdown", "gradebook_text",
           "scorecard_html", "scorecard_text"]


# One design ---------------------------------------------------------------------

# (key of ScenarioGrade.measured(), column heading) for the HTML card
_COLUMNS = [("lost", "lost"), ("late", "late"), ("duplicated", "dup"),
            ("out_of_order", "out of order"), ("peak_backlog", "peak waiting"),
            ("detection_s", "dead peer noticed (s)"), ("recovery_s", "back after (s)"),
            ("tasks_left", "tasks left")]

_CAUSES_SHOWN = 3  # per scenario, on the card; the JSON has them all


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "never"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _causes_shown(row: "ScenarioGrade") -> list[str]:
    found = row.causes
    shown = [cause.text() for cause in found[:_CAUSES_SHOWN]]
    if len(found) > _CAUSES_SHOWN:
        shown.append(f"... and {len(found) - _CAUSES_SHOWN} more (in the JSON)")
    return shown


def _ran(card: "Scorecard") -> list["ScenarioGrade"]:
    """The rows of the scenarios that ran (not those that cannot apply to the design)."""
    return [row for row in card.rows if getattr(row, "not_run", None) is None]


def _headline(card: "Scorecard") -> str:
    ran = _ran(card)
    passed = sum(row.passed for row in ran)
    ok, applicable, na = card.score()
    skipped = len(card.rows) - len(ran)
    return (f"{passed} of {len(ran)} scenarios passed"
            + (f" ({skipped} not applicable, not run)" if skipped else "")
            + f"; {ok} of {applicable} applicable checks passed"
            + (f" ({na} not applicable)" if na else ""))


def scorecard_text(card: "Scorecard") -> str:
    """The card as plain text: every check of every scenario with its evidence, then,
    for a failed scenario, the lessons for the fixes and the measured causes."""
    lines = [f"{card.design}: {_headline(card)}"]
    width = max(len(row.scenario) for row in card.rows)
    for row in card.rows:
        if getattr(row, "not_run", None) is not None:
            lines.append(f"  N/A   {row.scenario:<{width}}  not run: {row.not_run}")
            continue
        mark = "PASS" if row.passed else "FAIL"
        lines.append(f"  {mark}  {row.scenario:<{width}}"
                     + (f"  did not finish: {row.error}" if row.error is not None else ""))
        for c in row.checks:
            lines.append(f"  {'':4}    {c.mark:<7} {c.criterion.key}: {c.measured}")
        for name in (row.lessons if not row.passed else []):
            lines.append(f"  {'':4}    → {name}")
        lines.extend(f"  {'':4}    cause: {text}" for text in _causes_shown(row))
    if card.audit is not None and card.audit.findings:
        lines.append(f"  audit (advice): {len(card.audit.findings)} finding(s): "
                     + ", ".join(sorted(set(card.audit.rules))))
    return "\n".join(lines)


def scorecard_html(card: "Scorecard") -> str:
    """The card as an HTML table: a row per scenario (green passed, red failed) with
    the measured numbers, every check, the lessons and the causes."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _COLUMNS)
    body = []
    for row in card.rows:
        values = row.measured()
        cells = "".join(f"<td>{html.escape(_cell(values.get(k)))}</td>" for k, _ in _COLUMNS)
        color = "#e6f4ea" if row.passed else "#fde8e8"
        fix = "<br>".join(html.escape(name) for name in row.lessons) if not row.passed else ""
        fix += "".join(f"<br><i>cause</i>: {html.escape(text)}" for text in _causes_shown(row))
        checks = (html.escape(f"did not finish: {row.error}") if row.error is not None else
                  "<br>".join(f"<b>{c.mark}</b> {html.escape(c.criterion.key)}: "
                              f"{html.escape(c.measured)}" for c in row.checks))
        body.append(f"<tr style='background:{color}'><th style='text-align:left'>"
                    f"{html.escape(row.scenario)}</th>{cells}"
                    f"<td style='text-align:left'>{checks}</td>"
                    f"<td style='text-align:left'>{fix}</td></tr>")
    audit_line = ""
    if card.audit is not None:
        audit_line = (f"<p>Audit (advice, not graded): {len(card.audit.findings)} finding(s)"
                      + (": " + html.escape(", ".join(sorted(set(card.audit.rules))))
                         if card.audit.findings else "") + "</p>")
    return (f"<p><b>{html.escape(card.design)}</b>: {html.escape(_headline(card))}</p>"
            f"<table><thead><tr><th>scenario</th>{head}<th>checks</th>"
            f"<th>lesson for the fix</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
            + audit_line)


# Several designs ----------------------------------------------------------------


def gradebook_text(cards: Iterable["Scorecard"]) -> str:
    """Each card's text, one after the other."""
    return "\n\n".join(scorecard_text(card) for card in cards)


def gradebook_html(cards: Iterable["Scorecard"]) -> str:
    """The designs × scenarios table: a cell per scenario, green with "pass" or red
    with the failed checks and their evidence."""
    cards = list(cards)
    head = "".join(f"<th>{html.escape(row.scenario)}</th>" for row in cards[0].rows)
    body = []
    for card in cards:
        cells = []
        for row in card.rows:
            color = "#e6f4ea" if row.passed else "#fde8e8"
            na = sum(not c.applicable for c in row.checks)
            text = (("pass" + (f" ({na} not applicable)" if na else "")) if row.passed
                    else row.verdict())
            cells.append(f"<td style='background:{color}'>{html.escape(text)}</td>")
        body.append(f"<tr><th style='text-align:left'>{html.escape(card.design)}</th>"
                    f"{''.join(cells)}</tr>")
    return (f"<table><thead><tr><th>design</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


# A failed check in a few words, from the numbers of its evidence (in order):
# checker name -> (phrase with the numbers, phrase when the evidence has none).
_SHORT: dict[str, tuple[str | None, str]] = {
    "no loss": ("lost {0}", "lost"),
    "no duplicates": ("+{0}d", "duplicates"),
    "in order": ("{0} out of order", "out of order"),
    "on time": ("{0} late", "late"),
    "came back": (None, "never back"),
    "bounded": ("queue {0}", "unbounded"),
    "dead peer noticed": ("noticed after {0} s", "not noticed"),
    "no false alarm": ("{0} false alarm(s)", "false alarm"),
    "nothing left running": ("{0} task(s) left", "tasks left"),
    "revocation enforced": ("{0} revoked delivered", "revocation not enforced"),
    "backs off": ("{0} attempts per client", "no backoff"),
    "spread out": ("{0} attempts in {1} ms", "no jitter"),
}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def short_failure(check: "Check") -> str:
    """A failed (or unknown) check in a few words: "lost 200", "+3d", "queue 376".

    The numbers come from the check's evidence, in the order it gives them; a
    checker this table does not know is shown by its name."""
    if check.passed is None:
        return f"{check.criterion.key} unknown"
    with_numbers, without = _SHORT.get(check.criterion.key, (None, check.criterion.key))
    numbers = _NUMBER.findall(check.measured)
    if with_numbers is not None and numbers:
        try:
            return with_numbers.format(*numbers)
        except IndexError:  # the evidence has fewer numbers than the phrase
            pass
    return without


def _markdown_cell(row: "ScenarioGrade") -> str:
    """✓ or ✗ and the failures in a few words; the checks not applicable named."""
    if row.error is not None:
        return "✗ did not finish"
    if getattr(row, "not_run", None) is not None:
        return "n/a (not run)"
    text = "✓" if row.passed else "✗ " + ", ".join(short_failure(c) for c in row.failures)
    na = [c.criterion.key for c in row.checks if not c.applicable]
    return text + (f" (n/a: {', '.join(na)})" if na else "")


def gradebook_markdown(cards: Iterable["Scorecard"]) -> str:
    """The designs × scenarios table in Markdown (GitHub's pipe tables): a row per
    design, a cell per scenario, then the scenarios passed and the applicable checks
    passed. The same cards give the same text, character for character."""
    cards = list(cards)
    if not cards:
        raise ValueError("no scorecard to show: grade at least one design")
    scenarios = [row.scenario for row in cards[0].rows]
    if any([row.scenario for row in card.rows] != scenarios for card in cards):
        raise ValueError("the designs were graded on different scenarios: one table needs "
                         "the same scenarios for every design")

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [line(["design", *(s.replace("_", " ") for s in scenarios), "passed", "checks"]),
             "|" + "---|" * (len(scenarios) + 3)]
    for card in cards:
        ok, applicable, _ = card.score()
        ran = _ran(card)
        lines.append(line([card.design, *(_markdown_cell(row) for row in card.rows),
                           f"{sum(row.passed for row in ran)}/{len(ran)}",
                           f"{ok}/{applicable}"]))
    return "\n".join(lines)


# Progress -----------------------------------------------------------------------


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (where a widget can be shown)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class GradingProgress:
    """The progress of a grading: planned lab seconds done over planned seconds in all.

    ``show``: True always, False never, None in Jupyter and when stderr is a
    terminal. It is a ``tqdm.auto`` bar: a widget in Jupyter, a line on
    **stderr** elsewhere (never stdout, which scripts parse). Each run reports its
    own fraction under its label, so runs going on at once add up. The bar is
    redrawn only when the whole moves by a percent (about a hundred redraws per
    grading, however many runs): call :meth:`update` from one thread, the loop
    that awaits the runs (:func:`wslab.lab.arun` hands the lab's reports to it).
    """

    def __init__(self, total_s: float, show: bool | None) -> None:
        if total_s <= 0:
            raise ValueError(f"total_s must be positive, got {total_s!r}")
        self.total_s = total_s
        self.done: dict[str, float] = {}  # run label -> planned seconds done
        self.bar: Any = None
        if show is False or (show is None and not (in_jupyter() or sys.stderr.isatty())):
            return
        from tqdm.auto import tqdm

        # mininterval=0: the per-percent rule below is the only throttle, so every
        # percent (and the run then under way) is shown, on any machine.
        self.bar = tqdm(total=100, desc="grading", file=sys.stderr, mininterval=0,
                        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]")

    def update(self, label: str, fraction: float, step_s: float) -> None:
        """Run ``label`` (of ``step_s`` planned seconds) is ``fraction`` done."""
        self.done[label] = min(1.0, max(0.0, fraction)) * step_s
        if self.bar is None:
            return
        percent = min(100, int(100 * sum(self.done.values()) / self.total_s))
        if percent > self.bar.n:
            self.bar.set_postfix_str(label, refresh=False)
            self.bar.update(percent - self.bar.n)

    def close(self, *, finished: bool) -> None:
        """Stop the bar: full when ``finished``, left where it was otherwise (a
        notebook's widget turns red then)."""
        if self.bar is None:
            return
        if finished and self.bar.n < 100:
            self.bar.set_postfix_str("done", refresh=False)
            self.bar.update(100 - self.bar.n)
        self.bar.close()
