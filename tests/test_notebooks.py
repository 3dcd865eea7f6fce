"""The ablation notebooks in notebooks/: each runs top to bottom at test size, and none is committed with outputs.

Each notebook reads FI_SIM_NOTEBOOK_SMALL=1 (tiny models, few seeds) and writes under FI_SIM_NOTEBOOK_OUT; the
kernel is the `python3` kernel of the interpreter running the tests (ipykernel from the dev extra), which
inherits this process's environment, so it runs on the CPU with the session's compilation cache.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {"01_six_factor_tour", "02_test_your_attribution_method", "03_reproduce_a_finding", "04_your_own_verifier"}
TRAINS = {"01_six_factor_tour", "03_reproduce_a_finding", "04_your_own_verifier"}  # real (tiny) studies; 02: numpy


def _execute(nb, cwd: Path, timeout: int = 600):
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _text(nb) -> str:
    """Everything the executed notebook printed (streams and plain-text results)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "".join(parts)


def test_the_notebooks_exist():
    assert EXPECTED <= {p.stem for p in NOTEBOOKS}, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or an execution count; clear them before committing"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert 'SMALL = os.environ.get("FI_SIM_NOTEBOOK_SMALL") == "1"' in first_code.source
    assert nb.cells[0].cell_type == "markdown" and "Time:" in nb.cells[0].source


def test_kernel_runs_this_interpreter(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json, sys; print(json.dumps([sys.prefix, sys.executable]))")])
    prefix, executable = json.loads(_text(_execute(nb, tmp_path, timeout=120)))
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), (executable, sys.executable)


@pytest.fixture(scope="module")
def notebook_out(tmp_path_factory):
    """One output root for the module: notebook 02 scores the methods on notebook 01's surface when it finds it."""
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=[pytest.mark.slow] if p.stem in TRAINS else []) for p in NOTEBOOKS], ids=lambda p: p.stem
)
def test_notebook_runs_at_small_size(path, notebook_out, monkeypatch):
    monkeypatch.setenv("FI_SIM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("FI_SIM_NOTEBOOK_OUT", str(notebook_out))
    nb = _execute(nbformat.read(path, as_version=4), NOTEBOOKS_DIR)  # raises CellExecutionError on any error
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")
    assert "size: small (test" in _text(nb)  # the notebook saw the switch
    assert (notebook_out / path.stem).is_dir()  # and wrote where it was told, not into the repository's runs/
