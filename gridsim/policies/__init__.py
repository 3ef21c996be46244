"""Routing policies: the names (``registry``, which the scenario layer reads), the protocol and
``make_policy`` (``base``), and the built-ins (``builtin``).

Only the registry is imported here: validating a scenario must not import the grid.
"""

from gridsim.policies.registry import BUILTIN_POLICIES, policy_names, register

__all__ = ["BUILTIN_POLICIES", "policy_names", "register"]
