"""Priorities at flow fidelity (issue 15): non-preemptive priority, 0 first.

Hand-checkable cases on one pool of generic slots (job classes, exponential service, no
network delay), each with its expected values worked out here:

- overload with a maximum wait: priority 0 (below capacity on its own) is fully served and
  priority 1 gets exactly the slots priority 0 leaves (the fluid limit), the rest dropped;
- fluid overload with nothing bounding the queue: priority 0 never waits, priority 1 is
  served at the slots left and queues the rest;
- below capacity without admission rules: each priority's mean wait is Cobham's
  non-preemptive M/M/c mean;
- a pool whose classes share one priority gives exactly the numbers it gave before, also
  beside a pool of two priorities in the same run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

import gridsim as gs

SLOTS = 200
SERVICE_S = 10.0


def erlang_c(c: int, a: float) -> float:
    """P(wait) in M/M/c: Erlang B by its recursion, then C = c B / (c - a (1 - B))."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1 - b))


def cobham_waits(c: int, rates: list[float], mean_s: float) -> list[float]:
    """Mean wait per priority (0 first) in M/M/c with non-preemptive priority and one service
    rate mu = 1 / mean_s (Cobham 1954): C(c, a) / (c mu (1 - s_{k-1})(1 - s_k)), s_k the load
    of priorities 0..k over c."""
    mu = 1.0 / mean_s
    p_wait = erlang_c(c, sum(rates) / mu)
    out, before = [], 0.0
    for lam in rates:
        after = before + lam / (c * mu)
        out.append(p_wait / (c * mu * (1 - before) * (1 - after)))
        before = after
    return out


def scenario(
    tmp_path: Path,
    rates: dict[str, tuple[float, int]],
    slots: int = SLOTS,
    admission: dict[str, Any] | None = None,
    hours: float = 2.0,
    pools: list[dict[str, Any]] | None = None,
    service_s: float = SERVICE_S,
) -> gs.Scenario:
    """One region, one node, job classes name -> (arrivals/s, priority), no network delay."""
    doc: dict[str, Any] = {
        "name": "priority-flow",
        "seed": 3,
        "fidelity": "flow",
        "horizon": {"duration": f"{hours}h", "resolution": "1min"},
        "regions": [{"id": "here", "lat": 30.0, "lon": 110.0}],
        "nodes": [
            {
                "id": "solo",
                "kind": "data_centre",
                "lat": 30.0,
                "lon": 110.0,
                "region": "here",
                "pools": pools or [{"id": "slots", "slots": slots}],
            }
        ],
        "network": {"generate": "full_mesh", "per_hop_ms": 0},
        "demand": {
            "tokens_per_day": 1.0,
            "region_weights": "equal",
            "classes": [
                {
                    "name": name,
                    "kind": "job",
                    "priority": prio,
                    "rate_per_s": rate,
                    "service": {"dist": "exponential", "mean": service_s},
                }
                for name, (rate, prio) in rates.items()
            ],
        },
        "policy": {"name": "nearest"},
    }
    if admission:
        doc["admission"] = admission
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return gs.load_scenario(path)


def requests(summary: dict[str, Any], name: str) -> dict[str, float]:
    return summary["by_class"][name]["requests"]


@pytest.mark.parametrize(
    ("gold_rps", "free_rps"),
    [(12.0, 12.0), (24.0, 5.0)],
    ids=["free-shed", "gold-overloads-alone"],
)
def test_overload_sheds_the_last_priority_first(
    tmp_path: Path, gold_rps: float, free_rps: float
) -> None:
    """200 slots, 10 s a job, a one-minute maximum wait. Gold (priority 0) offers 10 x gold
    Erlangs: all served when that is below 200, else 200 of them. Free (priority 1) is served
    the Erlangs gold leaves: 12 + 12 / s -> 120 + 120 Erlangs, free served 80 / 120 = 2/3;
    24 + 5 / s -> gold 200 / 240 served, free none. The rest is dropped (no patience)."""
    sc = scenario(
        tmp_path, {"gold": (gold_rps, 0), "free": (free_rps, 1)}, admission={"max_wait": 60}
    )
    s = gs.run(sc).summary
    gold_erl, free_erl = gold_rps * SERVICE_S, free_rps * SERVICE_S
    want_gold = min(1.0, SLOTS / gold_erl)
    want_free = max(0.0, SLOTS - gold_erl) / free_erl
    gold, free = requests(s, "gold"), requests(s, "free")
    assert gold["served"] / gold["arrived"] == pytest.approx(want_gold, abs=2e-3)
    assert free["served"] / free["arrived"] == pytest.approx(want_free, abs=2e-3)
    assert free["dropped"] / free["arrived"] == pytest.approx(1 - want_free, abs=2e-3)
    assert free["abandoned"] == 0
    # ... and not FCFS, which would shed both alike: (240 - 200) / 240 = 1/6 each
    if want_gold == 1.0:
        assert gold["dropped"] < 1e-6 * gold["arrived"]


def test_fluid_overload_serves_priority_0_first(tmp_path: Path) -> None:
    """Nothing bounds the queue: 12 + 12 jobs/s of 10 s on 200 slots for an hour (240
    Erlangs). Gold (priority 0, 120 Erlangs) is served as it comes and never waits: its mean
    latency is its service, 10 s. Free gets the other 80 slots: 80 x 3600 s / 10 s = 28,800
    served in the hour, the other 43,200 - 28,800 = 14,400 still queued (in flight). Under
    FCFS gold would wait too: the queue's work grows 40 slot-s a second, a mean wait of
    0.2 x 1800 s = 360 s."""
    sc = scenario(tmp_path, {"gold": (12.0, 0), "free": (12.0, 1)}, hours=1.0)
    result = gs.run(sc)
    s = result.summary
    gold, free = requests(s, "gold"), requests(s, "free")
    assert gold["served"] == pytest.approx(43_200, rel=1e-6)
    assert free["served"] == pytest.approx(28_800, rel=1e-3)
    assert s["by_class"]["gold"]["latency_s"]["mean"] == pytest.approx(SERVICE_S, rel=0.02)
    assert any("backlog grows without bound" in w for w in s["engine_warnings"])
    assert not any("lower bounds" in w for w in s["engine_warnings"])


def test_below_capacity_waits_are_cobhams(tmp_path: Path) -> None:
    """20 slots, 1 s jobs, 6 + 10 jobs/s (rho 0.8), no admission rules. Cobham: C(20, 16) /
    (20 (1 - 0.3)) for priority 0, C(20, 16) / (20 x 0.7 x 0.2) for priority 1, five times
    as long; FCFS would give both C / 4."""
    sc = scenario(
        tmp_path, {"gold": (6.0, 0), "free": (10.0, 1)}, slots=20, service_s=1.0, hours=1.0
    )
    s = gs.run(sc).summary
    want = cobham_waits(20, [6.0, 10.0], 1.0)
    for name, w in zip(("gold", "free"), want, strict=True):
        wait = s["by_class"][name]["wait_s"]
        assert wait["mean"] == pytest.approx(w, rel=0.02), (name, wait["mean"], w)
        # every priority waits when all 20 slots are busy: P(wait) is Erlang C at 16 Erlangs
        assert wait["share_waited"] == pytest.approx(erlang_c(20, 16.0), rel=0.01)
    # the conservation law: work-weighted, the waits are FCFS's
    fcfs = erlang_c(20, 16.0) / (20 - 16.0)
    assert (6 * want[0] + 10 * want[1]) / 16 == pytest.approx(fcfs, rel=1e-12)


def test_one_priority_pools_are_unchanged(tmp_path: Path) -> None:
    """Two pools: ``mixed`` serves gold (0) and free (1), ``plain`` serves batch alone.
    Whatever batch's priority and whatever the other pool does, batch's pool gives exactly
    the numbers of a run where every class has priority 0 (the FCFS laws as before); the
    mixed pool does not (its priority 1 is shed first)."""
    pools = [
        {"id": "mixed", "slots": 100, "serves": ["gold", "free"]},
        {"id": "plain", "slots": 60, "serves": ["batch"]},
    ]
    rates = {"gold": (6.0, 0), "free": (6.0, 1), "batch": (6.5, 2)}
    admission = {"max_wait": 30}
    ranked = gs.run(scenario(tmp_path, rates, admission=admission, pools=pools)).summary
    flat_rates = {k: (r, 0) for k, (r, _) in rates.items()}
    flat = gs.run(scenario(tmp_path, flat_rates, admission=admission, pools=pools)).summary
    assert ranked["by_class"]["batch"] == flat["by_class"]["batch"]
    # the mixed pool: 120 Erlangs on 100 slots; FCFS sheds gold and free alike, priority
    # sheds free only (gold's 60 Erlangs fit)
    assert requests(flat, "gold")["dropped"] > 0.05 * requests(flat, "gold")["arrived"]
    assert requests(ranked, "gold")["dropped"] < 1e-6 * requests(ranked, "gold")["arrived"]
    free = requests(ranked, "free")
    assert free["served"] / free["arrived"] == pytest.approx(40 / 60, abs=3e-3)


def test_priority_numbers_not_order_matter(tmp_path: Path) -> None:
    """Only the order of the priority numbers counts (1 and 7 behave as 0 and 1), and the
    class order in the file does not: the first class listed may be the later priority."""
    admission = {"max_wait": 60}
    a = gs.run(scenario(tmp_path, {"free": (12.0, 7), "gold": (12.0, 1)}, admission=admission))
    b = gs.run(scenario(tmp_path, {"free": (12.0, 1), "gold": (12.0, 0)}, admission=admission))
    for name in ("gold", "free"):
        assert requests(a.summary, name) == requests(b.summary, name)
    assert math.isclose(
        requests(a.summary, "free")["served"] / requests(a.summary, "free")["arrived"],
        2 / 3,
        abs_tol=2e-3,
    )


def test_earlier_priority_waits_for_a_slot_the_later_holds(tmp_path: Path) -> None:
    """Non-preemptive: 200 slots, 10 s jobs, gold (priority 0) 12 / s and free (priority 1)
    12 / s, a one-minute maximum wait. Free keeps every slot busy (it is shed to the 80 slots
    gold leaves), so a gold arrival always waits for a slot to free. Slots free at
    D = 200 / 10 s = 20 a second and gold's queue is served at that rate: an M/M/1 queue of
    12 arrivals and 20 departures a second, waits exponential with mean 1 / (20 - 12) =
    0.125 s (Cobham, 1 / (D (1 - 12 / 20))). The decomposition alone (gold on 200 slots at
    120 Erlangs) gave gold no wait."""
    sc = scenario(tmp_path, {"gold": (12.0, 0), "free": (12.0, 1)}, admission={"max_wait": 60})
    wait = gs.run(sc).summary["by_class"]["gold"]["wait_s"]
    assert wait["share_waited"] == pytest.approx(1.0, abs=1e-3)
    assert wait["mean"] == pytest.approx(0.125, rel=0.01)


def test_earlier_priority_leaves_while_it_waits(tmp_path: Path) -> None:
    """As above, but gold's users leave after exactly 0.25 s in the queue. Gold's offered
    wait, given a wait, is that of an M/M/1+D queue (Zeltyn & Mandelbaum with one server):
    density proportional to exp(12 H(x) - 20 x), H(x) = min(x, 0.25), i.e. e^(-8x) up to
    0.25 s (mass (1 - e^-2) / 8) and e^(3 - 20x) beyond (mass e^-2 / 20): gold abandons
    (e^-2 / 20) / ((1 - e^-2) / 8 + e^-2 / 20) = 5.89 % of its arrivals. Free gets the slots
    gold's leavers free: 80 + 0.0589 x 120 Erlangs of its 120."""
    scenario(tmp_path, {"gold": (12.0, 0), "free": (12.0, 1)}, admission={"max_wait": 60})
    path = tmp_path / "s.yaml"  # as ``scenario`` wrote it, with gold's patience added
    doc = yaml.safe_load(path.read_text())
    doc["demand"]["classes"][0]["patience"] = {"dist": "constant", "value": 0.25}
    path.write_text(yaml.safe_dump(doc))
    sc = gs.load_scenario(path)
    s = gs.run(sc).summary
    tail = math.exp(-2) / 20
    want = tail / ((1 - math.exp(-2)) / 8 + tail)
    gold, free = requests(s, "gold"), requests(s, "free")
    assert gold["abandoned"] / gold["arrived"] == pytest.approx(want, rel=0.02)
    assert gold["dropped"] < 1e-6 * gold["arrived"]
    free_erlangs = SLOTS - 120 * (1 - want)
    assert free["served"] / free["arrived"] == pytest.approx(free_erlangs / 120, abs=3e-3)
