"""The prompts of each lesson, kept as files under ``data/prompts/<lesson>/``.

Each lesson folder holds ``vague.md`` (what people type first) and
``better.md`` (the prompt that asks for the missing mechanism), and the code
each prompt typically gets, ``vague.py`` and ``better.py``: files that fit the
design contract (:mod:`wslab.contract`), written by the project in the style
assistants produce. A folder without code files stands for wslab's own
``naive`` and ``production`` designs (lesson 01).

:func:`side_by_side` runs both codes under the lesson's scenario and draws
them next to each other; :func:`grade_both` grades both on every scenario.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UnknownNameError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .contract import Design
    from .grading import Gradebook
    from .run import Run

DATA = Path(__file__).resolve().parent.parent / "data" / "prompts"


@dataclass(frozen=True)
class PromptPair:
    lesson: str
    vague: str
    better: str

    def code_path(self, which: str) -> Path | None:
        """``data/prompts/<lesson>/<which>.py``, or None when the lesson has none."""
        path = DATA / self.lesson / f"{_which(which)}.py"
        return path if path.exists() else None

    def code(self, which: str) -> str:
        """The source of the code the ``"vague"`` or ``"better"`` prompt gets."""
        path = self.code_path(which)
        if path is None:
            from . import designs

            return inspect.getsource(designs.naive if _which(which) == "vague"
                                     else designs.production)
        return path.read_text()

    def design(self, which: str) -> "Design":
        """The code the ``"vague"`` or ``"better"`` prompt gets, as a design."""
        from .designs import get_design
        from .loader import load_design

        path = self.code_path(which)
        if path is None:
            return get_design("naive" if _which(which) == "vague" else "production")
        return load_design(path, name=f"{self.lesson} {_which(which)}")

    def _repr_markdown_(self) -> str:
        def quote(text: str) -> str:
            return "\n".join("> " + line if line else ">" for line in text.strip().splitlines())

        return (f"**The vague prompt**\n\n{quote(self.vague)}\n\n"
                f"**The better prompt**\n\n{quote(self.better)}\n")


def lessons() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if (p / "vague.md").exists())


def load(lesson: str) -> PromptPair:
    """The prompt pair of ``lesson`` (a folder name such as ``"01_happy_path"``)."""
    folder = DATA / lesson
    if not (folder / "vague.md").exists():
        raise UnknownNameError("lesson", lesson, lessons())
    return PromptPair(lesson, (folder / "vague.md").read_text(), (folder / "better.md").read_text())


def _which(which: str) -> str:
    if which not in ("vague", "better"):
        raise ValueError(f"which must be 'vague' or 'better', got {which!r}")
    return which


async def side_by_side(lesson: str, scenario: Any, *, kind: str = "timeline",
                       **overrides: Any) -> "tuple[Run, Run, Figure]":
    """Run the code of both prompts of ``lesson`` under ``scenario`` (a name or a
    :class:`~wslab.scenarios.Scenario`; ``overrides`` as for :func:`wslab.arun`)
    and draw them side by side (``kind``: timeline, queue or latency).

    Returns ``(vague_run, better_run, figure)``.
    """
    from . import plots
    from .lab import arun

    pair = load(lesson)
    vague = await arun(pair.design("vague"), scenario, **overrides)
    better = await arun(pair.design("better"), scenario, **overrides)
    figure = plots.compare(vague, better, kind=kind,  # type: ignore[arg-type]
                           labels=("vague prompt", "better prompt"))
    return vague, better, figure


async def grade_both(lesson: str, scenarios: Any = None, *,
                     progress: "bool | None" = None) -> "tuple[Gradebook, Figure]":
    """Grade the code of both prompts of ``lesson`` on ``scenarios`` (all by default)
    and draw the two scorecards as one grid: the side by side of a lesson about
    every failure at once (lesson 02). Returns ``(gradebook, figure)``; the
    gradebook's cards are named ``"vague prompt"`` and ``"better prompt"``."""
    from dataclasses import replace

    from .grading import agrade

    pair = load(lesson)
    designs = [replace(pair.design(which), name=f"{which} prompt") for which in ("vague", "better")]
    book = await agrade(*designs, scenarios=scenarios, progress=progress)
    return book, book.plot()
