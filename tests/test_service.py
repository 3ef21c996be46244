"""The service table (``gridsim.service``): serving modes as stations and stages, read by both
engines; a disaggregated pool at both fidelities; the prefix cache's cut of prefill work.

Expected values come from the serving model's own figures (``gridsim.serving``: prefill seconds
per token, decode TPOT and slots) composed by hand here, from queueing identities (utilisation
= arrival rate x mean hold / slots), or from the request engine against the flow engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gridsim as gs
from gridsim.catalog import builtin_catalog
from gridsim.grid import build_grid
from gridsim.scenario import ScenarioError, load_scenario
from gridsim.scenario.schema import Deployment
from gridsim.service import (
    DEFAULT_KV_TRANSFER_GB_PER_S,
    MODES,
    Deployed,
    StageTemplate,
    StationPlan,
    Workload,
    register_mode,
)
from gridsim.serving import loaded_replica, serving_model, serving_params

ROOT = Path(__file__).resolve().parents[1]
DISAGG = ROOT / "scenarios" / "validation" / "disaggregated.yaml"
CATALOG = builtin_catalog()


def station_util(summary: dict[str, Any], name: str) -> float:
    return float(summary["by_pool"][name]["utilization"]["mean"])


# --- the table ------------------------------------------------------------------------------


def test_a_colocated_pool_is_one_station_holding_prefill_then_decode() -> None:
    """The co-located route is one slot held for (1 - h) x input x prefill s/token + output x
    effective TPOT, the figures ``loaded_replica`` gives for the pool's workload."""
    sc = load_scenario(ROOT / "scenarios" / "validation" / "cross_fidelity.yaml")
    grid = build_grid(sc)
    p = grid.pool_index("shaoguan", "chat")
    c = grid.class_names.index("chat")
    (stage,) = grid.service.route(c, p)
    assert stage.station == p and grid.pools[p].stage == "serve"
    sm = serving_model(CATALOG.accelerators["h100"], CATALOG.models["qwen3-32b"])
    cls = sc.demand.classes[c]
    # the pool serves chat only: its workload is chat's means
    loaded = loaded_replica(sm, grid.mean_input_tokens[c], grid.mean_output_tokens[c])
    assert stage.per_input_s == pytest.approx(loaded.prefill_s_per_token, rel=1e-12)
    assert stage.per_output_s == pytest.approx(loaded.tpot_s, rel=1e-12)
    assert grid.pools[p].slots_per_replica == loaded.slots
    assert cls.cache_hit_share == 0.0
    assert stage.first_token_per_input_s == pytest.approx(loaded.prefill_s_per_token)


def test_stage_times_of_one_disaggregated_pool_by_hand() -> None:
    """Prefill on a prefill replica, KV over the fabric, decode on a decode replica: each
    stage's coefficients from the serving model's figures, composed here by hand (prefill
    sized by the keep-up rule: the scenario's own ratio set aside)."""
    sc = load_scenario(DISAGG, sets=["nodes[yrd].pools[chat].deployment.prefill_ratio=null"])
    grid = build_grid(sc)
    p = grid.pool_index("yrd", "chat")
    prefill_st, decode_st = grid.stations_of(p)
    assert [grid.pools[s].stage for s in (prefill_st, decode_st)] == ["prefill", "decode"]
    acc, model = CATALOG.accelerators["h100"], CATALOG.models["qwen3-32b"]
    sm = serving_model(acc, model, serving_params(acc))
    h = 0.3
    mean_in, mean_out = grid.mean_input_tokens[0], grid.mean_output_tokens[0]
    decode = loaded_replica(sm, mean_in, mean_out, cache_hit_share=h, colocated=False)
    per_token = sm.prefill_s_per_computed_token(grid.mean_input_tokens[0], h)
    transfer = model.kv_bytes_per_token / (
        DEFAULT_KV_TRANSFER_GB_PER_S * 1e9 * sm.accelerators_per_replica
    )
    route = grid.service.route(0, p)
    assert [s.name for s in route] == ["prefill", "kv_transfer", "decode"]
    assert [s.station for s in route] == [prefill_st, None, decode_st]
    assert route[0].per_input_s == pytest.approx((1 - h) * per_token, rel=1e-12)
    assert route[1].per_input_s == pytest.approx(transfer, rel=1e-12)
    assert route[2].per_output_s == pytest.approx(decode.tpot_s, rel=1e-12)
    # one request of 2,000 input and 300 output tokens
    inp, out = 2000.0, 300.0
    prefill_s = (1 - h) * inp * per_token
    assert route[0].hold_one(inp, out, 0.0) == pytest.approx(prefill_s)
    assert grid.service.first_token_s(0, p) == pytest.approx((1 - h) * mean_in * per_token)
    assert sum(s.hold_one(inp, out, 0.0) for s in route) == pytest.approx(
        prefill_s + inp * transfer + out * decode.tpot_s
    )
    # auto-sized prefill: as busy as decode for the workload, rounded up to whole replicas
    ratio = decode.slots / (mean_out * decode.tpot_s) * (1 - h) * mean_in * per_token
    assert grid.pools[prefill_st].replicas == int(np.ceil(ratio))
    assert grid.pools[decode_st].slots == decode.slots
    # the scenario's ratio: two 1-card prefill replicas per 1-card decode replica
    ratio_grid = build_grid(load_scenario(DISAGG))
    prefill_st, decode_st = ratio_grid.stations_of(ratio_grid.pool_index("yrd", "chat"))
    assert ratio_grid.pools[prefill_st].replicas == 2 * ratio_grid.pools[decode_st].replicas


def test_one_request_at_a_time_through_a_disaggregated_pool() -> None:
    """With requests far apart nobody waits: each request's first token comes after the
    network and its prefill, its end after prefill, transfer and decode (and the network
    back), exactly as composed by hand from the serving model."""
    sc = load_scenario(
        DISAGG,
        sets=[
            "demand.tokens_per_day=2e6",  # ~1,500 requests a day: a few minutes apart
            "horizon.duration=6h",
            "horizon.warmup=0",
            "outputs.requests=true",
        ],
    )
    grid = build_grid(sc)
    p = grid.pool_index("yrd", "chat")
    route = grid.service.route(0, p)
    out = gs.run(sc, fidelity="request")
    table = out.requests
    assert len(table) > 100
    busy = table["wait_s"] > 0
    assert busy.mean() < 0.05  # almost nobody waits at this load
    free = table[~busy]
    inp = free["input_tokens"].to_numpy(float)
    outp = free["output_tokens"].to_numpy(float)
    net = free["network_s"].to_numpy()
    prefill = route[0].per_input_s * inp
    total = prefill + route[1].per_input_s * inp + route[2].per_output_s * outp
    np.testing.assert_allclose(free["ttft_s"], 2 * net + prefill, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(free["latency_s"], 2 * net + total, rtol=1e-9, atol=1e-9)


# --- both engines on a disaggregated pool ----------------------------------------------------


@pytest.fixture(scope="module")
def disagg_runs() -> tuple[dict[str, Any], dict[str, Any]]:
    sc = load_scenario(DISAGG)
    return gs.run(sc, fidelity="request").summary, gs.run(sc, fidelity="flow").summary


def test_disaggregated_pool_request_and_flow_agree(disagg_runs: Any) -> None:
    """The cross-fidelity bars (``test_flow``) on a prefill -> KV -> decode pool."""
    req, flow = disagg_runs
    for kind in ("input", "output"):
        assert flow["tokens"][kind]["served"] == pytest.approx(
            req["tokens"][kind]["served"], rel=0.01
        )
    assert flow["latency_s"]["mean"] == pytest.approx(req["latency_s"]["mean"], rel=0.10)
    assert flow["latency_s"]["p95"] == pytest.approx(req["latency_s"]["p95"], rel=0.20)
    assert flow["wait_s"]["mean"] == pytest.approx(req["wait_s"]["mean"], rel=0.15)
    for station in ("yrd/chat:prefill", "yrd/chat:decode"):
        assert abs(station_util(flow, station) - station_util(req, station)) < 0.02, station
        assert station_util(req, station) > 0.6  # loaded enough for queueing to matter


def test_a_decode_bound_pool_queues_at_decode_in_both_engines() -> None:
    """Prefill oversized (6 prefill cards per decode card) and the decode station at ~0.91:
    requests wait for a decode slot. Both engines agree on the share that waits (Erlang C at
    the decode station: ~22 %, which the lightly loaded prefill station cannot explain) and on
    the mean wait (within 20 %: Allen-Cunneen for the decode hold's spread), and on the time to
    the first token, which decode waits do not delay."""
    sets = [
        "nodes[yrd].pools[chat].deployment.prefill_ratio=6",
        "demand.tokens_per_day=2.45e9",
        "horizon.duration=6h",
    ]
    sc = load_scenario(DISAGG, sets=sets)
    req = gs.run(sc, fidelity="request").summary
    flow = gs.run(sc, fidelity="flow").summary
    assert station_util(req, "yrd/chat:decode") > 0.88
    assert station_util(req, "yrd/chat:prefill") < 0.35
    assert req["wait_s"]["share_waited"] > 0.15
    assert abs(flow["wait_s"]["share_waited"] - req["wait_s"]["share_waited"]) < 0.02
    assert flow["wait_s"]["mean"] == pytest.approx(req["wait_s"]["mean"], rel=0.20)
    # the first token leaves at the end of prefill: decode waits are not in it (they are
    # longer than the whole mean TTFT here)
    assert flow["ttft_s"]["mean"] == pytest.approx(req["ttft_s"]["mean"], rel=0.05)
    assert flow["ttft_s"]["mean"] < flow["wait_s"]["mean"]


def test_station_utilisation_is_arrival_rate_times_hold_over_slots(disagg_runs: Any) -> None:
    """Each station's utilisation is lambda x its mean hold / its slots (the table's means)."""
    _, flow = disagg_runs
    sc = load_scenario(DISAGG)
    grid = build_grid(sc)
    p = grid.pool_index("yrd", "chat")
    rate = flow["requests"]["arrived"] / sc.horizon.duration
    for stage in grid.service.route(0, p):
        if stage.station is None:
            continue
        hold = stage.mean_s(grid.mean_input_tokens[0], grid.mean_output_tokens[0], 0.0)
        expected = rate * hold / grid.pools[stage.station].slots
        assert station_util(flow, grid.pools[stage.station].name) == pytest.approx(
            expected, rel=0.01
        )


def test_cache_hits_cut_prefill_busy_time_in_proportion() -> None:
    """Prefill station busy time scales with the tokens computed, (1 - h) x input, times the
    serving model's seconds per computed token (attention over the cached prefix makes that a
    little dearer): h = 0 -> 0.5 about halves it (fixed prefill replicas: only the work
    changes)."""
    acc, model = CATALOG.accelerators["h100"], CATALOG.models["qwen3-32b"]
    sm = serving_model(acc, model, serving_params(acc))
    busy = {}
    per_token = {}
    for h in (0.0, 0.5):
        sc = load_scenario(
            DISAGG,
            sets=[
                f"demand.classes[chat].cache_hit_share={h}",
                "nodes[yrd].pools[chat].deployment.prefill_ratio=4",
                "horizon.duration=2h",
            ],
        )
        s = gs.run(sc, fidelity="flow").summary
        grid = build_grid(sc)
        slots = grid.pools[grid.stations_of(grid.pool_index("yrd", "chat"))[0]].slots
        busy[h] = station_util(s, "yrd/chat:prefill") * slots
        per_token[h] = sm.prefill_s_per_computed_token(grid.mean_input_tokens[0], h)
    expected = 0.5 * per_token[0.5] / per_token[0.0]
    assert busy[0.5] / busy[0.0] == pytest.approx(expected, rel=1e-6)
    assert 0.5 <= expected < 0.6  # the cut is the computed tokens', attention aside


@pytest.mark.parametrize("fidelity", ["request", "flow"])
def test_a_build_out_grows_every_station_of_a_disaggregated_pool(fidelity: str) -> None:
    """Two more (decode) replicas after an hour: the decode station gains two replicas'
    slots and the prefill station its share, rounded up (2 x prefill replicas per decode
    replica), each in its capacity series."""
    sc = load_scenario(DISAGG, sets=["horizon.duration=2h", "horizon.warmup=0"])
    sc = sc.model_copy(
        update={
            "events": [
                gs.scenario.schema.BuildOut(
                    kind="build_out", at=3600.0, node="yrd", pool="chat", replicas=2
                )
            ]
        }
    )
    grid = build_grid(sc)
    series = gs.run(sc, fidelity=fidelity).timeseries
    cap = series[(series.entity_kind == "pool") & (series.metric == "capacity_slot_s")]
    for s in grid.stations_of(grid.pool_index("yrd", "chat")):
        spec = grid.pools[s]
        added = int(np.ceil(2 * spec.replicas_per_pool_replica - 1e-9)) * spec.slots_per_replica
        mine = cap[cap.entity_id == spec.name].sort_values("time_s")
        width = 300.0  # the scenario's 5-minute series
        first, last = mine.value.iloc[0] / width, mine.value.iloc[-1] / width
        assert first == pytest.approx(spec.slots)
        assert last == pytest.approx(spec.slots + added), spec.name


# --- a mode registered in the serving layer alone --------------------------------------------


@pytest.fixture()
def staged_mode() -> Any:
    """A made-up three-station mode: an encoder station (0.05 s per request), then prefill,
    then decode, each with its own replicas; registered here, nothing else changed."""

    def encode_then_serve(
        accelerator: Any, model: Any, deployment: Deployment, workload: Workload
    ) -> Deployed:
        sm = serving_model(accelerator, model, serving_params(accelerator))
        loaded = loaded_replica(sm, workload.mean_input, workload.mean_output, colocated=False)
        per_token = float(sm.prefill_time_s(1.0))
        return Deployed(
            stations=(
                StationPlan("encode", 1.0, 4, sm),
                StationPlan("prefill", 3.0, 1, sm),
                StationPlan("decode", 1.0, loaded.slots, sm),
            ),
            stages=(
                StageTemplate("encode", 0, fixed_s=0.05),
                StageTemplate("prefill", 1, per_computed_input_s=per_token, first_token=True),
                StageTemplate("decode", 2, per_output_s=loaded.tpot_s),
            ),
        )

    register_mode("test_encode_then_serve")(encode_then_serve)
    yield "test_encode_then_serve"
    MODES.pop("test_encode_then_serve")


@pytest.mark.parametrize("fidelity", ["request", "flow"])
def test_a_mode_registered_in_the_serving_layer_runs_in_both_engines(
    staged_mode: str, fidelity: str
) -> None:
    """Both engines simulate the new mode's three stations: each station's utilisation is
    lambda x its hold / slots (the encoder's hold is a constant 0.05 s: lambda x 0.05 / 4)."""
    sc = load_scenario(
        DISAGG,
        sets=[
            f"nodes[yrd].pools[chat].deployment.mode={staged_mode}",
            "demand.tokens_per_day=1.0e9",
            "horizon.duration=3h",
            "horizon.warmup=0",
        ],
    )
    grid = build_grid(sc)
    stations = grid.stations_of(grid.pool_index("yrd", "chat"))
    assert [grid.pools[s].name for s in stations] == [
        "yrd/chat:encode",
        "yrd/chat:prefill",
        "yrd/chat:decode",
    ]
    s = gs.run(sc, fidelity=fidelity).summary
    rate = s["requests"]["arrived"] / sc.horizon.duration
    assert station_util(s, "yrd/chat:encode") == pytest.approx(rate * 0.05 / 4, rel=0.03)
    mean_in, mean_out = grid.mean_input_tokens[0], grid.mean_output_tokens[0]
    for stage in grid.service.route(0, stations[0]):
        assert stage.station is not None
        expected = rate * stage.mean_s(mean_in, mean_out, 0.0) / grid.pools[stage.station].slots
        assert station_util(s, grid.pools[stage.station].name) == pytest.approx(expected, rel=0.03)
    assert s["requests"]["served"] + s["requests"]["in_flight"] == s["requests"]["arrived"]


def test_an_unknown_mode_is_a_clear_error_at_its_field() -> None:
    sc = load_scenario(DISAGG, sets=["nodes[yrd].pools[chat].deployment.mode=pipelined"])
    with pytest.raises(ScenarioError) as err:
        build_grid(sc)
    text = str(err.value)
    assert "pipelined" in text and "disaggregated" in text and "deployment" in text


def test_an_outage_of_a_disaggregated_pool_keeps_the_accounting() -> None:
    """Requests caught at either station when the node fails are lost, counted at the pool's
    entry, and every request is accounted for. The flow engine loses what its queues hold and,
    by Little's law, what its slots hold: as many as the request engine (about the decode
    station's ~96 busy slots plus the prefill's), within 20 %."""
    sets = ["horizon.duration=2h", "horizon.warmup=0", "policy.on_failure=drop"]
    sc = load_scenario(DISAGG, sets=sets)
    sc = sc.model_copy(
        update={
            "events": [
                gs.scenario.schema.NodeOutage(
                    kind="node_outage", at=3600.0, node="yrd", duration=600.0
                )
            ]
        }
    )
    lost = {}
    for fidelity in ("request", "flow"):
        s = gs.run(sc, fidelity=fidelity).summary
        r = s["requests"]
        total = r["served"] + r["dropped"] + r["abandoned"] + r["lost"] + r["in_flight"]
        assert r["arrived"] == total, fidelity
        block = s["by_pool"]["yrd/chat:decode"]["requests"]
        assert block["arrived"] == 0 and block["lost"] == 0  # counted at the entry
        lost[fidelity] = r["lost"]
    assert lost["request"] > 50  # most were caught decoding
    assert lost["flow"] == pytest.approx(lost["request"], rel=0.20)
