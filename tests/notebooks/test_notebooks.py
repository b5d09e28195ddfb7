"""The experiment notebooks run end to end (reduced axes: ``RECSIM_NOTEBOOK_QUICK=1``)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
NOTEBOOKS = sorted(EXPERIMENTS.glob("*.ipynb"))


def test_every_spec_has_a_notebook():
    specs = {p.stem for p in EXPERIMENTS.glob("*.yaml")}
    assert specs == {p.stem for p in NOTEBOOKS}
    assert {"zionex-sharding", "memory-tiers", "network", "precision"} <= specs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSIM_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXPERIMENTS)}}
    )
    client.execute(env=dict(os.environ))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the front table and a figure came out
    assert any("text/html" in o.get("data", {}) for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
