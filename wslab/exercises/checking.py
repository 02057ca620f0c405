"""What every checker shares: the verdict, and calling the learner's code safely."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """``passed`` and a message for a person; shows as one line in Jupyter."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("✅ passed: " if self.passed else "❌ not yet: ") + self.message


def call_safely(fn: Callable, *args: object) -> tuple[object, str | None]:
    """``(result, None)``, or ``(None, a one-line account of what fn raised and where)``."""
    try:
        return fn(*args), None
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return None, (f"your function raised {type(exc).__name__}: {exc} "
                      f"(line {where.lineno}: {where.line!r})")


async def acall_safely(fn: Callable, *args: object) -> tuple[object, str | None]:
    """:func:`call_safely` for a coroutine function (or a function returning an awaitable)."""
    try:
        result = fn(*args)
        if hasattr(result, "__await__"):
            result = await result
        return result, None
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return None, (f"your function raised {type(exc).__name__}: {exc} "
                      f"(line {where.lineno}: {where.line!r})")
