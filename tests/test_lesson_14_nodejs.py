"""Lesson 14 on a machine without Node.js: every cell runs, and those that need Node
say what to install instead (the lesson's Node runs themselves are checked by nbval
and by tests/test_external.py)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_without_node_lesson_14_runs_clean_and_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node on it (the kernel starts from sys.executable)
    monkeypatch.setenv("WSLAB_PROMPTS_DIR", str(tmp_path / "my_prompts"))
    notebook = nbformat.read(ROOT / "notebooks" / "14_nodejs.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    printed = "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                        for output in cell.outputs)
    assert not any(output.output_type == "error" for cell in notebook.cells
                   if cell.cell_type == "code" for output in cell.outputs)
    assert "Node.js 18 or later is not installed" in printed and "https://nodejs.org" in printed
    assert printed.count("skipped:") == 2  # the restart and the exercise's check
    assert "✅ the production ws pair passes every check it ran" in printed  # the stored gradebook
