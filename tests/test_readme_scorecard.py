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
# virtual: an open determinism defect, where an event of the kernel and a timer of
# the loop fall at the same lab instant and the machine's load decides which the
# loop sees first. For these cells only the failed checks are compared, not the
# numbers. Keep this empty once it is fixed.
# reconnects_but_loses in shutdown in flight: lost 69 in 6 of 6 runs with two CPU
# hogs, 69 or 77 (4 and 4 of 8) with four: its client sees the server's close at
# 0.98 or at 1.00 s, one step of the slow worker apart.
# queues_without_bound in slow consumer: lost 119 from the command line (quiet and
# with two hogs), 80 in this test with two hogs (pytest's log capture slows the loop),
# 70 to 101 while runs went 4 at once: how fast the loop turns in real time
# shows through, probably by the kernel's delayed ACK (40 ms of real time) that
# reopens the full TCP window of a reader that lags.
UNSTABLE_CELLS = {("reconnects_but_loses", "shutdown in flight"),
                  ("queues_without_bound", "slow consumer")}
# acks_without_dedup's duplicate counts moved under load while runs went 4 at once
# (+26d/+30d in latency spike, +139d/+140d in lost acknowledgements); one at a time
# they matched in 3 runs (1 quiet, 2 with hogs): too few to call it fixed.
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
