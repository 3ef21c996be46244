"""A user co-scheduling policy, named ``user_policies:HalfAllDay`` in tests/test_training.py
(the tests folder is on the path when pytest runs, as for tests/theory.py)."""

from __future__ import annotations

from typing import Any

from gridsim.training.policies import CoScheduler


class HalfAllDay(CoScheduler):
    """Half of every pool (``divisor``: a param) trains all day, whatever inference needs."""

    name = "half_all_day"

    def lend(self, installed: Any, busy: Any, slots_per_replica: Any, budget_over_hold: Any) -> Any:
        return installed // int(self.params.get("divisor", 2))
