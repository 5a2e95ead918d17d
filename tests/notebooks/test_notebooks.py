"""The notebooks in notebooks/ run top to bottom (at small sizes) in a real Jupyter kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, tmp_path: Path, monkeypatch, **env: str) -> nbformat.NotebookNode:
    monkeypatch.setenv("MEDPHYS_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    book = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(
        book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return book


def _text(book: nbformat.NotebookNode) -> str:
    return "\n".join(
        out.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


@pytest.mark.slow  # 32 CT cases: about a minute
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trial_notebook(tmp_path, monkeypatch):
    book = _run("trial.ipynb", tmp_path, monkeypatch, MEDPHYS_NOTEBOOK_PAIRS="16")
    text = _text(book)
    assert "ΔAUC standard - low" in text and "cases for SE(AUC) = 0.02" in text
    assert (tmp_path / "trial-a" / "report.html").is_file()
    assert len(list((tmp_path / "trial-a" / "rois").glob("*.npz"))) == 32


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dataset_notebook(tmp_path, monkeypatch):
    book = _run("dataset.ipynb", tmp_path, monkeypatch, MEDPHYS_NOTEBOOK_SMALL="1")
    assert "case-0000_0000.nii.gz" in _text(book)
    assert (tmp_path / "dataset" / "overview.png").is_file()
    assert len(list((tmp_path / "dicom").rglob("CT/*.dcm"))) == 2 * 6  # 2 cases x 6 slices
    assert os.path.isdir(tmp_path / "nnUNet_raw" / "Dataset001_Phantoms")
