"""The fully resolved scenario as YAML: what ``gridsim show`` prints and a run saves."""

from __future__ import annotations

import yaml

from gridsim.scenario.schema import Scenario


def resolved_dict(scenario: Scenario) -> dict[str, object]:
    """Every field, defaults included; unset optional fields are left out for readability."""
    return scenario.model_dump(mode="json", exclude_none=True)


def dump_resolved(scenario: Scenario) -> str:
    """YAML that validates back to the same scenario (run it as is to reproduce a run)."""
    from gridsim import __version__

    header = f"# resolved by gridsim {__version__}; re-runnable as is\n"
    body = yaml.safe_dump(resolved_dict(scenario), sort_keys=False, allow_unicode=True, width=100)
    return header + body
