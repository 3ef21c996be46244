"""Policies by name: the built-ins, and user policies named ``module:Class`` in a scenario."""

from __future__ import annotations

BUILTIN_POLICIES: tuple[str, ...] = (
    "nearest",
    "least_loaded",
    "cheapest",
    "greenest",
    "latency_slo",
    "east_west",
)


def policy_names() -> frozenset[str]:
    """Names a scenario may give as ``policy.name`` (besides ``module:Class``)."""
    return frozenset(BUILTIN_POLICIES)
