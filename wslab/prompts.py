"""The prompts of each lesson, kept as files under ``data/prompts/<lesson>/``.

Each lesson folder holds ``vague.md`` (what people type first) and
``better.md`` (the prompt that asks for the missing mechanism), and the code
each prompt typically gets, ``vague.py`` and ``better.py``: files that fit the
design contract (:mod:`wslab.contract`), written by the project in the style
assistants produce. A folder without code files stands for wslab's own
``naive`` and ``production`` designs (lesson 01). A lesson may add a middle
rung, ``article.md`` and ``article.py``: the prompt that asks exactly what the
source article's prompt asks (``ARTICLE_PROMPT``, in the course's words), and
the code it gets.

:func:`side_by_side` runs both codes under the lesson's scenario and draws
them next to each other; :func:`grade_both` grades both on every scenario;
:func:`grade_answer` grades the code a learner's own assistant answered beside
them. :func:`review_prompt` (from :mod:`wslab.prompt_review`) reviews a prompt
the learner wrote against the lesson's checklist.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UnknownNameError
from .prompt_review import PromptReview, assemble_template, review_prompt

__all__ = ["ARTICLE_PROMPT", "PromptPair", "PromptReview", "Quoted", "assemble_template", "grade_answer",
           "grade_both", "lessons", "load", "review_prompt", "side_by_side"]

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .contract import Design
    from .grading import Gradebook
    from .run import Run

DATA = Path(__file__).resolve().parent.parent / "data" / "prompts"
#: What the source article's Python prompt asks for, in the course's words: the
#: requirement list alone, with no numbers, no failures first and no self-audit.
ARTICLE_PROMPT = (DATA / "article_python.md").read_text(encoding="utf-8")
RUNGS = ("vague", "article", "better")


@dataclass(frozen=True)
class PromptPair:
    lesson: str
    vague: str
    better: str
    article: str | None = None  # the middle rung, where the lesson has one

    @property
    def rungs(self) -> tuple[str, ...]:
        """The prompts this lesson shows, from the vaguest: ``("vague", "better")``
        or ``("vague", "article", "better")``."""
        return RUNGS if self.article is not None else ("vague", "better")

    def code_path(self, which: str) -> Path | None:
        """``data/prompts/<lesson>/<which>.py``, or None when the lesson has none."""
        path = DATA / self.lesson / f"{_which(which)}.py"
        return path if path.exists() else None

    def code(self, which: str) -> str:
        """The source of the code the ``"vague"`` or ``"better"`` prompt gets."""
        path = self.code_path(which)
        if path is None:
            self._no_article_rung(which)
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
            self._no_article_rung(which)
            return get_design("naive" if _which(which) == "vague" else "production")
        return load_design(path, name=f"{self.lesson} {_which(which)}")

    def prompt(self, which: str) -> "Quoted":
        """One prompt alone, shown as a quote (to show the vague prompt before the
        learner writes their own, and the better one after)."""
        text = self.article if _which(which) == "article" else getattr(self, which)
        if text is None:
            self._no_article_rung(which)
        return Quoted(_TITLES[which], text)

    def _no_article_rung(self, which: str) -> None:
        if _which(which) == "article":
            raise ValueError(f"lesson {self.lesson} has no article rung (its rungs: "
                             f"{', '.join(self.rungs)})")

    def _repr_markdown_(self) -> str:
        return "\n\n".join(self.prompt(which)._repr_markdown_() for which in self.rungs) + "\n"


_TITLES = {"vague": "The vague prompt", "better": "The better prompt",
           "article": "The article's prompt (what it asks, in our words)"}


@dataclass(frozen=True)
class Quoted:
    """A prompt shown as a titled quote in a notebook, as plain text elsewhere."""

    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}:\n\n{self.text.strip()}"

    def _repr_markdown_(self) -> str:
        quoted = "\n".join("> " + line if line else ">" for line in self.text.strip().splitlines())
        return f"**{self.title}**\n\n{quoted}"


def lessons() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if (p / "vague.md").exists())


def load(lesson: str) -> PromptPair:
    """The prompt pair of ``lesson`` (a folder name such as ``"01_happy_path"``)."""
    folder = DATA / lesson
    if not (folder / "vague.md").exists():
        raise UnknownNameError("lesson", lesson, lessons())
    article = folder / "article.md"
    if article.exists():
        article_text: str | None = article.read_text()
    else:  # code for the article's own prompt, with no wording of the lesson's own
        article_text = ARTICLE_PROMPT if (folder / "article.py").exists() else None
    return PromptPair(lesson, (folder / "vague.md").read_text(), (folder / "better.md").read_text(),
                      article_text)


def _which(which: str) -> str:
    if which not in RUNGS:
        raise ValueError(f"which must be one of {', '.join(map(repr, RUNGS))}, got {which!r}")
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
    """Grade the code of every prompt of ``lesson`` (its rungs) on ``scenarios``
    (all by default) and draw the scorecards as one grid: the side by side of a
    lesson about every failure at once (lesson 02). Returns ``(gradebook, figure)``;
    the gradebook's cards are named ``"vague prompt"``, (``"article prompt"``,)
    ``"better prompt"``."""
    from dataclasses import replace

    from .grading import agrade

    pair = load(lesson)
    designs = [replace(pair.design(which), name=f"{which} prompt") for which in pair.rungs]
    book = await agrade(*designs, scenarios=scenarios, progress=progress)
    return book, book.plot()


async def grade_answer(code: "str | None", lesson: str, *, scenarios: Any = None,
                       progress: "bool | None" = None) -> "Gradebook | None":
    """Grade the code your own assistant answered, beside the code of the
    lesson's prompts, on ``scenarios`` (all by default).

    ``code`` is the answer adapted to the design contract (a ``handler`` and a
    ``client``: see :mod:`wslab.contract` for the two-line changes), as source
    text. None or blank prints what to do and returns None; code that does not
    fit the contract raises :class:`~wslab.errors.DesignContractError` saying
    what is missing. Returns the gradebook: cards ``"vague prompt"``,
    (``"article prompt"``,) ``"better prompt"`` and ``"your answer"``.
    """
    from dataclasses import replace

    from .grading import agrade
    from .loader import load_design

    pair = load(lesson)
    if code is None or not str(code).strip():
        print("Nothing pasted yet: put the code your assistant answered in `answer` (as a string, "
              "adapted to the contract: see `help(wslab.contract)`), then run this cell again.")
        return None
    yours = load_design(code, name="your answer")
    designs = [replace(pair.design(which), name=f"{which} prompt") for which in pair.rungs]
    return await agrade(*designs, yours, scenarios=scenarios, progress=progress)
