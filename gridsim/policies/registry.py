"""Policies by name: the built-ins, and user policies named ``module:Class`` in a scenario.

A user policy is code the scenario opts into by naming it; it is imported only when a run
builds it, never while a scenario is validated.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridsim.grid import Grid
    from gridsim.policies.base import Policy

BUILTIN_POLICIES: tuple[str, ...] = (
    "nearest",
    "least_loaded",
    "cheapest",
    "greenest",
    "latency_slo",
    "east_west",
)
_REGISTERED: dict[str, Any] = {}


def register(name: str, factory: Any) -> None:
    """Make ``factory(grid, **params)`` available as ``policy: {name: NAME}``."""
    _REGISTERED[name] = factory


def policy_names() -> frozenset[str]:
    """Names a scenario may give as ``policy.name`` (besides ``module:Class``)."""
    return frozenset(BUILTIN_POLICIES) | frozenset(_REGISTERED)


def make_policy(name: str, grid: Grid, params: dict[str, Any] | None = None) -> Policy:
    """Build the named policy over ``grid``; ValueError says what is wrong and how to fix it."""
    from gridsim.policies.builtin import BUILTIN

    params = params or {}
    if name in _REGISTERED:
        factory = _REGISTERED[name]
    elif name in BUILTIN:
        factory = BUILTIN[name]
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"policy {name!r} cannot be loaded ({exc}); check the module is importable "
                "and the class name is right"
            ) from None
    else:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(sorted(policy_names()))}")
    try:
        policy = factory(grid, **params)
    except TypeError as exc:
        raise ValueError(f"policy {name!r} rejected its params {params}: {exc}") from None
    for method in ("choose", "allocate"):
        if not callable(getattr(policy, method, None)):
            raise ValueError(f"policy {name!r} has no {method}() method; see gridsim.policies")
    return policy
