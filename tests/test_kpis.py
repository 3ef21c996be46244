"""The KPI registry: every leaf of summary.json is a KPI or metadata, per-entity blocks map onto
the national KPIs, and compare, sweep, regress and the CLI read their KPI lists from it."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import gridsim as gs
from gridsim import compare, kpis, regress
from gridsim.kpis import REGISTRY, Kpi

sweep = importlib.import_module("gridsim.sweep")  # gridsim.sweep is also the API's function

ROOT = Path(__file__).resolve().parents[1]


def _uncovered(summary: dict[str, Any]) -> list[str]:
    """Leaves that are numbers, dates, flags or null (a number or date when present) and are
    neither a registry KPI nor metadata. Labels (ids in rows) are not KPIs."""
    missing = []
    for path, leaf in kpis.leaves(summary):
        if isinstance(leaf, str) and not kpis.is_date(leaf):
            continue
        if isinstance(leaf, list) and not leaf:
            continue
        if kpis.is_metadata(path) or kpis.kpi_for_path(path) is not None:
            continue
        missing.append(".".join(path))
    return missing


@pytest.fixture(scope="module")
def summaries() -> dict[str, dict[str, Any]]:
    """A request-fidelity M/M/c run and a 3-day flow baseline (what `gridsim run` writes)."""
    mmc = gs.load_scenario(
        ROOT / "scenarios" / "validation" / "mmc.yaml", sets=["horizon.duration=30min"]
    )
    base = gs.load_scenario(
        ROOT / "scenarios" / "baseline.yaml",
        sets=["horizon.duration=3d", "outputs.figures=false"],
    )
    return {"mmc": gs.run(mmc).summary, "baseline": gs.run(base).summary}


def test_every_leaf_of_real_summaries_is_registered(summaries: dict[str, Any]) -> None:
    for name, summary in summaries.items():
        assert _uncovered(summary) == [], name
    assert summaries["mmc"]["fidelity"] == "request"
    assert summaries["baseline"]["fidelity"] == "flow"


# The blocks the other parts add (shared contracts), with made-up values.
CONTRACT = {
    "capacity": {
        "definition": "the first hour ...",
        "shortfall_at": "2026-03-17T04:00:00",
        "shortfall_at_s": 1310400.0,
        "shortfall_day": 15.1667,
        "shortfall_model": "deepseek-v3",
        "shortfall_by_region": {"henan": "2026-03-18T00:00:00", "tibet": None},
        "headroom": {"mean": 0.2, "min": -0.1},
        "unserved_tokens": 12,
        "by_model": {
            "deepseek-v3": {
                "shortfall_at": "2026-03-17T04:00:00",
                "shortfall_at_s": 1310400.0,
                "peak_demand_erlangs": 1200.0,
                "slo_capacity_erlangs": 1000.0,
            }
        },
        "by_hub": {"yrd": {"shortfall_at": None, "shortfall_at_s": None}},
        "gap": [
            {
                "hub": "yrd",
                "model": "deepseek-v3",
                "accelerator": "h20",
                "cards_to_add": 160,
                "replicas_to_add": 20,
                "peak_demand_erlangs": 1200.0,
                "slo_capacity_erlangs": 1000.0,
                "peak_at": "2026-04-30T20:00:00",
            }
        ],
        "gap_cards": 160,
    },
    "economics": {
        "it_power_kw_start": 1.0e6,
        "it_power_kw_end": 1.1e6,
        "by_model": {
            "deepseek-v3": {
                "tokens": 1e12,
                "cost_cny": 2e6,
                "revenue_cny": 3e6,
                "cost_cny_per_m_tokens": 2.0,
                "list_price_cny_per_m_tokens": 3.0,
                "margin_cny": 1e6,
            }
        },
    },
    "fleet": {
        "inventory": "china-2025",
        "case": "central",
        "as_of": "2025-12-31",
        "by_accelerator": {
            "h20": {
                "cards": 1e6,
                "serving_share": 0.6,
                "serving_cards": 6e5,
                "assigned_cards": 5.9e5,
            }
        },
        "pools": [
            {
                "node": "guian",
                "pool": "v3",
                "model": "deepseek-v3",
                "accelerator": "h20",
                "fleet_share": 0.1,
                "cards": 59000.0,
                "cards_per_replica": 8,
                "replicas": 7375,
            }
        ],
    },
    "uncertainty": {
        "draws": 20,
        "parameters": [{"path": "demand.growth.rate", "dist": "triangular", "low": 0.05}],
        "bands": {
            "shortfall_day": {"p10": 10.0, "p50": 15.0, "p90": None, "unit": "d", "censored": 3},
            "sla_attainment": {"p10": 0.9, "p50": 0.95, "p90": 0.99, "unit": "%", "censored": 0},
        },
    },
    "topology": {
        "targets_ms": {"city": 1.0, "region": 5.0, "hub": 20.0},
        "by_region": {
            "henan": {
                "nearest_node": "zhengzhou_airport",
                "nearest_ms": 0.4,
                "city_node": "zhengzhou_airport",
                "city_ms": 0.4,
                "meets_city": True,
                "meets_region": True,
                "meets_hub": True,
            }
        },
        "regions_meeting": {"city": 9, "region": 31, "hub": 31},
        "regions": 31,
    },
}


def test_contract_blocks_are_registered() -> None:
    assert _uncovered(CONTRACT) == []
    by_path = kpis.kpi_for_path
    assert by_path(("capacity", "shortfall_day")) is REGISTRY["shortfall_day"]
    assert by_path(("capacity", "by_model", "m", "shortfall_at_s")) is REGISTRY["shortfall_at_s"]
    assert by_path(("capacity", "gap", "0", "cards_to_add")) is REGISTRY["gap_cards_to_add"]
    assert by_path(("economics", "by_model", "m", "cost_cny")) is REGISTRY["cost_cny"]
    band = by_path(("uncertainty", "bands", "shortfall_day", "p90"))
    assert band is not None and band.name == "shortfall_day_p90" and band.unit == "d"
    assert by_path(("uncertainty", "bands", "not_a_kpi", "p10")) is None
    assert by_path(("capacity", "no_such_key")) is None


def test_entity_blocks_map_onto_the_national_kpi() -> None:
    p95 = REGISTRY["latency_p95_s"]
    assert kpis.kpi_for_path(("by_class", "chat", "latency_s", "p95")) is p95
    assert kpis.kpi_for_path(("by_pool", "guian/v3", "latency_s", "p95")) is p95
    entries = kpis.entries_for(
        {"latency_s": {"p95": 3.0}, "by_class": {"chat": {"latency_s": {"p95": 2.0}}}}
    )
    assert [(e.key, e.value, e.entity_kind, e.entity_id) for e in entries] == [
        ("latency_p95_s", 3.0, "", ""),
        ("by_class.chat.latency_p95_s", 2.0, "by_class", "chat"),
    ]


def test_value_reads_scalars_and_entity_maps() -> None:
    assert kpis.value(CONTRACT, "gap_cards") == 160
    assert kpis.value(CONTRACT, "shortfall_day") == 15.1667
    assert kpis.value(CONTRACT, "latency_p95_s") is None  # not in this summary
    assert kpis.value(CONTRACT, "model_peak_demand_erlangs") == {"deepseek-v3": 1200.0}
    assert kpis.value(CONTRACT, "gap_cards_to_add") == {"0": 160}


def test_registry_is_well_formed() -> None:
    assert all(name in REGISTRY for name in kpis.HEADLINE)
    for name, kpi in REGISTRY.items():
        assert kpi.name == name
        assert kpi.aggregation in kpis.AGGREGATIONS, name
        assert kpi.definition.endswith("."), name
        assert kpi.higher_is_better in (True, False, None), name
        assert not kpi.is_pattern or kpi.entity, name  # a "*" says what it stands for
    # one name for the shortfall day, in days from the start
    assert REGISTRY["shortfall_day"].path == ("capacity", "shortfall_day")
    assert REGISTRY["shortfall_day"].unit == "d"
    assert "shortfall_days" not in REGISTRY and "shortfall_days_from_start" not in REGISTRY


def test_aggregate_and_format() -> None:
    assert kpis.aggregate(REGISTRY["requests_served"], [1, 2, None, 4]) == 7.0
    assert kpis.aggregate(REGISTRY["latency_p95_s"], [1.0, 2.0]) == 1.5
    assert kpis.aggregate(REGISTRY["utilization_peak"], [0.2, 0.9, 0.5]) == 0.9
    assert kpis.aggregate(REGISTRY["shortfall_at"], ["2026-04-01", "2026-03-17"]) == "2026-03-17"
    assert kpis.aggregate(REGISTRY["horizon_s"], [None, 60.0, 120.0]) == 60.0
    fmt = kpis.format_value
    assert fmt(REGISTRY["requests_served"], 3.651e12) == "3.65 T requests"
    assert fmt(REGISTRY["sla_attainment"], 0.9406) == "94.1 %"
    assert fmt(REGISTRY["national_cost_cny_per_day"], 2.13e8) == "213 M CNY/day"
    assert fmt(REGISTRY["shortfall_at"], "2026-03-17T04:00:00") == "2026-03-17 04:00"
    assert fmt(REGISTRY["latency_p95_s"], None) == "—"


def test_compare_sweep_regress_read_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KPI added to the registry at test time appears in all three, with no other change."""
    extra = Kpi("test_extra_s", ("test_extra_s",), "s", "A test KPI.", "mean", False)
    monkeypatch.setitem(kpis.REGISTRY, extra.name, extra)
    monkeypatch.setitem(kpis._BY_PATH, extra.path, extra)
    summary = {"requests": {"served": 5}, "test_extra_s": 7.5}
    assert sweep.summary_kpis(summary)["test_extra_s"] == 7.5
    assert "test_extra_s" in sweep.sweep_kpis()
    assert regress.flatten(summary) == {"requests_served": 5, "test_extra_s": 7.5}
    run = SimpleNamespace(summary=summary)
    assert compare.run_kpis(run)["test_extra_s"] == 7.5  # type: ignore[arg-type]


def test_no_hand_kept_kpi_lists_remain() -> None:
    assert not hasattr(sweep, "KPIS")
    assert not hasattr(regress, "BLOCKS")
    from gridsim import cli, sweep_cli

    for module in (compare, sweep, sweep_cli, regress, cli):
        source = inspect.getsource(module)
        assert "shortfall_days" not in source, module.__name__
        # a KPI name mapped by hand to a summary path, as sweep.py once kept them
        assert not re.search(r'"latency_p95_s":\s*\(', source), module.__name__
