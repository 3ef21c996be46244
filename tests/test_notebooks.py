"""The analyst notebooks (jupytext percent scripts in notebooks/) execute end to end.

Each is converted with jupytext and run by nbclient on the ``python3`` kernel of this Python
(ipykernel installs its kernelspec into the environment; jupyter_client starts it with this
interpreter), in quick mode (``GRIDSIM_QUICK=1``: short horizons) with notebooks/ as the working
directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip(
    "jupytext", reason="notebook tests need jupytext (pip install -e '.[dev]')"
)
nbclient = pytest.importorskip(
    "nbclient", reason="notebook tests need nbclient (pip install -e '.[dev]')"
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.py"))
BUDGET_S = 120.0  # per notebook in quick mode (all three take ~25 s here)


def _kernel_available() -> str | None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return (
            "no python3 Jupyter kernel: install ipykernel (pip install -e '.[dev]'), or "
            "register it with: python -m ipykernel install --sys-prefix"
        )
    return None


def test_the_three_notebooks_are_there() -> None:
    assert [p.name for p in PATHS] == [
        "01-quickstart.py",
        "02-growth-and-shortfall.py",
        "03-east-west.py",
    ]
    for path in PATHS:
        text = path.read_text("utf-8")
        assert "format_name: percent" in text and "# %%" in text, path
        assert "GRIDSIM_QUICK" in text, path


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _kernel_available()
    if missing:
        pytest.fail(missing)
    monkeypatch.setenv("GRIDSIM_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f} s in quick mode"
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was shown"
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "quick mode: True" in printed  # the kernel saw GRIDSIM_QUICK
