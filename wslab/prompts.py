"""The prompts of each lesson, kept as files under ``data/prompts/<lesson>/``.

Each lesson folder holds ``vague.md`` (what people type first) and
``better.md`` (the prompt that asks for the missing mechanism). The code each
prompt gets is a design: for the vague prompts of lesson 01 it is
:mod:`wslab.designs.naive`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownNameError

DATA = Path(__file__).resolve().parent.parent / "data" / "prompts"


@dataclass(frozen=True)
class PromptPair:
    lesson: str
    vague: str
    better: str

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
