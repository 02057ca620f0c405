"""The README's scorecard table is what its command prints now.

The table sits between two markers in README.md; the start marker carries the
command (``python -m wslab grade ... --markdown``). These tests grade its designs
one at a time and compare each row with the table the command prints
(``display.gradebook_markdown``), so the README cannot drift from the grader. To refresh the table after a change:
``WSLAB_WRITE_README=1 pytest tests/test_readme_scorecard.py -k write``.
"""

import os
import re
import shlex
from pathlib import Path

import pytest

from wslab.__main__ import main
from wslab.grading import grade

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- scorecard:start: (?P<command>[^\n]*?) -->\n(?P<table>.*?)"
                   r"<!-- scorecard:end -->", re.S)
PREFIX = "python -m wslab "


def cells(table: str) -> dict[tuple[str, str], str]:
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines()]
    head, body = rows[0], rows[2:]
    return {(row[0], column): cell for row in body for column, cell in zip(head[1:], row[1:])}


def readme_block() -> re.Match:
    block = BLOCK.search(README.read_text())
    assert block, "README.md lost its <!-- scorecard:start: ... --> / <!-- scorecard:end --> markers"
    assert block["command"].startswith(PREFIX) and "--markdown" in block["command"]
    return block


def command_designs() -> list[str]:
    """The designs the README's command grades, in its order."""
    words = shlex.split(readme_block()["command"][len(PREFIX):])
    return [w for w in words[1:] if not w.startswith("--")]


def stored_row(design: str) -> dict[str, str]:
    name = Path(design).stem
    return {column: cell for (row, column), cell in cells(readme_block()["table"]).items()
            if row == name}


def assert_readme_row(card) -> None:
    """``card``'s row of the grader's table is the README's row for its design."""
    from wslab.display import gradebook_markdown

    stored = stored_row(card.design)
    assert stored, f"README's table has no row for {card.design}"
    now = {column: cell for (_, column), cell in cells(gradebook_markdown([card])).items()}
    assert now == stored


# Designs whose README row tests/test_grading.py checks on the card it grades anyway
# (assert_readme_row): grading them here again would only cost time.
ROWS_CHECKED_IN_TEST_GRADING = {"production", "chat_tutorial", "reconnects_but_loses",
                                "queues_without_bound", "acks_without_dedup"}


def test_every_row_is_checked_here_or_in_test_grading():
    from test_grading import EXPECTED

    assert ROWS_CHECKED_IN_TEST_GRADING == {"production"} | {Path(n).stem for n in EXPECTED}
    assert ROWS_CHECKED_IN_TEST_GRADING <= {Path(d).stem for d in command_designs()}


# One design per test, so that the runs spread over pytest's workers; each row of
# the grader's table depends on its design only (a run is a function of its
# inputs, in virtual time), so a row graded alone is the row of the whole table.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("design", [d for d in command_designs()
                                    if Path(d).stem not in ROWS_CHECKED_IN_TEST_GRADING],
                         ids=lambda d: Path(d).stem)
def test_readme_scorecard_row_is_what_the_grader_prints(design):
    # The command names the samples by paths relative to the root.
    assert_readme_row(grade(ROOT / design if "/" in design else design, progress=False))


@pytest.mark.skipif(not os.environ.get("WSLAB_WRITE_README"),
                    reason="rewrites README.md: set WSLAB_WRITE_README=1 to refresh the table")
@pytest.mark.timeout(600)
def test_write_the_readme_scorecard(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    block = readme_block()
    main(shlex.split(block["command"][len(PREFIX):]) + ["--quiet"])
    printed = capsys.readouterr().out
    text = README.read_text()
    README.write_text(text[:block.start("table")] + printed + text[block.end("table"):])
    assert cells(printed)[("production", "passed")] == "10/10"
