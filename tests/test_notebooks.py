"""The notebooks run top to bottom (nbclient): on ../shared/data when present, on synthetic stand-ins otherwise
(HNAS_SHARED_DATA pointing at an empty folder forces that path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run_notebook(path: Path, env: dict[str, str]) -> object:
    nbformat = pytest.importorskip("nbformat", reason="nbformat/nbclient come with the dev extra: pip install .[dev]")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def outputs(nb: object) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_there_are_three_notebooks_with_cleared_outputs():
    import json

    assert [p.name for p in NOTEBOOKS] == ["01_score_and_proxies.ipynb", "02_robot_hnas_trajectories.ipynb",
                                           "03_open_a_finished_run.ipynb"]
    for p in NOTEBOOKS:  # committed without outputs: they are documentation, and their diffs stay readable
        cells = json.loads(p.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), p.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, shared_data):
    env = {"HNAS_SHARED_DATA": str(shared_data), "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    nb = run_notebook(path, env)
    text = outputs(nb)
    assert "real data:" in text
    if path.stem.startswith("01"):
        assert "scores in the store" in text and "synflow" in text
    elif path.stem.startswith("02"):
        assert "| nb201_cifar10 | robot | 2 |" in text and "| nb201_cifar10 | hnas | 2 |" in text
    else:
        assert "runs in the store" in text and "table(s)" in text and "| nb201_cifar10 | rea | 1 |" in text


@pytest.mark.slow
def test_notebook_runs_on_synthetic_stand_ins_without_shared_data(tmp_path):
    nb = run_notebook(NOTEBOOKS[0], {"HNAS_SHARED_DATA": str(tmp_path), "PYTHONPATH": str(ROOT),
                                     "WANDB_MODE": "offline"})
    assert "no real data: synthetic stand-ins" in outputs(nb)
