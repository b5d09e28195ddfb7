"""The experiment notebooks run end to end: on reduced axes (``RECSIM_NOTEBOOK_QUICK=1``) in the default
run, on their full axes behind the ``slow`` marker (``make test-slow``)."""

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


def _execute(path: Path, monkeypatch: pytest.MonkeyPatch, *, quick: bool) -> None:
    if quick:
        monkeypatch.setenv("RECSIM_NOTEBOOK_QUICK", "1")
    else:
        monkeypatch.delenv("RECSIM_NOTEBOOK_QUICK", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXPERIMENTS)}}
    )
    client.execute(env=dict(os.environ))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the front table and a figure came out
    assert any("text/html" in o.get("data", {}) for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _execute(path, monkeypatch, quick=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_its_full_axes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The experiments as shipped (every axis value, DES stages included), as a user opens them:
    # the default run takes reduced axes, which leave most points and the DES stages out.
    _execute(path, monkeypatch, quick=False)
