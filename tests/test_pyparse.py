"""wslab.pyparse: parsing survives a garbage collection that formats a traceback
(what an asyncio task left behind by a design does when it is collected)."""

import ast
import sys
import traceback
from pathlib import Path

import pytest

from wslab import pyparse

SOURCE = (Path(__file__).resolve().parent.parent / "wslab" / "audit.py").read_text()


class LeftBehind:
    """Collected in a cycle; its finalizer formats a traceback and parses, as
    asyncio's "Task exception was never retrieved" does on Python 3.11."""

    def __init__(self):
        self.cycle = self

    def __del__(self):
        try:
            raise ValueError("never retrieved")
        except ValueError:
            traceback.format_exc()
        ast.parse("x = (1 +\n 2)\n")


def parse_failures(parse, rounds=120) -> int:
    failures = 0
    for _ in range(rounds):
        for _ in range(50):
            LeftBehind()
        try:
            parse(SOURCE)
        except SystemError:
            failures += 1
    return failures


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="gh-106905 is fixed in 3.12")
def test_the_bug_is_real_on_this_python():
    assert parse_failures(ast.parse) > 0


def test_pyparse_never_fails_for_the_collector():
    assert parse_failures(pyparse.parse) == 0


def test_pyparse_raises_what_ast_raises_for_bad_source():
    for bad in ("def (:", "x = 1\0"):
        with pytest.raises(SyntaxError):
            pyparse.parse(bad)
