"""gridsim: a discrete-event simulator of a national computing grid.

The public API: ``load_scenario`` (a validated ``Scenario``), ``run`` (a ``Result`` with
``.summary``, ``.timeseries``, ``.requests``, ``.flows`` and ``.pools``), ``sweep`` (axes x
seeds, locally or on a Dask cluster), and ``ScenarioError``, which carries every problem found
in a scenario.
"""

from importlib.metadata import PackageNotFoundError, version

from gridsim.run import Result, run
from gridsim.scenario import Scenario, ScenarioError, load_scenario, load_scenario_text
from gridsim.sweep import sweep

try:
    __version__ = version("gridsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Result",
    "Scenario",
    "ScenarioError",
    "__version__",
    "load_scenario",
    "load_scenario_text",
    "run",
    "sweep",
]
