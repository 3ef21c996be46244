"""Model pooling (``gridsim.pooling``, pooled pools in the grid, economics at each class's
model): several models on shared cards need fewer cards than one pool each, at the same SLO.

Expected values: Erlang C from its own recursion written here (not the module's Poisson
ratio), memory from the catalogue's figures by hand (qwen3-8b: 8.19e9 parameters at one byte,
an H20 96 GiB card of which 0.9 is usable and 0.25 of that kept free of weights), and the
serving model's per-model figures (``loaded_replica``) composed here by the slot formula.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import gridsim as gs
from gridsim.catalog import builtin_catalog
from gridsim.cli import app
from gridsim.grid import build_grid
from gridsim.pooling import (
    ModelLoad,
    compare_pooling,
    pooled_replica,
    size_pool,
)
from gridsim.scenario import ScenarioError
from gridsim.serving import loaded_replica, serving_model, serving_params

CATALOG = builtin_catalog()
H20 = CATALOG.accelerators["h20"]
QWEN8 = CATALOG.models["qwen3-8b"]
PARAMS = serving_params(H20)
SLO_S = 2.0
# ten qwen3-8b-class models with a skewed demand (requests/s), as a model market has
RATES = (8.0, 4.0, 2.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.1, 0.1)
SMALL = [QWEN8.model_copy(update={"id": f"small-{i}", "name": f"small-{i}"}) for i in range(10)]


def erlang_c_recursion(c: int, a: float) -> float:
    """P(wait > 0) of M/M/c: Erlang B by B(k) = a B(k-1) / (k + a B(k-1)), then C."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1 - b))


def replicas_by_hand(rate: float, hold_s: float, slots: int, slo_s: float = SLO_S) -> int:
    """Fewest whole replicas whose M/M/c queue has P(W > slo) <= 0.05 (at least one)."""
    a = rate * hold_s
    n = 1
    while not (
        n * slots > a
        and erlang_c_recursion(n * slots, a) * math.exp(-(n * slots - a) * slo_s / hold_s) <= 0.05
    ):
        n += 1
    return n


# --- Erlang C sizing: the hand-worked case ------------------------------------------------------


def test_hand_worked_pooling_needs_12_cards_where_dedicated_needs_20() -> None:
    """Ten models at 0.4 requests/s each holding a slot 20 s (8 Erlangs each), replicas of 8
    slots on one card, 95 % starting within 2 s. Dedicated: 8 slots are saturated by 8
    Erlangs, so each model needs 2 replicas: 20 cards. Pooled: three models are not resident
    and their requests load weights for 1 s first: 80 + 3 x 0.4 x 1 = 81.2 Erlangs at a mean
    hold of 81.2 / 4 = 20.3 s; 11 replicas (88 slots) leave P(W > 2 s) above 0.05 and 12 (96
    slots) bring it under: 12 cards, 8 fewer (40 %)."""
    dedicated = [size_pool(0.4, 20.0, 8, 1, SLO_S) for _ in range(10)]
    pooled = size_pool(4.0, 20.3, 8, 1, SLO_S)
    assert [s.replicas for s in dedicated] == [replicas_by_hand(0.4, 20.0, 8)] * 10 == [2] * 10
    assert pooled.replicas == replicas_by_hand(4.0, 20.3, 8) == 12
    assert sum(s.cards for s in dedicated) - pooled.cards == 8
    # the figures the module reports are the Erlang C tail of its answer
    tail = erlang_c_recursion(96, 81.2) * math.exp(-(96 - 81.2) * SLO_S / 20.3)
    assert pooled.offered_erlangs == pytest.approx(81.2, rel=1e-12)
    assert pooled.p_start_within_slo == pytest.approx(1 - tail, rel=1e-9)
    eleven = erlang_c_recursion(88, 81.2) * math.exp(-(88 - 81.2) * SLO_S / 20.3)
    assert eleven > 0.05  # one replica fewer misses the SLO


def test_sizing_needs_a_replica_even_for_a_model_nobody_asks_for() -> None:
    """A model on offer keeps a replica; a load at the slots is never enough."""
    assert size_pool(0.0, 20.0, 8, 2, SLO_S).cards == 2
    assert size_pool(0.8, 10.0, 8, 1, SLO_S).replicas >= 2  # 8 Erlangs on 8 slots: unstable


# --- memory: the resident set and the switch --------------------------------------------------


def test_ten_small_models_on_one_h20_keep_seven_resident_and_switch_the_rest() -> None:
    """Room for weights: 0.75 x 0.9 x 96 GiB = 69.58 GB. Eight models (65.52 GB) would fit,
    but three would then be out with no room to load one (9 x 8.19 = 73.71 GB): seven
    resident plus a swap area of one model (8 x 8.19 = 65.52 GB). KV: (0.9 x 96 GiB - 65.52
    GB) x 0.9. A switch loads 8.19 GB over 50 GB/s: 0.1638 s. The three least requested
    models (0.25 + 0.1 + 0.1 of 16.7 requests/s) are the ones out."""
    loads = [ModelLoad(m, r, 1000.0, 300.0) for m, r in zip(SMALL, RATES, strict=True)]
    rep = pooled_replica(H20, loads, PARAMS)
    usable = 0.9 * 96 * 2**30
    assert rep.cards == 1
    assert rep.resident == tuple(f"small-{i}" for i in range(7))
    assert rep.swap_bytes == pytest.approx(8.19e9)
    assert rep.kv_budget_bytes == pytest.approx((usable - 8 * 8.19e9) * 0.9, rel=1e-12)
    assert rep.switch_s("small-9") == pytest.approx(8.19e9 / 50e9, rel=1e-12)
    assert rep.switch_s("small-0") == 0.0
    assert rep.non_resident_share == pytest.approx(0.45 / 16.7, rel=1e-12)
    assert rep.hold_s("small-8") == pytest.approx(rep.compute_hold_s["small-8"] + 0.1638)


def test_models_that_fit_together_are_all_resident_and_never_switch() -> None:
    loads = [ModelLoad(m, 1.0, 1000.0, 300.0) for m in SMALL[:3]]
    rep = pooled_replica(H20, loads, PARAMS)
    assert rep.resident == ("small-0", "small-1", "small-2")
    assert rep.swap_bytes == 0.0 and rep.non_resident_share == 0.0
    usable = 0.9 * 96 * 2**30
    assert rep.kv_budget_bytes == pytest.approx((usable - 3 * 8.19e9) * 0.9, rel=1e-12)


def test_pooled_slots_are_the_hold_weighted_harmonic_mean_of_each_models_slots() -> None:
    """qwen3-8b and qwen3-32b on two H20s: each alone on the pooled KV budget has its own
    slots S_m and hold h_m; the replica gets sum(q h) / sum(q h / S) slots."""
    qwen32 = CATALOG.models["qwen3-32b"]
    loads = [ModelLoad(QWEN8, 3.0, 1000.0, 300.0), ModelLoad(qwen32, 1.0, 2000.0, 500.0)]
    rep = pooled_replica(H20, loads, PARAMS, cards=2)
    assert rep.resident == ("qwen3-8b", "qwen3-32b")  # 8.19 + 32 GB of 139 GB room
    usable = 2 * 0.9 * 96 * 2**30
    assert rep.kv_budget_bytes == pytest.approx((usable - 40.19e9) * 0.9, rel=1e-12)
    q = {"qwen3-8b": 0.75, "qwen3-32b": 0.25}
    slots = {m: rep.loaded[m].slots for m in q}
    hold = {
        "qwen3-8b": 1000 * rep.loaded["qwen3-8b"].prefill_s_per_token
        + 300 * rep.loaded["qwen3-8b"].tpot_s,
        "qwen3-32b": 2000 * rep.loaded["qwen3-32b"].prefill_s_per_token
        + 500 * rep.loaded["qwen3-32b"].tpot_s,
    }
    w = {m: q[m] * hold[m] for m in q}
    assert rep.slots == math.floor(sum(w.values()) / sum(w[m] / slots[m] for m in q))
    assert min(slots.values()) <= rep.slots <= max(slots.values())
    # each model's own serving: at one TPOT target the larger model decodes fewer tokens/s
    big, small = rep.loaded["qwen3-32b"], rep.loaded["qwen3-8b"]
    assert big.slots / big.tpot_s < small.slots / small.tpot_s


def test_no_model_fitting_a_replica_is_a_clear_error() -> None:
    """Llama-3.3-70B (70.6 GB) does not fit beside a KV cache on one H20 (69.6 GB of room),
    nor does qwen3-32b with a swap area for it."""
    loads = [
        ModelLoad(CATALOG.models["qwen3-32b"], 1.0, 1000.0, 300.0),
        ModelLoad(CATALOG.models["llama-3.3-70b"], 1.0, 1000.0, 300.0),
    ]
    with pytest.raises(
        ValueError,
        match=r"no model of the pooled pool fits .*1 x h20.*"
        r"cards_per_replica",
    ):
        pooled_replica(H20, loads, PARAMS, cards=1)


# --- dedicated against pooled from the serving model ----------------------------------------


def test_ten_small_models_pooled_need_3_cards_where_dedicated_need_11() -> None:
    """From the serving model: each dedicated replica is one H20 with the slots and hold
    ``loaded_replica`` gives qwen3-8b; the busiest model (8 requests/s) needs two replicas,
    the others one: 11 cards. Pooled: one queue of 16.7 requests/s on the pooled replica's
    slots, switches in the holds of the three models out: 3 cards. Both sized here by the
    Erlang C recursion."""
    loads = [ModelLoad(m, r, 1000.0, 300.0) for m, r in zip(SMALL, RATES, strict=True)]
    cmp = compare_pooling(H20, loads, PARAMS, SLO_S)
    sm = serving_model(H20, QWEN8, PARAMS)
    lr = loaded_replica(sm, 1000.0, 300.0)
    hold = 1000 * lr.prefill_s_per_token + 300 * lr.tpot_s
    by_hand = [replicas_by_hand(r, hold, lr.slots) for r in RATES]
    assert [cmp.dedicated[f"small-{i}"].replicas for i in range(10)] == by_hand
    assert cmp.dedicated_cards == sum(by_hand) == 11
    rep = cmp.replica
    offered = sum(r * rep.hold_s(f"small-{i}") for i, r in enumerate(RATES))
    pooled = replicas_by_hand(sum(RATES), offered / sum(RATES), rep.slots)
    assert cmp.pooled.replicas == pooled == 3
    assert cmp.pooled_cards == 3 and cmp.saving_cards == 8
    assert cmp.saving_share == pytest.approx(8 / 11)
    assert cmp.pooled.p_start_within_slo >= 0.95
    assert all(s.p_start_within_slo >= 0.95 for s in cmp.dedicated.values())


# --- pooled pools in the grid and in a run ------------------------------------------------------


def _catalog_models(ids: list[str]) -> list[dict[str, Any]]:
    """Catalogue entries for qwen3-8b-class models under new ids."""
    fields = QWEN8.model_dump(exclude={"id", "name", "source", "org"})
    return [{"id": m, "name": m, **fields} for m in ids]


def _scenario(
    tmp_path: Path, pools: list[dict[str, Any]], rates: tuple[float, ...] = RATES, **extra: Any
) -> Path:
    """One region, one node with ``pools``, a class per model ``small-i`` at ``rates[i]``
    requests/s (exponential lengths, 1000 in and 300 out on average, TTFT SLO 2 s)."""
    models = [f"small-{i}" for i in range(len(rates))]
    doc: dict[str, Any] = {
        "name": "pooling",
        "seed": 3,
        "fidelity": "flow",
        "horizon": {"start": "2026-03-02", "duration": "1d", "resolution": "5min"},
        "regions": [{"id": "shanghai"}],
        "catalog": {"models": _catalog_models(models)},
        "nodes": [
            {"id": "yrd", "kind": "intelligent_computing", "site": "yrd_demo_zone", "pools": pools}
        ],
        "network": {"generate": "hub_and_spoke"},
        "demand": {
            "tokens_per_day": 1e9,  # the classes' rates set their volume
            "classes": [
                {
                    "name": f"c{i}",
                    "model": m,
                    "rate_per_s": r,
                    "input_tokens": {"dist": "exponential", "mean": 1000},
                    "output_tokens": {"dist": "exponential", "mean": 300},
                    "slo": {"ttft": "2s"},
                }
                for i, (m, r) in enumerate(zip(models, rates, strict=True))
            ],
        },
        **extra,
    }
    path = tmp_path / "pooling.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _pooled(replicas: int, n: int = 10, **pool: Any) -> list[dict[str, Any]]:
    models = [f"small-{i}" for i in range(n)]
    return [{"id": "pool", "models": models, "accelerator": "h20", "replicas": replicas, **pool}]


def test_a_pooled_pool_is_one_station_each_class_on_its_own_model(tmp_path: Path) -> None:
    """One station with the pooled replica's slots; each class's hold is its model's prefill
    and decode, plus the switch for the three models not resident; the pools table shows
    the models joined with "+"."""
    grid = build_grid(gs.load_scenario(_scenario(tmp_path, _pooled(3))))
    (spec,) = grid.pools
    loads = [ModelLoad(m, r, 1000.0, 300.0) for m, r in zip(SMALL, RATES, strict=True)]
    rep = pooled_replica(H20, loads, PARAMS)
    assert spec.slots_per_replica == rep.slots and spec.slots == 3 * rep.slots
    assert spec.models == tuple(f"small-{i}" for i in range(10)) and spec.pooled
    (note,) = grid.notes  # the run's summary says which models switch
    assert "7 of 10 models resident" in note and "small-7, small-8, small-9" in note
    for c in range(10):
        (stage,) = grid.service.route(c, 0)
        assert stage.station == 0
        assert stage.fixed_s == pytest.approx(0.1638 if c >= 7 else 0.0, rel=1e-12)
        assert stage.per_output_s == pytest.approx(rep.loaded[f"small-{c}"].tpot_s, rel=1e-12)
    table = grid.pools_table()
    assert table.loc[0, "models"] == "+".join(f"small-{i}" for i in range(10))
    assert table.loc[0, "model"] == table.loc[0, "models"]
    assert table.loc[0, "accelerators"] == 3


def test_plain_pools_list_their_one_model(tmp_path: Path) -> None:
    pools = [
        {"id": f"p{i}", "model": f"small-{i}", "accelerator": "h20", "replicas": 1}
        for i in range(10)
    ]
    table = build_grid(gs.load_scenario(_scenario(tmp_path, pools))).pools_table()
    assert list(table["models"]) == list(table["model"]) == [f"small-{i}" for i in range(10)]


def test_pooled_serving_meets_the_slo_on_3_cards_where_dedicated_uses_11(tmp_path: Path) -> None:
    """A day at flow fidelity of the ten-model market: three pooled H20s meet the 2 s TTFT
    SLO for 95 % of requests, as the eleven dedicated ones (two for the busiest model) do;
    two pooled H20s (186 slots for about 252 Erlangs) do not."""
    dedicated = [
        {"id": f"p{i}", "model": f"small-{i}", "accelerator": "h20", "replicas": 2 if i == 0 else 1}
        for i in range(10)
    ]
    runs = {}
    for name, pools in (("pooled", _pooled(3)), ("dedicated", dedicated), ("short", _pooled(2))):
        folder = tmp_path / name
        folder.mkdir()
        runs[name] = gs.run(gs.load_scenario(_scenario(folder, pools)))
    cards = {k: float(r.pools["accelerators"].sum()) for k, r in runs.items()}
    assert cards == {"pooled": 3.0, "dedicated": 11.0, "short": 2.0}
    for name in ("pooled", "dedicated"):
        s = runs[name].summary
        assert s["sla_attainment"] >= 0.95, name
        assert s["ttft_s"]["p95"] <= SLO_S, name
    assert runs["short"].summary["sla_attainment"] < 0.95
    served = {k: r.summary["tokens"]["output"]["served"] for k, r in runs.items()}
    assert served["pooled"] == pytest.approx(served["dedicated"], rel=1e-3)


def test_pooled_flows_are_priced_at_each_classs_model(tmp_path: Path) -> None:
    """Two models of different list prices in one pooled pool: revenue is each class's
    tokens at its own model's prices, and by_model splits the pool's cost by served tokens
    (the parts add up to the pool's)."""
    extra = {
        "catalog": {
            "models": [
                *_catalog_models(["small-0"]),
                {
                    **_catalog_models(["small-1"])[0],
                    "price_in_cny_per_m": 4.0,
                    "price_out_cny_per_m": 16.0,
                },
            ]
        }
    }
    path = _scenario(tmp_path, _pooled(1, n=2), rates=(1.0, 1.0), **extra)
    result = gs.run(gs.load_scenario(path))
    flows = result.flows.groupby("class")[["input_tokens", "output_tokens"]].sum()
    expected = (
        flows.loc["c0", "input_tokens"] * 0.5 + flows.loc["c0", "output_tokens"] * 2.0
    ) / 1e6 + (
        flows.loc["c1", "input_tokens"] * 4.0 + flows.loc["c1", "output_tokens"] * 16.0
    ) / 1e6
    econ = result.summary["economics"]
    assert econ["revenue_cny"] == pytest.approx(expected, rel=1e-9)
    by_model = econ["by_model"]
    assert set(by_model) == {"small-0", "small-1"}
    assert by_model["small-1"]["revenue_cny"] == pytest.approx(
        (flows.loc["c1", "input_tokens"] * 4.0 + flows.loc["c1", "output_tokens"] * 16.0) / 1e6
    )
    tokens = flows.sum(axis=1)
    share = tokens["c0"] / tokens.sum()
    total_cost = econ["cost_cny"]
    assert by_model["small-0"]["cost_cny"] == pytest.approx(total_cost * share, rel=1e-9)
    assert sum(m["cost_cny"] for m in by_model.values()) == pytest.approx(total_cost, rel=1e-12)


# --- what a pooled pool refuses -----------------------------------------------------------------


def test_a_disaggregated_pooled_pool_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    path = _scenario(tmp_path, _pooled(2, deployment={"mode": "disaggregated"}))
    with pytest.raises(ScenarioError) as err:
        build_grid(gs.load_scenario(path))
    (problem,) = err.value.problems
    assert problem.path == ("nodes", 0, "pools", 0, "deployment", "mode")
    assert "co-located" in problem.message and "drop deployment.mode" in problem.message
    out = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert out.exit_code == 2
    assert "co-located" in out.output
    assert not (tmp_path / "out").exists()


def test_models_too_large_for_the_replica_are_refused_where_they_are_named(tmp_path: Path) -> None:
    pools = [
        {
            "id": "pool",
            "models": ["small-0", "llama-3.3-70b"],
            "accelerator": "h20",
            "replicas": 1,
            "deployment": {"cards_per_replica": 1},
        }
    ]
    with pytest.raises(ScenarioError) as err:
        build_grid(gs.load_scenario(_scenario(tmp_path, pools, rates=(1.0,))))
    (problem,) = err.value.problems
    assert problem.path == ("nodes", 0, "pools", 0, "models")
    assert "no model of the pooled pool fits" in problem.message


def test_a_class_of_another_model_sent_to_a_pooled_pool_is_a_problem(tmp_path: Path) -> None:
    """``serves`` may send any class to a pool; at a pooled pool the class's model must be
    one the pool holds (its hold is that model's)."""
    pools = [
        {**_pooled(1, n=2)[0], "serves": ["c0", "c1", "c2"]},
        {"id": "other", "model": "small-2", "accelerator": "h20", "replicas": 1},
    ]
    with pytest.raises(ScenarioError) as err:
        build_grid(gs.load_scenario(_scenario(tmp_path, pools, rates=(1.0, 1.0, 1.0))))
    (problem,) = err.value.problems
    assert problem.path == ("demand", "classes", 2)
    assert "pooled pool 'yrd/pool'" in problem.message and "'small-2'" in problem.message


def test_the_switch_comes_before_the_first_token_at_both_fidelities(tmp_path: Path) -> None:
    """A request whose model is not resident loads its weights before its prefill: with a
    10 s switch (switch_s), its first token comes 10 s later than a resident model's of the
    same lengths. Hand check: same lengths and hold per token (all classes are copies of
    qwen3-8b), so TTFT(switching) - TTFT(resident) = 10 s once no request waits (a lightly
    loaded pool: replicas enough that nobody queues)."""
    rates = (0.5,) * 7 + (0.05,) * 3  # small-7 to 9 are the least requested
    pools = [
        {
            "id": "pool",
            "models": [f"small-{i}" for i in range(10)],
            "accelerator": "h20",
            "replicas": 4,
            "switch_s": "10s",
            "deployment": {"cards_per_replica": 1},
        }
    ]
    path = _scenario(tmp_path, pools, rates, outputs={"requests": True})
    grid = build_grid(gs.load_scenario(path))
    switching = [c for c in range(10) if grid.service.route(c, 0)[0].fixed_s > 0]
    assert switching == [7, 8, 9]  # seven resident on one H20, as the memory test above
    # the service table's mean first token includes the switch
    gap = grid.service.first_token_s(7, 0) - grid.service.first_token_s(0, 0)
    assert gap == pytest.approx(10.0, rel=1e-9)
    for fidelity in ("flow", "request"):
        run = gs.run(
            gs.load_scenario(path, sets=["horizon.duration=2h"]), fidelity=fidelity, seed=5
        )
        ttft = {c: run.summary["by_class"][f"c{c}"]["ttft_s"]["mean"] for c in (0, 7)}
        assert ttft[7] - ttft[0] == pytest.approx(10.0, abs=0.5), (fidelity, ttft)
