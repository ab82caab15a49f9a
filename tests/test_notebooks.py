"""Execute every notebook under notebooks/ headless, at the small size, with this interpreter.

`INFERENCEGUARD_NOTEBOOK_SMALL=1` makes each notebook use very short answers and few prompts.
The kernel is the `python3` kernel spec; jupyter_client starts a spec whose command is `python`
with the interpreter that runs the tests, so the notebooks see the same packages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600


def test_notebooks_exist():
    names = [path.stem for path in NOTEBOOKS]

    assert len(names) >= 5, names
    for topic in ("quickstart", "rag", "agent", "critic", "benchmark"):
        assert any(topic in name for name in names), topic


def test_notebooks_have_no_outputs():
    """Committed notebooks carry no outputs, so no model text lands in the repository."""
    import nbformat

    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        with_outputs = [
            index
            for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count)
        ]
        assert with_outputs == [], path.name


def test_kernel_uses_this_interpreter():
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    command = manager.format_kernel_cmd()

    assert command[0] == sys.executable


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("INFERENCEGUARD_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    # One torch thread per process, as in the other tests, so parallel test processes on a
    # small machine do not slow each other down.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()

    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
