"""Checkers for the exercises: run the learner's code for real, answer with a hint.

A checker never shows a bare traceback: it says "passed", or what went wrong
and where to look. One module per lesson, named after its topic
(``wslab.exercises.reconnection.check_delay``...); lesson 01's checker is also
here as ``wslab.exercises.check_loss_window``.
"""

from __future__ import annotations

import importlib

from .checking import Verdict, acall_safely, call_safely
from .happy_path import check_loss_window

__all__ = ["Verdict", "acall_safely", "call_safely", "check_loss_window"]


def __getattr__(name: str):
    # A lesson's module loads on first use: wslab.exercises.reconnection.
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
