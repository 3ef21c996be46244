"""Request and flow fidelity on ``scenarios/validation/overload.yaml``: one 183-slot LLM pool at
rho 0.8 with a two-hour peak at rho 1.3, impatient chat (exponential patience, mean 30 s) beside
patient batch work, a two-minute maximum wait.

The bars are the cross-fidelity ones (``tests/test_flow.py``), plus the requests lost to
admission and impatience: tokens served within 1 %, (dropped + abandoned) / arrived within 0.5
percentage points, mean latency within 10 %, p95 latency within 20 %, utilisation per node within
2 points. The request side is the mean of three seeds (~325,000 requests each): its own spread
is ~0.2 % on tokens, ~0.3 points on the lost share, ~1 % on latencies, so the bars measure the
flow engine, not the noise. The flow side runs at the scenario's own tick (1 minute).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gridsim as gs
from gridsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
OVERLOAD = ROOT / "scenarios" / "validation" / "overload.yaml"
SEEDS = (7, 8, 9)


@cache
def request_summaries() -> tuple[dict[str, Any], ...]:
    scenario = load_scenario(OVERLOAD)
    return tuple(gs.run(scenario, seed=s, fidelity="request").summary for s in SEEDS)


@cache
def flow_summary() -> dict[str, Any]:
    return gs.run(load_scenario(OVERLOAD), fidelity="flow").summary


def lost_share(summary: dict[str, Any]) -> float:
    r = summary["requests"]
    return (r["dropped"] + r["abandoned"]) / r["arrived"]


def request_mean(value: Any) -> float:
    return float(np.mean([value(s) for s in request_summaries()]))


def test_the_scenario_is_overloaded() -> None:
    """The peak is real: the request engine loses (mostly abandons) over 5 % of the requests,
    its pool is saturated at the peak and nothing is lost without a reason."""
    for s in request_summaries():
        assert lost_share(s) > 0.05
        assert s["requests"]["abandoned"] > s["requests"]["dropped"]
        assert s["by_node"]["dc"]["utilization"]["peak"] > 0.99
        assert s["by_class"]["batch"]["requests"]["abandoned"] == 0  # no patience: never leaves


@pytest.mark.parametrize("kind", ["input", "output"])
def test_tokens_served_within_1_percent(kind: str) -> None:
    want = request_mean(lambda s: s["tokens"][kind]["served"])
    assert flow_summary()["tokens"][kind]["served"] == pytest.approx(want, rel=0.01)


def test_dropped_and_abandoned_within_half_a_point() -> None:
    want = request_mean(lost_share)
    got = lost_share(flow_summary())
    assert abs(got - want) <= 0.005, f"flow {got:.4f}, request {want:.4f}"


@pytest.mark.parametrize(("stat", "rel"), [("mean", 0.10), ("p95", 0.20)])
def test_latency(stat: str, rel: float) -> None:
    want = request_mean(lambda s: s["latency_s"][stat])
    assert flow_summary()["latency_s"][stat] == pytest.approx(want, rel=rel)


def test_utilisation_per_node_within_2_points() -> None:
    flow = flow_summary()
    for node in request_summaries()[0]["by_node"]:
        want = request_mean(lambda s, n=node: s["by_node"][n]["utilization"]["mean"])
        got = flow["by_node"][node]["utilization"]["mean"]
        assert abs(got - want) < 0.02, (node, got, want)


def test_flow_never_serves_beyond_capacity() -> None:
    """Utilisation is busy over available slot-seconds: at most 1 in every interval, also when
    the peak saturates the pool (the request engine's peak is exactly 1)."""
    for node, block in flow_summary()["by_node"].items():
        assert block["utilization"]["peak"] <= 1 + 1e-9, node
