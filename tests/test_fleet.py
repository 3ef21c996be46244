"""The fleet inventory and how fleet_share pools are sized from it (gridsim/fleet.py)."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

import gridsim as gs
from gridsim.fleet import Figure, Shipment, inventory
from gridsim.grid import build_grid

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "scenarios" / "baseline.yaml"


def test_case_interpolates_low_central_high() -> None:
    f = Figure(100.0, 300.0, 400.0, "s", "")
    assert (f.at("low"), f.at("central"), f.at("high")) == (100.0, 300.0, 400.0)
    assert f.at(0.0) == 100.0 and f.at(0.5) == 300.0 and f.at(1.0) == 400.0
    assert f.at(0.25) == pytest.approx(200.0)  # half way from low to central
    assert f.at(0.75) == pytest.approx(350.0)  # half way from central to high
    with pytest.raises(ValueError, match="outside"):
        f.at(1.5)
    with pytest.raises(ValueError, match="unknown case"):
        f.at("median")


def test_shipments_count_pro_rata_to_the_as_of_date() -> None:
    s = Shipment("x", dt.date(2025, 1, 1), dt.date(2025, 12, 31), Figure(0, 365, 365, "", ""))
    assert s.share_by(dt.date(2024, 6, 1)) == 0.0
    assert s.share_by(dt.date(2025, 1, 11)) == pytest.approx(10 / 365)  # ten whole days shipped
    assert s.share_by(dt.date(2026, 3, 2)) == 1.0


def test_china_inventory_central_by_hand() -> None:
    inv = inventory("china")
    march = dt.date(2026, 3, 2)
    # fleet.csv by hand: H20 700,000 (2024) + 300,000 (2025, before the ban); Ascend 500,000 +
    # 1,200,000 910B equivalents; A800 100,000 (2023)
    assert inv.cards("h20", march, "central") == pytest.approx(1_000_000)
    assert inv.cards("ascend-910b", march, "central") == pytest.approx(1_700_000)
    assert inv.cards("a100", march, "low") == pytest.approx(50_000)
    assert inv.cards("h20", march, "low") == pytest.approx(330_000 + 100_000)
    # In mid-2024 only part of 2024's H20 had shipped
    mid = dt.date(2024, 7, 1)
    assert inv.cards("h20", mid, "central") == pytest.approx(700_000 * 182 / 366)
    assert inv.use_share("h20", "serving", "central") == 0.6
    assert inv.use_share("ascend-910b", "serving", "high") == 0.7


def test_supply_rows_pro_rata_by_year_and_unknown_years() -> None:
    inv = inventory("china")
    # the April 2025 export ban: no H20 can be ordered afterwards
    assert inv.supply_cards("h20", 2026, "high") == 0.0
    assert inv.supply_cards("h20", 2024, "central") is None  # before the ban: no supply row
    assert inv.supply_cards("ascend-910b", 2026, "central") is None  # no sourced figure
    # a window covering part of a year counts that part of its yearly rate
    row = Shipment("x", dt.date(2027, 7, 2), dt.date(2030, 12, 31), Figure(365, 365, 365, "", ""))
    part = replace(inv, supplies=(row,))
    assert part.supply_cards("x", 2027, "central") == pytest.approx(183)  # Jul 2 - Dec 31
    assert part.supply_cards("x", 2028, "central") == pytest.approx(365)


def _flows(tmp_path: Path, pools: str, fleet: str = "fleet: {inventory: china}") -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(
        f"""name: f
horizon: {{start: 2026-03-02, duration: 1h, resolution: 1h}}
fidelity: flow
regions: [{{id: r, lat: 30, lon: 110}}]
{fleet}
nodes:
  - id: n
    kind: intelligent_computing
    lat: 30
    lon: 110
    pools:
{pools}
demand:
  tokens_per_day: 1e9
  region_weights: equal
  classes:
    - name: chat
      share: 1.0
      model: deepseek-v3
      input_tokens: {{dist: lognormal, mean: 1000, sigma: 1.0}}
      output_tokens: {{dist: lognormal, mean: 200, sigma: 0.8}}
      slo: {{ttft: 2s, e2e: 60s}}
""",
        encoding="utf-8",
    )
    return path


def test_pool_replicas_follow_the_fleet(tmp_path: Path) -> None:
    pools = """      - {id: a, model: deepseek-v3, accelerator: h20, fleet_share: 0.25}
      - {id: b, model: deepseek-v3, accelerator: h20, fleet_share: 0.5}"""
    grid = build_grid(gs.load_scenario(_flows(tmp_path, pools)))
    per = {p.pool: p for p in grid.fleet_pools}
    cpr = per["a"].cards_per_replica
    assert cpr == 16  # DeepSeek-V3 on H20: one EP group of two 8-card servers
    # 1.0 M H20 x 0.6 serving x 0.25 = 150,000 cards -> floor(150,000 / 16) replicas
    assert per["a"].cards == pytest.approx(150_000)
    assert per["a"].replicas == math.floor(150_000 / cpr)
    assert per["b"].replicas == math.floor(300_000 / cpr)
    spec = next(p for p in grid.pools if p.pool_id == "a")
    assert spec.replicas == per["a"].replicas
    # Half the serving share, half the replicas (to the replica)
    halved = gs.load_scenario(
        _flows(tmp_path, pools, "fleet: {inventory: china, serving_share: 0.3}")
    )
    per2 = {p.pool: p for p in build_grid(halved).fleet_pools}
    assert per2["b"].replicas == math.floor(150_000 / cpr)


def test_fleet_errors_are_clear(tmp_path: Path) -> None:
    both = "      - {id: a, model: deepseek-v3, accelerator: h20, fleet_share: 0.5, replicas: 3}"
    with pytest.raises(gs.ScenarioError, match="not both"):
        gs.load_scenario(_flows(tmp_path, both))
    over = """      - {id: a, model: deepseek-v3, accelerator: h20, fleet_share: 0.7}
      - {id: b, model: deepseek-v3, accelerator: h20, fleet_share: 0.4}"""
    with pytest.raises(gs.ScenarioError, match=r"adds up to 1\.1"):
        gs.load_scenario(_flows(tmp_path, over))
    one = "      - {id: a, model: deepseek-v3, accelerator: h20, fleet_share: 0.5}"
    with pytest.raises(gs.ScenarioError, match="no fleet: block"):
        gs.load_scenario(_flows(tmp_path, one, fleet=""))
    h800 = "      - {id: a, model: deepseek-v3, accelerator: h800, fleet_share: 0.5}"
    with pytest.raises(gs.ScenarioError, match="has no 'h800' cards"):
        gs.load_scenario(_flows(tmp_path, h800))
    with pytest.raises(gs.ScenarioError, match="case"):
        gs.load_scenario(_flows(tmp_path, one, fleet="fleet: {case: 1.5}"))


def test_baseline_split_is_the_demand_work_split() -> None:
    """The baseline's fleet_shares divide each node's cards over its models as the March 2026
    demand's card-seconds do on that accelerator (the comment in baseline.yaml): recompute that
    split from the grid's service table and compare it with the YAML's shares."""
    sc = gs.load_scenario(BASELINE)
    grid = build_grid(sc)
    work: dict[str, dict[str, float]] = {}
    for c, cls in enumerate(sc.demand.classes):
        if cls.kind == "job":
            continue
        tokens = grid.mean_input_tokens[c] + grid.mean_output_tokens[c]
        rate_per_s = sc.demand.tokens_per_day * cls.share / tokens / 86400
        for acc in ("h20", "ascend-910b"):
            p = next(
                i
                for i, s in enumerate(grid.pools)
                if grid.serves[c, i] and s.accelerator == acc and s.slots > 0
            )
            spec = grid.pools[p]
            assert spec.serving is not None
            cards_per_slot = spec.serving.accelerators_per_replica / spec.slots_per_replica
            held = rate_per_s * grid.service.mean_s(c, p) * cards_per_slot
            work.setdefault(acc, {})
            work[acc][str(cls.model)] = work[acc].get(str(cls.model), 0.0) + held
    text = BASELINE.read_text("utf-8")
    for node, acc in (("zhangjiakou", "h20"), ("horinger", "ascend-910b")):
        block = text[text.index(f"  - id: {node}") :]
        block = block[: block.index("\n  - id:", 1)]
        shares = {
            m: float(v)
            for m, v in re.findall(
                r"model: ([\w.\-]+), accelerator: [\w\-]+, fleet_share: ([0-9.]+)", block
            )
        }
        total = sum(work[acc].values())
        node_total = sum(shares.values())
        for model, share in shares.items():
            assert share / node_total == pytest.approx(work[acc][model] / total, abs=2e-3), (
                node,
                model,
            )
    # the header's percentages are this split, to the 0.1 %
    models = ("deepseek-v3", "kimi-k2.5", "qwen3-235b-a22b")
    pct = {a: [f"{100 * work[a][m] / sum(work[a].values()):.1f}" for m in models] for a in work}
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    h20, ascend = pct["h20"], pct["ascend-910b"]
    assert (
        f"H20 {h20[0]} % DeepSeek-V3 (chat, coding) / {h20[1]} % Kimi-K2.5 (agent) / "
        f"{h20[2]} % Qwen3-235B (batch); Ascend {' / '.join(ascend)} %"
    ) in header


def test_baseline_capacity_traces_to_the_inventory() -> None:
    result = gs.run(
        gs.load_scenario(BASELINE, sets=["horizon.duration=1h", "horizon.resolution=1h"])
    )
    fleet = result.summary["fleet"]
    h20 = fleet["by_accelerator"]["h20"]
    assert h20["cards"] == pytest.approx(1_000_000) and h20["serving_share"] == 0.6
    # Every H20 serving card is assigned, less what whole replicas leave over
    assert 0 <= h20["serving_cards"] - h20["assigned_cards"] < 16 * 10
    pools = result.pools.set_index("pool")
    for row in fleet["pools"]:
        spec = pools.loc[f"{row['node']}/{row['pool']}"]
        assert spec["replicas"] == row["replicas"]
        assert row["replicas"] == math.floor(row["cards"] / row["cards_per_replica"] + 1e-6)


def test_efficiency_scale_keeps_the_replica_and_raises_capacity() -> None:
    # the Monte Carlo's serving.efficiency_scale (0.85-1.15): a faster draw serves more from
    # the same cards; it never re-sizes the replica (it once picked 32-card replicas above
    # 1.035 here, with 62 % less throughput a card)
    per_card = []
    for scale in (0.85, 1.0, 1.03, 1.04, 1.1, 1.15):
        grid = build_grid(gs.load_scenario(BASELINE, sets=[f"serving.efficiency_scale={scale}"]))
        i = grid.pool_index("qingyang", "llm")
        pool = grid.pools[i]
        assert pool.serving is not None and pool.serving.accelerators_per_replica == 64
        hold = grid.service.station_holds(len(grid.pools))[0, i]
        per_card.append(pool.slots_per_replica / hold / pool.serving.accelerators_per_replica)
    assert per_card == sorted(per_card) and per_card[0] < per_card[-1]


def test_efficiency_scale_scales_the_calibrated_shares(tmp_path: Path) -> None:
    from gridsim.catalog import builtin_catalog
    from gridsim.scenario.schema import Deployment
    from gridsim.service import deployment_params

    h20 = builtin_catalog().accelerators["h20"]
    base = deployment_params(h20, Deployment())
    scaled = deployment_params(h20, Deployment(efficiency_scale=0.8))
    assert scaled.prefill_mfu == pytest.approx(0.8 * base.prefill_mfu)
    assert scaled.decode_mfu == pytest.approx(0.8 * base.decode_mfu)
    assert scaled.mem_bw_util == pytest.approx(0.8 * base.mem_bw_util)
    assert base.forward_overhead_s > 0  # H20 / SGLang: fitted on two batch sizes
    assert scaled.forward_overhead_s == pytest.approx(base.forward_overhead_s / 0.8)
    capped = deployment_params(h20, Deployment(efficiency_scale=2.0))
    assert capped.mem_bw_util == min(2 * base.mem_bw_util, 1.0)  # no share above the peak
    # The scenario-wide scale acts as every pool's own: slower serving, longer holds
    pools = "      - {id: a, model: deepseek-v3, accelerator: h20, replicas: 10}"
    path = _flows(tmp_path, pools, fleet="")
    holds = {}
    for sets in (
        [],
        ["serving.efficiency_scale=0.8"],
        ["nodes[n].pools[a].deployment.efficiency_scale=0.8"],
    ):
        grid = build_grid(gs.load_scenario(path, sets=sets))
        holds[len(sets) and sets[0].split("=")[0]] = grid.service.mean_s(0, 0)
    values = list(holds.values())
    assert values[1] > values[0] and values[1] == pytest.approx(values[2])
