"""notebooks/tour.ipynb runs top to bottom (small settings), so the tour can never rot."""

import os
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "tour.ipynb"


def test_tour_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the test extra (nbformat, nbclient, ipykernel) is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the test extra (nbclient) is not installed")
    pytest.importorskip("ipykernel", reason="the test extra (ipykernel) is not installed")
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    # The kernel is a child process: it inherits the small sizes, a private feature-network cache, and
    # this interpreter's import path (so it imports the denoiselab under test).
    monkeypatch.setenv("DENOISELAB_TOUR", "small")
    monkeypatch.setenv("DENOISELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # any committed outputs are replaced by this run's own
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name=NATIVE_KERNEL_NAME, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    seconds = time.perf_counter() - t0
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "KS distance to N(0, 1)" in text and "FID" in text and "class accuracy" in text
    assert "small test run" in text  # numbers from tiny networks say so
    assert images >= 9
    assert (tmp_path / "tour-output" / "report.html").is_file()
    assert (tmp_path / "tour-output" / "mnist" / "report.html").is_file()
    print(f"tour notebook: {seconds:.0f} s")



def test_tour_is_committed_with_a_full_runs_outputs_under_a_size_limit():
    """A reader on a web page sees the pictures: the notebook carries the outputs of a run at its
    own sizes (not the test's small mode), and stays small enough to open quickly."""
    import json

    assert NOTEBOOK.stat().st_size < 4_000_000, f"{NOTEBOOK} is {NOTEBOOK.stat().st_size} bytes: shrink the figures"
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in cells for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 9, "run the tour and save it with its outputs"
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "small test run" not in text, "the committed outputs must come from the tour's own sizes"
