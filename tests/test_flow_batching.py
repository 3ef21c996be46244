"""The flow engine's steady stretches, batched: the same results as one clock hour at a time.

A steady stretch (nothing queued) takes the rest of its block at once: the policy's split of
every distinct hour of demand in one ``allocate_many`` call, and their steady-state laws in one
``_laws`` call. Each law depends only on its own hour, so the results must not depend on how
many hours go together (``STRETCH_CELLS``: 1 makes every call one hour, as before batching):
checked on the baseline (latency-bounded water-filling, FCFS pools) and on the token market
(three priority tiers with patience and a maximum wait, pooled models, overloaded three times
over), in blocks of 12 hours.

The compiled water-filling (``gridsim.policies.fill``) is checked against the rule written out
in plain Python, demand by demand.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridsim.engine import flow
from gridsim.engine.flow import FlowEngine
from gridsim.grid import build_grid
from gridsim.policies.fill import water_fill
from gridsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
STRETCH_CELLS = flow.STRETCH_CELLS


def _run(path: Path, sets: list[str], monkeypatch: pytest.MonkeyPatch, cells: int) -> Any:
    monkeypatch.setattr(flow, "BLOCKS_PER_RUN", 4)  # 2 days in 4 blocks: 12 hours each
    monkeypatch.setattr(flow, "STRETCH_CELLS", cells)
    grid = build_grid(load_scenario(path, sets=sets))
    engine = FlowEngine(grid, seed=1)
    out = engine.run()
    return engine.recorder, out.summary


def _token_market(tmp_path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "scenarios" / "tools"))
    import make_token_market

    text = make_token_market.documents(top=5)[make_token_market.OUT]
    base = (ROOT / "scenarios" / "baseline.yaml").as_posix()
    path = tmp_path / "token-market.yaml"
    path.write_text(text.replace("extends: baseline.yaml", f"extends: {base}"), "utf-8")
    return path


@pytest.mark.parametrize("which", ["baseline", "token-market"])
def test_batched_stretches_equal_hour_by_hour(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ROOT / "scenarios" / "baseline.yaml" if which == "baseline" else _token_market(tmp_path)
    sets = ["horizon.duration=2d"]
    if which == "token-market":  # overloaded: the tiers shed, the decomposition's passes run
        sets.append("events=[{kind: demand_shock, at: 0s, factor: 3.0}]")
    calls: list[int] = []
    laws = FlowEngine._laws

    def counted(self: FlowEngine, new: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(new.shape[0])
        return laws(self, new, *args, **kwargs)

    monkeypatch.setattr(FlowEngine, "_laws", counted)
    one, a = _run(path, sets, monkeypatch, cells=1)
    assert max(calls) == 1  # one hour a call
    calls.clear()
    many, b = _run(path, sets, monkeypatch, cells=STRETCH_CELLS)
    assert max(calls) >= 12  # a 12-hour block at once
    for name in ("arrived", "dropped", "abandoned", "input_demanded"):
        np.testing.assert_allclose(
            getattr(many, name), getattr(one, name), rtol=1e-11, err_msg=name
        )
    for key in ("served", "dropped", "abandoned"):
        assert math.isclose(b["requests"][key], a["requests"][key], rel_tol=1e-11), key
    for key in ("mean", "p50", "p95", "p99"):
        assert math.isclose(b["latency_s"][key], a["latency_s"][key], rel_tol=1e-9), key


def _fill_reference(
    demand: np.ndarray,
    order: list[list[list[int]]],
    usable: np.ndarray,
    service_s: np.ndarray,
    room0: np.ndarray,
    slots: np.ndarray,
    alive: np.ndarray,
) -> np.ndarray:
    """Water-filling as the rule says it, in plain Python: classes, then regions, each demand
    fills its pools in order to their room; the rest is spread over its pools up by slots."""
    n_r, n_c = demand.shape
    shares = np.zeros((n_r, n_c, room0.size))
    room = room0.copy()
    for c in range(n_c):
        for r in range(n_r):
            if demand[r, c] <= 0:
                continue
            left = 1.0
            for p in order[c][r]:
                if not usable[r, c, p] or room[p] <= 0:
                    continue
                work = demand[r, c] * service_s[c, p]
                take = min(left, room[p] / work)
                shares[r, c, p] += take
                room[p] -= take * work
                left -= take
                if left <= 1e-12:
                    break
            up = [p for p in order[c][r] if alive[p]]
            if left > 1e-12 and up:
                total = sum(slots[p] for p in up)
                for p in up:
                    shares[r, c, p] += left * slots[p] / total
    return shares


def test_water_fill_follows_the_rule_demand_by_demand() -> None:
    rng = np.random.default_rng(7)
    n_r, n_c, n_p, n_u = 6, 4, 7, 3
    order = [
        [list(rng.permutation(n_p)[: rng.integers(1, n_p + 1)]) for _ in range(n_r)]
        for _ in range(n_c)
    ]
    slots = rng.uniform(5, 50, n_p)
    alive = rng.random(n_p) > 0.15
    usable = (rng.random((n_r, n_c, n_p)) > 0.2) & alive[None, None, :]
    service_s = rng.uniform(0.5, 8.0, (n_c, n_p))
    room0 = slots * 0.95 - rng.uniform(0, 10, n_p)  # some pools start full (queued work)
    demand = rng.uniform(0, 3, (n_u, n_r, n_c)) * (rng.random((n_u, n_r, n_c)) > 0.1)
    pairs = [(c, r) for c in range(n_c) for r in range(n_r)]
    width = max(len(order[c][r]) for c, r in pairs)
    cand = np.full((len(pairs), width), n_p, dtype=np.intp)
    use = np.zeros((len(pairs), width), dtype=bool)
    for d, (c, r) in enumerate(pairs):
        cand[d, : len(order[c][r])] = order[c][r]
        use[d, : len(order[c][r])] = usable[r, c, order[c][r]]
    compact = np.zeros((n_u, *cand.shape))  # demand d's share of its pool cand[d, j]
    water_fill(
        demand,
        np.array([r for _, r in pairs], dtype=np.intp),
        np.array([c for c, _ in pairs], dtype=np.intp),
        cand,
        use,
        service_s,
        room0,
        slots,
        alive,
        compact,
    )
    shares = np.zeros((n_u, n_r, n_c, n_p))
    for d, (c, r) in enumerate(pairs):
        for j, p in enumerate(order[c][r]):
            shares[:, r, c, p] = compact[:, d, j]
    assert not compact[:, cand == n_p].any()  # nothing on the padding
    for u in range(n_u):
        want = _fill_reference(demand[u], order, usable, service_s, room0, slots, alive)
        np.testing.assert_allclose(shares[u], want, rtol=1e-12, atol=1e-15)
    # every demand is placed whole (on pools up) unless none of its pools is up
    placed = shares.sum(axis=3)
    reachable = np.array(
        [[any(alive[p] for p in order[c][r]) for c in range(n_c)] for r in range(n_r)]
    )
    expect = np.where((demand > 0) & reachable[None], 1.0, 0.0)
    np.testing.assert_allclose(placed, expect, atol=1e-9)


def test_policy_cells_equal_the_dense_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A water-filling policy gives the flow engine its split on its candidate cells
    (``allocate_cells``); without it the engine finds the cells in the dense split. The two
    runs agree to the last bit (the token market overloaded three times over: every tier
    sheds, the fill spills)."""
    from gridsim.policies.builtin import EastWest

    sets = ["horizon.duration=2d", "events=[{kind: demand_shock, at: 0s, factor: 3.0}]"]
    path = _token_market(tmp_path)
    calls: list[int] = []
    cells = EastWest.allocate_cells

    def counted(self: Any, *args: Any) -> Any:
        calls.append(1)
        return cells(self, *args)

    monkeypatch.setattr(EastWest, "allocate_cells", counted)
    sparse, a = _run(path, sets, monkeypatch, cells=STRETCH_CELLS)
    assert calls  # the engine took the cells
    monkeypatch.setattr(flow, "_cells_method", lambda policy: None)  # the dense split
    dense, b = _run(path, sets, monkeypatch, cells=STRETCH_CELLS)
    for name in ("served", "dropped", "abandoned", "met_slo", "busy"):
        np.testing.assert_array_equal(getattr(sparse, name), getattr(dense, name), err_msg=name)
    assert a == b


def test_cells_only_from_the_class_of_the_rule() -> None:
    """The engine takes ``allocate_cells`` only from the class that defines ``allocate``: a
    subclass that changes the rule without its own cells must not get its parent's."""
    from gridsim.policies.base import make_policy
    from gridsim.policies.builtin import EastWest

    grid = build_grid(load_scenario(ROOT / "scenarios" / "baseline.yaml"))

    class Mine(EastWest):
        def allocate(self, state: Any) -> Any:
            return super().allocate(state)

    assert flow._cells_method(make_policy("east_west", grid)) is not None
    assert flow._cells_method(make_policy("nearest", grid)) is None  # no cells of its own
    assert flow._cells_method(Mine(grid)) is None


def test_policy_split_follows_the_rule() -> None:
    """The east-west policy's split on the baseline (its cells, ``allocate_cells``, and the
    dense split built from them), hour by hour against the rule in plain Python."""
    from gridsim.policies.base import FILL_UTILISATION, FlowState, make_policy

    grid = build_grid(load_scenario(ROOT / "scenarios" / "baseline.yaml"))
    policy: Any = make_policy("east_west", grid)
    n_r, n_c, n_p = len(grid.region_ids), len(grid.classes), len(grid.pools)
    rng = np.random.default_rng(5)
    slots = np.array([max(p.slots, 1) for p in grid.pools], dtype=np.float64)
    alive = rng.random(n_p) > 0.1
    queued = rng.uniform(0, 0.5, n_p) * slots
    state = FlowState(np.zeros((n_r, n_c)), policy.service_s, slots * alive, queued, alive)
    # light to heavy: a thousandth of the slots' worth to ten times it (spills everywhere)
    per_slot = slots.sum() / policy.service_s.mean() / (n_r * n_c)
    demand = rng.uniform(0, 2, (3, n_r, n_c)) * np.array([1e-3, 0.5, 10.0])[:, None, None]
    demand *= per_slot
    dense = policy.allocate_many(state, demand)
    cells, on_cells = policy.allocate_cells(state, demand)
    assert np.array_equal(np.sort(cells), cells)
    assert not dense.reshape(3, -1)[:, np.setdiff1d(np.arange(dense[0].size), cells)].any()
    np.testing.assert_array_equal(dense.reshape(3, -1)[:, cells], on_cells)
    usable = policy.network_fits & alive[None, None, :]
    room0 = slots * alive * FILL_UTILISATION - queued
    for u in range(3):
        order = [[list(policy.west_first[c][r]) for r in range(n_r)] for c in range(n_c)]
        want = _fill_reference(demand[u], order, usable, policy.service_s, room0, slots, alive)
        np.testing.assert_allclose(dense[u], want, rtol=1e-12, atol=1e-15)
