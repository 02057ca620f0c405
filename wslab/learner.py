"""The learner edition: the same notebooks, each exercise's solution replaced by a stub.

``python -m wslab learner OUT`` (``make learner``) writes the edition to ``OUT``:

- every code cell tagged ``solution`` keeps its imports and the signature and
  docstring of each function and class it defines; every body becomes
  ``raise NotImplementedError(...)``, naming what to write;
- the cell's outputs are cleared, and so are those of the checker cell that
  follows it, which is tagged ``raises-exception``: until the learner writes the
  solution, the checker reports the ``NotImplementedError`` and fails, and
  "Run All" in JupyterLab (and nbval) goes on past it;
- every other cell, and its stored output, is kept as it is.

The solutions stay in ``notebooks/`` (nbval runs them); the edition is built,
never edited by hand. ``make test`` builds it and runs nbval over it.
"""

from __future__ import annotations

import ast
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from . import pyparse

SOLUTION_TAG = "solution"
RAISES_TAG = "raises-exception"  # nbval and JupyterLab: this cell is expected to raise


@dataclass(frozen=True)
class Stubbed:
    """One solution cell and the stub that replaces it."""

    notebook: str
    cell_index: int
    solution: str
    stub: str
    names: tuple[str, ...]


def _stub_body(node: ast.FunctionDef | ast.AsyncFunctionDef, what: str) -> list[ast.stmt]:
    body: list[ast.stmt] = []
    if ast.get_docstring(node) is not None:
        body.append(node.body[0])
    message = f"write {what}: see the exercise above"
    body.append(pyparse.parse(f"raise NotImplementedError({message!r})").body[0])
    return body


def stub_source(source: str) -> tuple[str, tuple[str, ...]]:
    """The stub for a solution cell's source, and the names it defines.

    Imports stay; each function keeps its signature and docstring; each class
    keeps its bases, docstring and methods' signatures; a name given a string
    (a prompt to write, ``my_prompt = "..."``) is given the empty string;
    everything else in the cell (helper constants, a worked value) is dropped.
    """
    tree = pyparse.parse(source)
    kept: list[ast.stmt] = []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            kept.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stub = copy.deepcopy(node)
            stub.body = _stub_body(node, f"{node.name}()")
            kept.append(stub)
            names.append(node.name)
        elif isinstance(node, ast.ClassDef):
            stub = copy.deepcopy(node)
            body: list[ast.stmt] = []
            if ast.get_docstring(node) is not None:
                body.append(node.body[0])
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    method = copy.deepcopy(item)
                    method.body = _stub_body(item, f"{node.name}.{item.name}()")
                    body.append(method)
            stub.body = body or [ast.Pass()]
            kept.append(stub)
            names.append(node.name)
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant)
              and isinstance(node.value.value, str)):
            kept.append(ast.Assign(targets=node.targets, value=ast.Constant(""), lineno=0))
            names.append(node.targets[0].id)
    if not names:
        raise ValueError("a solution cell must define at least one function, class or prompt")
    text = ast.unparse(ast.Module(body=kept, type_ignores=[])) + "\n"
    for name in names:  # a text to write (a prompt, a module's source): say so where it goes
        what = "your prompt" if "prompt" in name.lower() else "it"
        text = text.replace(f"{name} = ''\n", f"{name} = ''  # write {what} here, in triple quotes\n")
    return text, tuple(names)


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def learner_notebook(notebook: dict, name: str = "") -> tuple[dict, list[Stubbed]]:
    """A copy of ``notebook`` with its solutions stubbed (see the module docstring)."""
    edition = copy.deepcopy(notebook)
    cells = edition["cells"]
    stubbed = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or SOLUTION_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        solution = _source(cell)
        stub, names = stub_source(solution)
        cell["source"] = stub.splitlines(keepends=True)
        cell["outputs"], cell["execution_count"] = [], None
        cell["metadata"]["tags"] = [t for t in cell["metadata"]["tags"] if t != SOLUTION_TAG] + ["stub"]
        cell["metadata"].get("jupyter", {}).pop("source_hidden", None)  # the learner writes here
        checker = next((c for c in cells[i + 1:] if c["cell_type"] == "code"), None)
        if checker is None:
            raise ValueError(f"{name}: the solution cell {i} has no checker cell after it")
        checker["outputs"], checker["execution_count"] = [], None
        tags = checker.setdefault("metadata", {}).setdefault("tags", [])
        if RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
        stubbed.append(Stubbed(name, i, solution, stub, names))
    return edition, stubbed


def build(source_dir: Path, out_dir: Path) -> list[Stubbed]:
    """Write the learner edition of every notebook in ``source_dir`` to ``out_dir``
    (created if needed); return what was stubbed."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {source_dir}")
    if out_dir.resolve() == source_dir.resolve():
        raise ValueError("the learner edition must go to another folder than the notebooks")
    out_dir.mkdir(parents=True, exist_ok=True)
    everything = []
    for path in sorted(source_dir.glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        edition, stubbed = learner_notebook(notebook, path.name)
        (out_dir / path.name).write_text(json.dumps(edition, indent=1, ensure_ascii=False) + "\n")
        everything += stubbed
    for extra in source_dir.iterdir():  # nbval's sanitize file
        if extra.suffix == ".cfg":
            (out_dir / extra.name).write_text(extra.read_text())
    return everything
