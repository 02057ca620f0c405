"""Each lesson's experiments: the runs a lesson compares, and the figure they make.

One module per lesson, named after its topic (``wslab.experiments.reconnection``
for lesson 03), loaded on first use. What several lessons share lives in the
package proper (:mod:`wslab.plots`, :mod:`wslab.lab`); a module here holds
only what one lesson needs, so the notebook shows a call, not a page of code.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
