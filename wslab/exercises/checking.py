"""What every checker shares: the verdict, and calling the learner's code safely."""

from __future__ import annotations

import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    """``passed`` and a message for a person; shows as one line in Jupyter."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("✅ passed: " if self.passed else "❌ not yet: ") + self.message


_LIBRARY = (str(Path(sysconfig.get_paths()["stdlib"])), str(Path(__file__).parent.parent))


def describe_error(exc: BaseException) -> str:
    """What the learner's code raised, at the learner's own line: the deepest frame
    outside the standard library and wslab (a QueueFull is raised inside asyncio,
    but the line to fix is the learner's ``put_nowait``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not f.filename.startswith(_LIBRARY)
           and "site-packages" not in f.filename]
    where = (own or frames)[-1] if frames else None
    at = f" (line {where.lineno}: {where.line!r})" if where is not None else ""
    return f"your function raised {type(exc).__name__}: {exc}{at}"


def call_safely(fn: Callable, *args: object) -> tuple[object, str | None]:
    """``(result, None)``, or ``(None, a one-line account of what fn raised and where)``."""
    try:
        return fn(*args), None
    except Exception as exc:
        return None, describe_error(exc)


async def acall_safely(fn: Callable, *args: object) -> tuple[object, str | None]:
    """:func:`call_safely` for a coroutine function (or a function returning an awaitable)."""
    try:
        result = fn(*args)
        if hasattr(result, "__await__"):
            result = await result
        return result, None
    except Exception as exc:
        return None, describe_error(exc)
