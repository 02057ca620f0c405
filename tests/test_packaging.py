"""The two ways to install stay in step, and the stored notebooks are clean."""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def normalize(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_has_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {normalize(r) for r in project["dependencies"]}
    wanted |= {normalize(r) for r in project["optional-dependencies"]["dev"]}
    listed = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = line.strip()
        if item.startswith("- ") and not item.startswith("- pip:"):
            listed.add(normalize(item[2:]))
    assert wanted - listed == set()
    assert "-e ." in (ROOT / "environment.yml").read_text()


def test_every_notebook_is_a_lesson_of_the_course_in_order():
    from wslab.course import LESSONS

    names = [p.name for p in NOTEBOOKS]
    expected = [Path(lesson.notebook).name for lesson in LESSONS.values()]
    assert names == expected[:len(names)] and len(names) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_saved_after_restart_and_run_all(path):
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), "run Kernel > Restart and Run All, then save"
    for cell in code:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", cell["source"]
            assert output.get("name") != "stderr", f"stderr output in: {''.join(cell['source'])[:80]}"
    text = path.read_text()
    for private in ("/work/", "/root/", "/tmp/", "/home/"):
        assert private not in text, f"a path of the machine that saved it: {private}"
    assert sum(bool(c["outputs"]) for c in code) >= len(code) // 2, "stored without outputs"
