"""The README's scorecard table is what its command prints now.

The table sits between two markers in README.md; the start marker carries the
command (``python -m wslab grade ... --markdown``). This test runs that command
in-process and compares, so the README cannot drift from the grader. To refresh
the table after a change: ``WSLAB_WRITE_README=1 pytest tests/test_readme_scorecard.py``.
"""

import os
import re
import shlex
from pathlib import Path

import pytest

from wslab.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- scorecard:start: (?P<command>[^\n]*?) -->\n(?P<table>.*?)"
                   r"<!-- scorecard:end -->", re.S)
PREFIX = "python -m wslab "

# (design, scenario column) whose count moves from run to run although the clock is
# virtual (a bug of the lab to find, measured 106 and 113 lost): for these cells only
# the failed checks are compared, not the numbers. Keep this empty once it is fixed.
# Cells whose figures move with the kernel's delayed ACKs while a reader lags behind
# pings (an open determinism defect of the virtual clock): which checks fail must
# still match; the counts may not (measured under two CPU hogs: +26d and +30d).
UNSTABLE_CELLS = {("queues_without_bound", "slow consumer")}
# acks_without_dedup's duplicate counts move the same way (+26d/+30d in latency spike,
# +139d/+140d in lost acknowledgements): only its failed checks are compared.
UNSTABLE_DESIGNS = {"acks_without_dedup"}


def cells(table: str) -> dict[tuple[str, str], str]:
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in table.splitlines()]
    head, body = rows[0], rows[2:]
    return {(row[0], column): cell for row in body for column, cell in zip(head[1:], row[1:])}


def without_numbers(cell: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "N", cell)


@pytest.mark.timeout(600)
def test_readme_scorecard_table_is_what_its_command_prints(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the command names the samples by paths relative to the root
    text = README.read_text()
    block = BLOCK.search(text)
    assert block, "README.md lost its <!-- scorecard:start: ... --> / <!-- scorecard:end --> markers"
    command = block["command"]
    assert command.startswith(PREFIX) and "--markdown" in command
    status = main(shlex.split(command[len(PREFIX):]) + ["--quiet"])
    printed = capsys.readouterr().out
    assert status == 1  # some of these designs fail: the command says so
    if os.environ.get("WSLAB_WRITE_README"):
        README.write_text(text[:block.start("table")] + printed + text[block.end("table"):])
    stored, now = cells(block["table"]), cells(printed)
    assert stored.keys() == now.keys(), "the table's designs or scenarios changed"
    for key in stored:
        if key in UNSTABLE_CELLS or key[0] in UNSTABLE_DESIGNS:
            assert without_numbers(stored[key]) == without_numbers(now[key]), key
        else:
            assert stored[key] == now[key], (key, stored[key], now[key])
    assert ("production", "checks") in now and now[("production", "passed")] == "10/10"
