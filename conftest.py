"""pytest settings for the whole repository (the package tests have their own in tests/).

nbval waits at most 5 s of real time between two messages of a notebook's kernel
after a cell has run, and fails the cell if the kernel is slower. On a machine
busy with other work (a shared CI runner, two CPU hogs) a kernel that has just
drawn a figure can be slower than that although nothing is wrong: the lab's
results do not depend on the machine's load, so the check of them must not
either. Every notebook cell gets 60 s instead; a cell's own time limit stays
--nbval-cell-timeout.
"""

from __future__ import annotations

NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
