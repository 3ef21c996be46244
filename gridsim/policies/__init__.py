"""Routing policies: a protocol, a registry, and the built-ins."""

from gridsim.policies.registry import BUILTIN_POLICIES, make_policy, policy_names, register

__all__ = ["BUILTIN_POLICIES", "make_policy", "policy_names", "register"]
