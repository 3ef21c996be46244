"""The scenario language: schema, loading (extends, overrides, --set) and errors with paths."""

from gridsim.scenario.errors import Mark, Problem, ScenarioError
from gridsim.scenario.loading import (
    load_scenario,
    load_scenario_text,
    resolve_file,
    scenario_catalog,
    validate,
)
from gridsim.scenario.schema import Scenario

__all__ = [
    "Mark",
    "Problem",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "load_scenario_text",
    "resolve_file",
    "scenario_catalog",
    "validate",
]
