"""pytest settings for the whole repository (the package tests have their own in tests/).

nbval waits at most 5 s of real time between two messages of a notebook's kernel
after a cell has run, and fails the cell if the kernel is slower. On a machine
busy with other work (a shared CI runner, two CPU hogs) a kernel that has just
drawn a figure can be slower than that although nothing is wrong: the lab's
results do not depend on the machine's load, so the check of them must not
either. Every notebook cell gets 60 s instead; a cell's own time limit stays
--nbval-cell-timeout.

`make test` runs the package tests and the notebooks in one pytest session, so
that pytest-xdist's workers share the whole load: each notebook's cells go to
one worker (one kernel, in order), every other test wherever a worker is free.
"""

from __future__ import annotations

import os
import shutil
import tempfile

NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_configure(config):
    """Prompts kept by the lessons' prompt exercises go to a folder of this run
    (kernels inherit it), never into the learner's own ``my_prompts/``."""
    if not os.environ.get("WSLAB_PROMPTS_DIR"):
        folder = tempfile.mkdtemp(prefix="wslab-prompts-")
        os.environ["WSLAB_PROMPTS_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_itemcollected(item):
    if type(item).__name__ == "IPyNbCell" and hasattr(item, "output_timeout"):
        item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S


def pytest_xdist_make_scheduler(config, log):
    """Each notebook's cells on one worker, in order; every other test on its own.

    (``--dist loadgroup`` with ``xdist_group`` marks would say the same, but
    it does not group on this pytest: pytest-xdist issue 1386.) Only in place of
    the default ``--dist load``: another ``--dist`` asked for is kept."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(".ipynb") else nodeid

    return NotebooksWhole(config, log)
