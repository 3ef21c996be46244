"""gridsim: a discrete-event simulator of a national computing grid.

The public API: ``load_scenario`` (a validated ``Scenario``), ``run`` (a ``Result`` with
``.summary``, ``.timeseries``, ``.requests``, ``.flows`` and ``.pools``), ``sweep`` (axes x
seeds, locally or on a Dask cluster), ``plan`` (least-cost build-outs, checked by simulation:
``gridsim.planner``), and ``ScenarioError``, which carries every problem found
in a scenario.

The names are loaded on first use, so ``import gridsim`` (and the command line's start, which
must be able to stop quietly on Ctrl-C) does not load pandas, SimPy and Dask up front.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridsim.planner import plan
    from gridsim.run import Result, run
    from gridsim.scenario import Scenario, ScenarioError, load_scenario, load_scenario_text
    from gridsim.sweep import sweep

try:
    __version__ = version("gridsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_PUBLIC = {
    "Result": "gridsim.run",
    "run": "gridsim.run",
    "Scenario": "gridsim.scenario",
    "ScenarioError": "gridsim.scenario",
    "load_scenario": "gridsim.scenario",
    "load_scenario_text": "gridsim.scenario",
    "sweep": "gridsim.sweep",
    "plan": "gridsim.planner",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'gridsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


class _Api(types.ModuleType):
    """``gridsim.run`` and ``gridsim.sweep`` are functions that share their modules' names:
    importing the module must not replace the function on the package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Api


__all__ = [
    "Result",
    "Scenario",
    "ScenarioError",
    "__version__",
    "load_scenario",
    "load_scenario_text",
    "plan",
    "run",
    "sweep",
]
