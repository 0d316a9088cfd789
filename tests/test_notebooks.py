"""Every notebook in notebooks/ runs top to bottom (GRAM_SMOKE=1: a few batches per fit)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))


def test_every_notebook_is_listed_in_the_readme_and_executed_here():
    listed = set(re.findall(r"\(([0-9a-z_]+\.ipynb)\)", (FOLDER / "README.md").read_text()))
    assert listed == {p.name for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 4  # the parametrised test below runs each of them


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("GRAM_SMOKE", "1")
    monkeypatch.setenv("GRAM_RUNS", str(tmp_path))  # the notebooks' named run folder, here a temporary one
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(FOLDER)}}).execute()
    plot_cells = [
        c for c in nb.cells if c.cell_type == "code" and re.search(r"\bplots\.\w+\(|\baz\.plot_\w+\(", c.source)
    ]
    for c in plot_cells:  # every figure is seen: an image, not "<Figure size ... with 3 Axes>"
        assert any("image/png" in o.get("data", {}) for o in c.get("outputs", [])), c.source
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    warned = [o["text"] for o in outputs if o.get("name") == "stderr" and "Warning" in o.get("text", "")]
    assert not warned, warned  # e.g. ArviZ's once-a-day FutureWarning (the cache folder is fresh)
    assert (tmp_path / path.stem).is_dir()  # runs under the one named folder the notebook prints
