"""``ast.parse`` that is safe to call while code under test leaves tasks behind.

CPython 3.11 keeps the AST constructor's recursion counter in per-interpreter
state (gh-106905, fixed in 3.12). If a garbage collection runs during
``ast.parse`` it may finalize an asyncio task whose exception was never
retrieved; asyncio logs it, 3.11's :mod:`traceback` calls ``ast.parse`` to place
its carets, and the outer parse then fails with ``SystemError: AST constructor
recursion depth mismatch``. Designs under test leave such tasks behind, so every
parse in wslab goes through :func:`parse`, which keeps the collector off for its
duration. Guarantee: :func:`parse` raises what ``ast.parse`` raises for the
source itself (:class:`SyntaxError`, or :class:`ValueError` on older Pythons for a null byte), never that error.
"""

from __future__ import annotations

import ast
import gc


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(source, filename)`` with no garbage collection inside it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename=filename)
    finally:
        if enabled:
            gc.enable()
