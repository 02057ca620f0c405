"""The learner edition: every solution becomes a stub with the same signature, the
checker after it is marked to raise, and nothing else changes. (make test runs nbval
over the built edition: only those checker cells may raise.)"""

import ast
import json
from pathlib import Path

import pytest

from wslab import pyparse
from wslab.learner import RAISES_TAG, build, stub_source

ROOT = Path(__file__).resolve().parent.parent


def signatures(source: str) -> dict[str, str]:
    """name -> its signature, for every function, class and method defined at top level."""
    found = {}
    for node in pyparse.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = f"{type(node).__name__}({ast.unparse(node.args)})"
        elif isinstance(node, ast.ClassDef):
            found[node.name] = "class(" + ", ".join(ast.unparse(b) for b in node.bases) + ")"
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = f"{type(item).__name__}({ast.unparse(item.args)})"
    return found


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("learner")
    return out, build(ROOT / "notebooks", out)


def test_every_exercise_is_stubbed_with_the_solutions_signature(edition):
    out, stubbed = edition
    with_exercise = [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
                     if '"solution"' in p.read_text()]
    assert sorted({s.notebook for s in stubbed}) == with_exercise and len(with_exercise) >= 7
    for s in stubbed:
        assert signatures(s.stub) == signatures(s.solution), s.notebook
        namespace: dict = {}
        exec(compile(s.stub, s.notebook, "exec"), namespace)  # the stub runs as a cell
        for node in pyparse.parse(s.stub).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                body = [n for n in ast.walk(node) if isinstance(n, ast.Raise)]
                assert body and all("NotImplementedError" in ast.unparse(r) for r in body)


def test_only_the_solution_and_its_checker_change(edition):
    out, stubbed = edition
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        full = json.loads(path.read_text())["cells"]
        learner = json.loads((out / path.name).read_text())["cells"]
        assert len(full) == len(learner)
        changed = [i for i, (a, b) in enumerate(zip(full, learner)) if a != b]
        stubs = [s.cell_index for s in stubbed if s.notebook == path.name]
        checkers = [next(j for j in range(i + 1, len(full)) if full[j]["cell_type"] == "code")
                    for i in stubs]
        assert changed == sorted(stubs + checkers), path.name
        for j in checkers:
            assert RAISES_TAG in learner[j]["metadata"]["tags"] and learner[j]["outputs"] == []
    assert (out / "sanitize.cfg").exists()


def test_stub_source_keeps_imports_and_docstrings_and_refuses_a_cell_without_definitions():
    stub, names = stub_source(
        "import math\nLIMIT = 3\n\nasync def f(a, *, b=2):\n    '''Doc.'''\n    return a\n")
    assert names == ("f",) and "import math" in stub and "LIMIT" not in stub
    assert '"""Doc."""' in stub and "raise NotImplementedError" in stub and "return a" not in stub
    with pytest.raises(ValueError, match="at least one function, class or prompt"):
        stub_source("x = 1\n")


def test_cli_builds_the_edition_and_refuses_to_overwrite_the_notebooks(tmp_path):
    from wslab.__main__ import main

    notebooks = str(ROOT / "notebooks")
    assert main(["learner", str(tmp_path / "out"), "--notebooks", notebooks]) == 0
    assert (tmp_path / "out" / "02_failure_modes.ipynb").exists()
    assert main(["learner", notebooks, "--notebooks", notebooks]) == 2
    assert main(["learner", str(tmp_path / "x"), "--notebooks", str(tmp_path / "none")]) == 2


def test_cli_finds_the_workbooks_notebooks_from_any_folder(tmp_path, monkeypatch, capsys):
    from wslab.__main__ import main

    monkeypatch.chdir(tmp_path)  # not the project's root: no notebooks/ here
    assert main(["learner", "out"]) == 0
    assert (tmp_path / "out" / "02_failure_modes.ipynb").exists()
    assert main(["learner", "x", "--notebooks", "none"]) == 2
    assert "pass --notebooks" in capsys.readouterr().err


def test_stubs_open_unfolded_where_the_solution_was_folded():
    cell = {"cell_type": "code", "source": ["def f():\n", "    return 1\n"], "outputs": [],
            "execution_count": 1, "metadata": {"tags": ["solution"], "jupyter": {"source_hidden": True}}}
    checker = {"cell_type": "code", "source": ["f()"], "outputs": [], "execution_count": 2,
               "metadata": {}}
    from wslab.learner import learner_notebook
    edition, _ = learner_notebook({"cells": [cell, checker]})
    assert "source_hidden" not in edition["cells"][0]["metadata"].get("jupyter", {})
    assert edition["cells"][0]["metadata"]["tags"] == ["stub"]
