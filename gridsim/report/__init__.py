"""Reports of a run: figures (PNG) and a self-contained report.html."""

from gridsim.report.figures import write_figures
from gridsim.report.html import kpis, warnings, write_report

__all__ = ["kpis", "warnings", "write_figures", "write_report"]
