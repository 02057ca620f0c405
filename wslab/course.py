"""The course: every lesson's number, title and notebook, in order.

The grader names the lesson that teaches the fix for each failure; the README
and the instructor notes list the same lessons. One table, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass(frozen=True)
class Lesson:
    number: str  # "03"
    slug: str  # "reconnection": data/prompts/03_reconnection, wslab.exercises.reconnection
    title: str

    @property
    def folder(self) -> str:
        """The lesson's name on disk: ``03_reconnection``."""
        return f"{self.number}_{self.slug}"

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.folder}.ipynb"

    def __str__(self) -> str:
        return f"lesson {self.number} ({self.title}, {self.notebook})"


LESSONS: dict[str, Lesson] = {lesson.number: lesson for lesson in [
    Lesson("00", "start_here", "Start here"),
    Lesson("01", "happy_path", "The happy-path handler, and four ways it breaks"),
    Lesson("02", "failure_modes", "Failure modes first"),
    Lesson("03", "reconnection", "Reconnection with backoff and jitter"),
    Lesson("04", "durability", "Message durability: queue, acknowledge, resend"),
    Lesson("05", "backpressure", "Backpressure and bounded queues"),
    Lesson("06", "keepalive", "Keepalive: noticing a dead peer"),
    Lesson("07", "reading_and_writing", "Separate reading and writing"),
    Lesson("08", "shutdown", "Graceful shutdown"),
    Lesson("08b", "cancellation", "Cancellation: a stop that hangs, a channel that ends"),
    Lesson("09", "expiring_auth", "Authentication that expires"),
    Lesson("10", "ordering", "Ordering and duplicates"),
    Lesson("11", "observability", "Observability: logs and metrics"),
    Lesson("12", "capstone", "Capstone: the production service"),
    Lesson("13", "prompt_lab", "Prompt lab: bring your own code"),
    Lesson("14", "nodejs", "The same prompts in Node.js (ws)"),
]}


def lesson(number: str) -> Lesson:
    """The lesson numbered ``number`` (``"03"``, ``3`` or ``"08b"``)."""
    key = number if isinstance(number, str) and number in LESSONS else f"{int(number):02d}"
    if key not in LESSONS:
        raise KeyError(f"no lesson {number!r}; lessons are {', '.join(LESSONS)}")
    return LESSONS[key]
