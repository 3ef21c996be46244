"""Tests of the roofline serving model (gridsim.serving); the calibration against published
figures (which replaced the former factor-1.5 check) is tests/test_calibration.py.

Hardware and model figures are built here from /work/shared/data/FACTS.md (not from the
catalogue): H100/H800 989 TFLOPS BF16, 80 GB, 3.35 TB/s; H20 148 TFLOPS, 96 GB, 4.0 TB/s, 400 W;
Ascend 910B 320 TFLOPS, 64 GB, 1.6 TB/s, 400 W; DeepSeek-V3 671B/37B, 61 layers, MLA KV
70,272 B/token; Qwen3-32B dense, 64 layers, 262,144 B/token; Llama-3-70B-like dense, 80 layers,
163,840 B/token.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gridsim.catalog.types import Accelerator, LLMModel
from gridsim.serving import ServingParams, replica_size, serving_model


def acc(id: str, tflops: float, gb: float, tb_s: float, tdp: float, price: float) -> Accelerator:
    return Accelerator(
        id=id,
        peak_tflops=tflops,
        hbm_gb=gb,
        hbm_bandwidth_tb_per_s=tb_s,
        tdp_w=tdp,
        price_cny=price,
    )


def llm(id: str, total: float, active: float, layers: int, kv: float, bpp: float) -> LLMModel:
    return LLMModel(
        id=id,
        architecture="moe" if active < total else "dense",
        total_params_b=total,
        active_params_b=active,
        layers=layers,
        kv_bytes_per_token=kv,
        bytes_per_param=bpp,
        context_tokens=131_072,
        price_in_cny_per_m=2.0,
        price_cache_hit_cny_per_m=0.5,
        price_out_cny_per_m=8.0,
    )


H100 = acc("h100", 989, 80, 3.35, 700, 2.7e6 / 8)
H800 = acc("h800", 989, 80, 3.35, 700, 2.0e6 / 8)
H20 = acc("h20", 148, 96, 4.0, 400, 110_000)
ASCEND_910B = acc("ascend-910b", 320, 64, 1.6, 400, 120_000)
DEEPSEEK_V3 = llm("deepseek-v3", 671, 37, 61, 70_272, 1.0)  # FP8 weights
QWEN3_32B = llm("qwen3-32b", 32.8, 32.8, 64, 262_144, 2.0)  # BF16
LLAMA_70B_FP8 = llm("llama-3-70b", 70.6, 70.6, 80, 163_840, 1.0)
QWEN3_235B = llm("qwen3-235b-a22b", 235, 22, 94, 192_512, 1.0)

ACCELERATORS = [H100, H20, ASCEND_910B]
MODELS = [DEEPSEEK_V3, QWEN3_32B, LLAMA_70B_FP8, QWEN3_235B]


@pytest.mark.parametrize("a", ACCELERATORS, ids=lambda a: a.id)
@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.id)
def test_prefill_is_vectorised_and_superlinear(a: Accelerator, m: LLMModel) -> None:
    # Weight GEMMs are linear in the prompt; causal attention adds a quadratic term, small at
    # these lengths (v2: attention FLOPs are counted, so prefill is no longer exactly linear).
    s = serving_model(a, m)
    tokens = np.array([1.0, 100.0, 2000.0, 4000.0])
    t = s.prefill_time_s(tokens)
    assert t.shape == tokens.shape
    assert np.allclose(t, [s.prefill_time_s(float(x)) for x in tokens])
    assert 2 * s.prefill_time_s(2000.0) < s.prefill_time_s(4000.0) < 2.5 * s.prefill_time_s(2000.0)
    assert s.prefill_tokens_per_s == pytest.approx(2000.0 / s.prefill_time_s(2000.0))
    # A cached prefix is not recomputed but is attended to: between no prefix and recomputing.
    assert s.prefill_time_s(1000.0) < s.prefill_time_s(1000.0, 1000.0) < s.prefill_time_s(2000.0)


@pytest.mark.parametrize("a", ACCELERATORS, ids=lambda a: a.id)
@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.id)
def test_decode_step_non_decreasing_in_batch(a: Accelerator, m: LLMModel) -> None:
    s = serving_model(a, m)
    batch = np.arange(1.0, 4097.0)
    steps = s.decode_step_time_s(batch)
    assert np.all(np.diff(steps) >= 0)
    assert np.all(s.decode_step_time_s(64.0, 8000.0) >= s.decode_step_time_s(64.0, 1000.0))


def test_moe_batch_of_one_reads_only_active_weights() -> None:
    # Qwen3-235B fits one 8-card H100 server: no multi-server terms in the step.
    s = serving_model(H100, QWEN3_235B)
    assert s.servers_per_replica == 1
    bw = 3.35e12 * s.params.mem_bw_util * s.accelerators_per_replica
    assert s.decode_step_time_s(1.0, 0.0) == pytest.approx(22e9 / bw)
    # 200 tokens touch every routed expert (1 - (1 - 8/128)^200 ~ 1): routed read = all routed
    # weights; the dense part (7.8B: active = D + R x 8/128) is now its own roofline, which at
    # 200 tokens is compute-bound (v2 sums per-operator rooflines).
    dense = 7.8e9
    peak = 989e12 * 2 * 8 * s.params.decode_mfu
    by_hand = max(dense / bw, 2 * dense * 200 / peak) + (s.weight_bytes - dense) / bw
    assert s.decode_step_time_s(200.0, 0.0) == pytest.approx(by_hand, rel=1e-5)
    assert s.decode_step_time_s(200.0, 0.0) >= s.weight_bytes / bw


def test_speculative_step_adds_draft_passes_and_forward_overheads() -> None:
    # Qwen3-235B on one H100 server, batch 1, no context: every pass is weight reads. The verify
    # pass over 1 + k = 3 positions touches 1 - (1 - 8/128)^3 of the routed weights; each of the
    # k = 2 draft passes is one of the 94 layers over one position (1 - 120/128 of the routed
    # weights); each of the 3 forward passes pays the fixed overhead.
    from dataclasses import replace

    base = serving_model(H100, QWEN3_235B)
    params = replace(
        base.params, speculative_tokens=2, acceptance_rate=0.5, forward_overhead_s=0.002
    )
    s = serving_model(H100, QWEN3_235B, params, cards=base.accelerators_per_replica)
    bw = 3.35e12 * params.mem_bw_util * s.accelerators_per_replica
    dense = 7.8e9  # active = D + R x 8/128 with total = D + R (235B total, 22B active)
    routed = 235e9 - dense
    verify = (dense + routed * (1 - (120 / 128) ** 3)) / bw
    draft = (dense + routed * (8 / 128)) / bw / 94
    by_hand = verify + 2 * draft + 3 * 0.002
    assert s.decode_step_time_s(1.0, 0.0) == pytest.approx(by_hand, rel=1e-4)


def test_expert_parallel_latency_follows_deepep_by_size() -> None:
    from gridsim.serving import ep_layer_latency_s

    h800 = H800.model_copy(update={"vendor": "NVIDIA"})
    cm384 = ASCEND_910B.model_copy(update={"id": "ascend-910c-cm384", "vendor": "Huawei"})
    ascend = ASCEND_910B.model_copy(update={"vendor": "Huawei"})
    # DeepEP README (low latency, H800): dispatch + combine, 118 + 195 us at EP16, 194 + 360
    # at EP256; EP24 halfway in log2 between EP16 and EP32 (155 + 273 us) is not a table row.
    assert ep_layer_latency_s(h800, 16) == pytest.approx(313e-6)
    assert ep_layer_latency_s(h800, 256) == pytest.approx(554e-6)
    log_share = math.log2(24) - 4  # 0.585 of the way from 16 to 32
    assert ep_layer_latency_s(h800, 24) == pytest.approx(313e-6 + log_share * 115e-6)
    assert ep_layer_latency_s(h800, 1024) == pytest.approx(554e-6)  # flat beyond the table
    assert ep_layer_latency_s(cm384, 160) == pytest.approx(304e-6)  # UB: 2 x 152 us [CM]
    assert ep_layer_latency_s(ascend, 64) == pytest.approx(313e-6)  # not DeepEP's: one figure
    # A DeepSeek replica over two 8-card H20 servers pays 61 layers of the EP16 latency.
    s = serving_model(H20.model_copy(update={"vendor": "NVIDIA"}), DEEPSEEK_V3)
    assert s.attention_dp and s.accelerators_per_replica == 16
    assert s.ep_layer_latency_s == pytest.approx(313e-6)


@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.id)
def test_max_batch_shrinks_as_tpot_tightens(m: LLMModel) -> None:
    # Same replica throughout (the automatic sizing may pick larger replicas at tight TPOT).
    cards = serving_model(H20, m).accelerators_per_replica
    batches = []
    for tpot in (0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.001):
        s = serving_model(H20, m, ServingParams(tpot_target_s=tpot), cards=cards)
        if s.meets_tpot:
            assert s.tpot_s <= tpot
            assert s.max_batch * s.params.avg_context_tokens * m.kv_bytes_per_token <= (
                s.kv_budget_bytes + m.kv_bytes_per_token * s.params.avg_context_tokens
            )
        batches.append(s.max_batch)
    assert batches == sorted(batches, reverse=True)
    assert batches[0] > batches[-1] == 1


def test_missed_tpot_gives_one_slot_and_flag() -> None:
    s = serving_model(ASCEND_910B, DEEPSEEK_V3, ServingParams(tpot_target_s=0.005))
    assert s.max_batch == 1
    assert not s.meets_tpot
    assert s.tpot_s > 0.005


@pytest.mark.parametrize("a", ACCELERATORS, ids=lambda a: a.id)
@pytest.mark.parametrize("m", MODELS, ids=lambda m: m.id)
def test_weights_fit_in_replica(a: Accelerator, m: LLMModel) -> None:
    s = serving_model(a, m)
    n, n0 = s.accelerators_per_replica, replica_size(a, m, s.params)
    assert n * a.hbm_gb * 1e9 >= s.weight_bytes
    assert s.kv_budget_bytes > 0
    assert n0 in (1, 2, 4) or n0 % a.per_server == 0
    assert n in (n0, 2 * n0, 4 * n0, 8 * n0)
    assert s.servers_per_replica == math.ceil(n / a.per_server)
    smaller = n0 // 2 if n0 <= a.per_server else n0 - a.per_server
    if smaller >= 1:  # the next size down would not leave the required free share
        p = s.params
        usable = a.hbm_gb * 1e9 * p.hbm_usable_fraction * smaller
        assert s.weight_bytes > (1 - p.min_free_share) * usable


def test_starved_minimal_replica_grows() -> None:
    # 16 x 910B must read ~58 GB of DeepSeek weights per card per step at 1.6 TB/s (with DP
    # attention each card also holds the 16.6 GB of dense weights, leaving ~4 GB of KV): at 50
    # ms TPOT only a few slots fit; 32 cards halve the expert read, 64 halve it again and give
    # KV room (v2: 64 is the first size within replica_growth_gain of the best; v1 chose 32).
    minimal = serving_model(ASCEND_910B, DEEPSEEK_V3, ServingParams(replica_growth_gain=math.inf))
    grown = serving_model(ASCEND_910B, DEEPSEEK_V3)
    assert minimal.accelerators_per_replica == 16
    assert grown.accelerators_per_replica in (32, 64)
    assert grown.decode_tokens_per_s_per_accelerator > 10 * (
        minimal.decode_tokens_per_s_per_accelerator
    )


def test_replica_sizes_match_published_deployments() -> None:
    # DeepSeek-V3 (671 GB FP8) spans servers on H20 (Ant: EP16 decode over 2 nodes) and 910B.
    assert serving_model(H20, DEEPSEEK_V3).servers_per_replica > 1
    assert serving_model(H20, DEEPSEEK_V3).accelerators_per_replica == 16
    assert serving_model(ASCEND_910B, DEEPSEEK_V3).servers_per_replica > 1
    assert serving_model(H100, DEEPSEEK_V3).accelerators_per_replica == 16
    assert serving_model(H100, LLAMA_70B_FP8).accelerators_per_replica == 2  # TRT-LLM TP2
    assert serving_model(H100, QWEN3_32B).accelerators_per_replica == 2
    assert replica_size(H100, QWEN3_235B, ServingParams()) == 8


def test_service_time_and_power() -> None:
    s = serving_model(H20, DEEPSEEK_V3)
    p, o = np.array([100.0, 2000.0]), np.array([10.0, 500.0])
    assert np.allclose(s.service_time_s(p, o), s.prefill_time_s(p) + o * s.tpot_s)
    assert s.service_time_s(2000.0, 500.0) == pytest.approx(float(s.service_time_s(p, o)[1]))
    n, idle = s.accelerators_per_replica, H20.idle_power_fraction
    assert s.power_w(0.0) == pytest.approx(n * 400 * idle)
    assert s.power_w(1.0) == pytest.approx(n * 400)
    assert np.allclose(
        s.power_w(np.array([0.0, 0.5, 1.0])), n * 400 * (idle + (1 - idle) * 0.5 * np.arange(3))
    )
    assert s.joules_per_token == pytest.approx(n * 400 / s.decode_tokens_per_s)
    assert s.decode_tokens_per_s_per_accelerator * n == pytest.approx(s.decode_tokens_per_s)


def test_deployment_is_json_and_consistent() -> None:
    s = serving_model(H20, DEEPSEEK_V3)
    d = s.deployment(100)
    json.dumps(d)
    assert d["replicas"] == 100 // 16
    assert d["slots"] == d["replicas"] * s.max_batch
    assert d["decode_tokens_per_s"] == pytest.approx(d["replicas"] * s.decode_tokens_per_s)
    assert d["ttft_s"] == pytest.approx(s.prefill_time_s(2000.0))
    assert d["energy_kwh_per_m_tokens"] > 0
    assert d["cost_cny_per_m_tokens"] > d["capex_cny_per_m_tokens"] > 0
    cheaper = s.deployment(100, price_cny_per_kwh=0.2)
    assert cheaper["cost_cny_per_m_tokens"] < d["cost_cny_per_m_tokens"]
    assert s.deployment(96)["energy_kwh_per_m_tokens"] < d["energy_kwh_per_m_tokens"]  # no idle
    with pytest.raises(ValueError, match="fewer than"):
        s.deployment(8)


def test_params_validation() -> None:
    with pytest.raises(ValueError):
        ServingParams(decode_mfu=1.5)
    with pytest.raises(ValueError):
        ServingParams(acceptance_rate=0.5)  # no draft tokens to accept
    with pytest.raises(ValueError):
        ServingParams(speculative_tokens=1, acceptance_rate=1.5)
    assert ServingParams(speculative_tokens=2, acceptance_rate=0.5).decode_tokens_per_step == 1.75
