"""Policy names: the built-ins, names added with ``register``, and user policies named
``module:Class`` in a scenario.

The scenario layer reads the names here (to check ``policy.name`` and ``policy_switch`` events)
without importing the grid. A factory is looked up by name only when a run builds the policy
(``gridsim.policies.base.make_policy``): built-ins are imported as a user policy is, so user
code the scenario names is imported then, never while a scenario is validated.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# name -> "module:Class" that implements it (each class's ``name`` is the same name).
BUILTIN_POLICIES: dict[str, str] = {
    "nearest": "gridsim.policies.builtin:Nearest",
    "least_loaded": "gridsim.policies.builtin:LeastLoaded",
    "cheapest": "gridsim.policies.builtin:Cheapest",
    "greenest": "gridsim.policies.builtin:Greenest",
    "latency_slo": "gridsim.policies.builtin:LatencySlo",
    "east_west": "gridsim.policies.builtin:EastWest",
}
_REGISTERED: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any]) -> None:
    """Make ``factory(grid, **params)`` available as ``policy: {name: NAME}`` and in
    ``policy_switch`` events (register before loading the scenario that names it)."""
    _REGISTERED[name] = factory


def policy_names() -> frozenset[str]:
    """Names a scenario may give as ``policy.name`` (besides ``module:Class``)."""
    return frozenset(BUILTIN_POLICIES) | frozenset(_REGISTERED)


def policy_factory(name: str) -> Callable[..., Any]:
    """What builds the policy ``name``: a registered factory, else a built-in, else the class
    named ``module:Class``; ValueError says what is wrong and how to fix it."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    return _load(name, BUILTIN_POLICIES, "policy", policy_names())


def _load(
    name: str, builtins: dict[str, str], what: str, known: frozenset[str]
) -> Callable[..., Any]:
    """The class a built-in ``name`` or a ``module:Class`` names, imported now."""
    target = builtins.get(name) or (name if ":" in name else None)
    if target is None:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(known))}")
    module_name, _, attr = target.partition(":")
    try:
        factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"{what} {name!r} cannot be loaded ({exc}); check the module is importable "
            "and the class name is right"
        ) from None
    return factory


# Co-scheduling policies (``training.policy``): name -> "module:Class" (gridsim.training).
BUILTIN_COSCHEDULERS: dict[str, str] = {
    "inference_first": "gridsim.training.policies:InferenceFirst",
    "day_night": "gridsim.training.policies:DayNight",
    "carbon_aware": "gridsim.training.policies:CarbonAware",
    "price_aware": "gridsim.training.policies:PriceAware",
}


def coscheduler_names() -> frozenset[str]:
    """Names a scenario may give as ``training.policy`` (besides ``module:Class``)."""
    return frozenset(BUILTIN_COSCHEDULERS)


def coscheduler_factory(name: str) -> Callable[..., Any]:
    """The class of co-scheduling policy ``name`` (a built-in or ``module:Class``)."""
    return _load(name, BUILTIN_COSCHEDULERS, "co-scheduling policy", coscheduler_names())
