"""Policies added with ``gridsim.policies.register``: named in a scenario's ``policy_switch``
event, they are validated against the registry and run at both fidelities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gridsim as gs
from gridsim.grid import Grid, build_grid
from gridsim.policies import policy_names, register, registry
from gridsim.policies.base import FloatArray, FlowState, PolicyBase, PoolView
from gridsim.run import run

CROSS = Path(__file__).parents[1] / "scenarios" / "validation" / "cross_fidelity.yaml"
SWITCH_S = 1800.0


class Farthest(PolicyBase):
    """The farthest reachable pool that is up: nothing a built-in would do."""

    name = "farthest"

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        for p in reversed(self.candidates[cls][region]):
            if view.alive[p]:
                return p
        return -1

    def allocate(self, state: FlowState) -> FloatArray:
        mask = self.candidate_mask & state.alive[None, None, :]
        best = np.where(mask, self.rank, -np.inf).argmax(axis=2)
        shares = np.zeros(mask.shape)
        np.put_along_axis(shares, best[:, :, None], 1.0, axis=2)
        return shares * mask.any(axis=2, keepdims=True)


@pytest.fixture
def farthest(monkeypatch: pytest.MonkeyPatch) -> list[Grid]:
    """``farthest`` registered for this test only; the list collects the grids it was built on."""
    monkeypatch.setattr(registry, "_REGISTERED", {})
    built: list[Grid] = []

    def factory(grid: Grid, **params: Any) -> Farthest:
        built.append(grid)
        return Farthest(grid, **params)

    register("farthest", factory)
    return built


def scenario(duration: str, *more: str) -> Any:
    switch = f"events=[{{kind: policy_switch, at: {SWITCH_S:g}, policy: farthest}}]"
    sets = ["outputs.figures=false", f"horizon.duration={duration}", "horizon.warmup=0s"]
    return gs.load_scenario(CROSS, sets=[*sets, switch, *more])


def test_a_switch_to_an_unregistered_policy_is_refused_where_it_is_named() -> None:
    assert "farthest" not in policy_names()
    with pytest.raises(gs.ScenarioError) as info:
        scenario("1h")
    assert "events[0].policy" in str(info.value)
    assert "unknown policy 'farthest'" in str(info.value)


def test_a_registered_policy_takes_over_at_request_fidelity(farthest: list[Grid]) -> None:
    sc = scenario("1h", "outputs.requests=true")
    result = run(sc, fidelity="request")
    assert len(farthest) == 1  # built once, at the switch
    grid = build_grid(sc)
    far = {
        (c.name, r): grid.pools[grid.candidates[ci][ri][-1]].node_id
        for ci, c in enumerate(grid.classes)
        for ri, r in enumerate(grid.region_ids)
    }
    reqs = result.requests
    after = reqs[reqs["arrival_s"] >= SWITCH_S]
    before = reqs[reqs["arrival_s"] < SWITCH_S]
    assert len(after) > 100 and len(before) > 100
    expected = [far[(c, r)] for c, r in zip(after["class"], after["region"], strict=True)]
    assert (after["node"].astype(str).to_numpy() == np.array(expected)).all()
    # least_loaded before the switch does not send everything to the farthest pool
    earlier = [far[(c, r)] for c, r in zip(before["class"], before["region"], strict=True)]
    assert (before["node"].astype(str).to_numpy() != np.array(earlier)).any()


def test_a_registered_policy_takes_over_at_flow_fidelity(farthest: list[Grid]) -> None:
    switched = run(scenario("2h"), fidelity="flow")
    assert len(farthest) == 1
    unswitched = run(gs.load_scenario(CROSS, sets=["horizon.duration=2h"]), fidelity="flow")

    def served(result: Any) -> Any:
        flows = result.flows
        return flows[flows["class"] == "chat"].groupby(["region", "node"])["requests"].sum()

    # From Shanghai the farthest chat pool is Shaoguan's: it gets more once the switch is made.
    assert served(switched)["shanghai", "shaoguan"] > served(unswitched)["shanghai", "shaoguan"]
    req = switched.summary["requests"]
    assert req["arrived"] == req["served"] + req["dropped"] + req["in_flight"]


@pytest.mark.parametrize("fidelity", ["request", "flow"])
def test_a_link_cut_keeps_the_switched_policy_and_a_switch_keeps_the_cut_routes(
    fidelity: str,
) -> None:
    from gridsim.engine.events import schedule
    from gridsim.engine.flow import FlowEngine
    from gridsim.engine.request import RequestEngine

    cut = "{kind: link_outage, a: 'hub:yrd_demo_zone', b: 'hub:guian', at: 1h}"
    for events, last in (
        (f"[{{kind: policy_switch, policy: nearest, at: 30min}}, {cut}]", "cut"),
        (f"[{cut}, {{kind: policy_switch, policy: nearest, at: 2h}}]", "switch"),
    ):
        sc = gs.load_scenario(CROSS, sets=["horizon.duration=3h", f"events={events}"])
        grid = build_grid(sc)
        engine = (RequestEngine if fidelity == "request" else FlowEngine)(grid, seed=1)
        engine.run(schedule(engine))
        assert engine.policy.name == "nearest", last  # the switch holds after the cut
        routed = engine.policy.grid  # type: ignore[attr-defined]
        assert routed is engine.routing.routed, last  # ... over the routes of the cut
        assert not np.array_equal(routed.latency_s, grid.latency_s), last
