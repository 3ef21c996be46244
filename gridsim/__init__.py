"""gridsim: a discrete-event simulator of a national computing grid.

The public API: ``load_scenario`` and the ``Scenario`` model; ``ScenarioError`` carries every
problem found in a scenario.
"""

from importlib.metadata import PackageNotFoundError, version

from gridsim.scenario import Scenario, ScenarioError, load_scenario, load_scenario_text

try:
    __version__ = version("gridsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Scenario", "ScenarioError", "__version__", "load_scenario", "load_scenario_text"]
