"""Request and flow fidelity agree on priorities under overload (issue 15's acceptance).

``scenarios/validation/overload.yaml`` (one 183-slot LLM pool at rho 0.8 with a two-hour peak at
rho 1.3) with a 15 s maximum wait and two priorities: batch (patient, ~70 Erlangs at the peak)
first, impatient chat (exponential patience, mean 30 s, ~166 Erlangs at the peak) second. At
the peak batch fits and is never shed; chat gets the 113 slots batch leaves, so it alone is
shed, about 1 - 113 / 166 = 32 % of its peak arrivals (fluid limit). Served FCFS (the scenario
without priorities) batch would wait with chat and lose about 0.9 % to the 15 s limit: the
per-priority bars below tell the two apart.

Bars as in ``tests/test_cross_fidelity_overload.py``, per priority: tokens served within 1 %,
mean latency within 10 %, p95 within 20 %, the shed share (dropped + abandoned over arrivals)
within 0.5 points. The request side is the mean of three seeds (~325,000 requests each).
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
SETS = [
    "admission.max_wait=15s",
    "demand.classes[batch].priority=0",
    "demand.classes[chat].priority=1",
]
SEEDS = (7, 8, 9)
TIERS = ("batch", "chat")


@cache
def request_summaries() -> tuple[dict[str, Any], ...]:
    scenario = load_scenario(OVERLOAD, sets=SETS)
    return tuple(gs.run(scenario, seed=s, fidelity="request").summary for s in SEEDS)


@cache
def flow_summary() -> dict[str, Any]:
    return gs.run(load_scenario(OVERLOAD, sets=SETS), fidelity="flow").summary


def shed(summary: dict[str, Any], name: str) -> float:
    r = summary["by_class"][name]["requests"]
    return float((r["dropped"] + r["abandoned"]) / r["arrived"])


def request_mean(value: Any) -> float:
    return float(np.mean([value(s) for s in request_summaries()]))


def test_the_last_priority_alone_is_shed() -> None:
    """At both fidelities batch (priority 0) loses nothing and chat (priority 1) loses over a
    tenth of its requests: the peak is real and shed from the last priority."""
    for s in (flow_summary(), *request_summaries()):
        assert shed(s, "batch") < 0.002
        assert shed(s, "chat") > 0.10


@pytest.mark.parametrize("name", TIERS)
def test_shed_share_per_priority_within_half_a_point(name: str) -> None:
    want = request_mean(lambda s: shed(s, name))
    got = shed(flow_summary(), name)
    assert abs(got - want) <= 0.005, f"{name}: flow {got:.4f}, request {want:.4f}"


@pytest.mark.parametrize("kind", ["input", "output"])
def test_tokens_served_within_1_percent(kind: str) -> None:
    want = request_mean(lambda s: s["tokens"][kind]["served"])
    assert flow_summary()["tokens"][kind]["served"] == pytest.approx(want, rel=0.01)


@pytest.mark.parametrize("name", TIERS)
@pytest.mark.parametrize(("stat", "rel"), [("mean", 0.10), ("p95", 0.20)])
def test_latency_per_priority(name: str, stat: str, rel: float) -> None:
    want = request_mean(lambda s: s["by_class"][name]["latency_s"][stat])
    got = flow_summary()["by_class"][name]["latency_s"][stat]
    assert got == pytest.approx(want, rel=rel), (name, stat, got, want)
