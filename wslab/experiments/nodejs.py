"""Lesson 14: the course's Node.js (``ws``) pairs, graded as real processes.

Grading both pairs on every scenario runs real processes in real time (about
two minutes), too long for a lesson cell; the lesson reads the gradebook stored
in ``data/node/gradebook.json``, made by::

    python -m wslab grade node/naive.toml node/production.toml --json > data/node/gradebook.json

and ``tests/test_external.py`` grades both pairs again and checks that each
scenario passes or fails as stored. The lesson's own cells run one real restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..external import NODE_DIR

GRADEBOOK = Path(__file__).resolve().parent.parent.parent / "data" / "node" / "gradebook.json"
# What the Python naive design fails, of the scenarios a Node pair runs (grading it again
# in the lesson would cost 7 s of its 20; tests/test_external.py checks it against a
# fresh grading, and the README's table shows the same row).
PYTHON_NAIVE_FAILED = frozenset({"network_interruption", "server_restart", "slow_consumer",
                                 "queue_overflow", "idle_black_hole", "shutdown_in_flight"})


def stored_gradebook() -> dict[str, dict[str, Any]]:
    """The stored scorecards, by design name (``node_naive``, ``node_production``)."""
    return {card["design"]: card for card in json.loads(GRADEBOOK.read_text(encoding="utf-8"))}


def outcomes(card: dict[str, Any]) -> dict[str, bool | None]:
    """Each scenario of a scorecard (as ``--json`` prints it): passed, failed, or None (not run)."""
    return {row["scenario"]: None if row["not_run"] else row["passed"] for row in card["scenarios"]}


def _cell(row: dict[str, Any]) -> str:
    if row["not_run"]:
        return "not run"
    if row["passed"]:
        return "✓"
    failed = [check["criterion"] for check in row["checks"] if not check["passed"]]
    lost = row["measured"].get("lost")
    return "✗ " + (f"lost {lost}" if lost else ", ".join(failed))


def gradebook_markdown(cards: list[dict[str, Any]]) -> str:
    """Scenarios down, designs across: ✓, ✗ with what failed, or not run."""
    rows = {row["scenario"]: {} for row in cards[0]["scenarios"]}
    for card in cards:
        for row in card["scenarios"]:
            rows[row["scenario"]][card["design"]] = _cell(row)
    lines = ["| scenario | " + " | ".join(card["design"] for card in cards) + " |",
             "|---|" + "---|" * len(cards)]
    lines += [f"| {name.replace('_', ' ')} | " + " | ".join(cells.get(card["design"], "")
                                                         for card in cards) + " |"
              for name, cells in rows.items()]
    lines.append("| **checks passed** | " + " | ".join(
        f"**{card['checks_passed']}/{card['checks_applicable']}**" for card in cards) + " |")
    return "\n".join(lines)


def excerpt(file: str, start: str, end: str) -> str:
    """The lines of ``node/<file>`` from the first holding ``start`` to the next
    holding ``end`` (both included), with the file named above them."""
    lines = (NODE_DIR / file).read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i in range(first + 1, len(lines)) if end in lines[i])
    return f"// node/{file}, lines {first + 1}-{last + 1}\n" + "\n".join(lines[first:last + 1])
