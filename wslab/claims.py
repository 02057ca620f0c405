"""``claim()``: a notebook's prose claim, checked where it is made.

A lesson says "the vague code lost messages, the better code lost none", then
backs it with a cell. That cell reads as a sentence, not as assertions::

    claim("the vague code lost messages, the better code none",
          v["lost"] > 0 and b["lost"] == 0, f"lost {v['lost']} and {b['lost']}")

prints ``✅ the vague code lost messages, the better code none (lost 12 and 0)``.
When the condition is false it raises :class:`ClaimFailed`, an
``AssertionError``: nbval fails the cell, and a learner whose run contradicts the
lesson sees which sentence no longer holds and what was measured instead.
"""

from __future__ import annotations


class ClaimFailed(AssertionError):
    """A lesson's claim that the measurement does not bear out."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the claim is the message.
        return [f"❌ {self}"]


def claim(statement: str, condition: object, measured: str = "") -> None:
    """Print ``✅ statement (measured)`` if ``condition`` is true, else raise
    :class:`ClaimFailed` naming the statement and what was measured."""
    if not isinstance(statement, str) or not statement:
        raise TypeError("claim(statement, condition, measured): the statement is the sentence "
                        "the lesson makes, a non-empty string")
    suffix = f" ({measured})" if measured else ""
    if not condition:
        raise ClaimFailed(f"the lesson says: {statement}; measured here: {measured or 'not so'}")
    print(f"✅ {statement}{suffix}")
