"""Capacity expansion (``gridsim plan``): what to build, where and when, at least cost; checked by
simulation. ``plan`` is the public entry (``gs.plan``); the modules are ``problem`` (what is
optimised over), ``model`` (the program and its explanations), ``verify`` (the plan as events,
simulated), ``workflow`` (rounds, naive plans, the robust option) and ``outputs`` (the folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridsim.planner.workflow import PlanOutcome


def plan(
    file: str | Path,
    scenarios: Sequence[str] = (),
    sets: Sequence[str] = (),
    period: str | None = None,
    budget_cny: float | None = None,
    robust: str | None = None,
    draws: int = 20,
    workers: int | None = None,
    compare: bool = True,
    say: Callable[[str], None] | None = None,
) -> PlanOutcome:
    """Plan ``file`` as ``gridsim plan`` does and return everything it found (no folder is
    written: ``gridsim.planner.outputs`` has the tables). Raises ``ScenarioError`` or
    ``ValueError`` on bad input and ``gridsim.planner.model.Infeasible`` when no plan meets
    the demand under the limits. Scripts that call it with ``workers`` > 1 need the
    ``if __name__ == "__main__":`` guard (simulations run in spawned processes)."""
    from gridsim.planner.workflow import make_plan, prepare

    prepared = prepare(Path(file), scenarios, sets, period, budget_cny, robust, draws)
    return make_plan(prepared, workers, compare, say)
