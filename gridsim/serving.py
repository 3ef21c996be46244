"""Roofline serving model: how many tokens a replica of accelerators serves, and how fast.

A replica is a group of cards holding the weights plus a KV cache: the smallest useful group
(grown when that group would be starved, see `replica_growth_gain`) or exactly ``cards``.
Each phase is a sum of per-operator rooflines, every operator costing max(compute, HBM
traffic):

* prefill: the weight GEMMs (2 x active params per computed token, at the 8-bit tensor rate
  for 8-bit weights) plus causal attention over the prompt, cached prefix included (a cached
  token is not recomputed, but later tokens still attend to it);
* a decode step: the weight GEMMs of ``batch x (1 + speculative_tokens)`` positions against the
  weights the batch touches, plus attention of every position over its context against the KV
  cache read once per sequence; multi-server replicas add the expert-parallel (EP) all-to-all
  latency (DeepEP's by EP size, or the fabric's). With multi-token prediction (k drafts) the
  step adds k draft passes of the one-layer MTP module and yields ``1 + a + ... + a^k``
  tokens; each of its 1 + k forward passes pays a fixed overhead (fitted, see below).

Achieved fractions of peak (`prefill_mfu`, `decode_mfu`, `mem_bw_util`) and the fixed time of
a decode forward pass (`forward_overhead_s`) are fitted per accelerator (and framework where
sources differ) on the ``fit`` rows of the calibration table
``gridsim/catalog/data/calibration.csv`` by ``python -m gridsim.calibration``, which writes
``gridsim/catalog/data/efficiency.csv``; `serving_params` reads it. The per-row ratios of model
to published figures, held-out rows included, are computed and printed by
tests/test_calibration.py (``pytest -s tests/test_calibration.py``); they are not repeated here
so they cannot go stale.

Sources (calibration rows cite theirs in calibration.csv):

[DS]  DeepSeek-V3/R1 inference system overview, H800, 24 h of production —
      github.com/deepseek-ai/open-infra-index 202502OpenSourceWeek/
      day_6_one_more_thing_deepseekV3R1_inference_system_overview.md (EP32 prefill, EP144
      decode, MLA/shared expert DP, FP8 GEMMs and dispatch, BF16 core MLA and combine).
[LM]  SGLang PD disaggregation + large-scale EP on 96 H100 — lm-sys/lm-sys.github.io
      blog/2025-05-05-large-scale-ep.md (DP attention, DeepEP, two-batch overlap, EPLB).
[ANT] Ant Group + SGLang, DeepSeek-R1 on H20-96G — lm-sys/lm-sys.github.io
      blog/2025-09-26-sglang-ant-group.md (TP8 prefill, DP16/EP16 decode, FP8 MLA, MTP accept
      length 1.8-1.9 with one draft token, EPLB balance > 70 %).
[CM]  Serving Large Language Models on Huawei CloudMatrix384, arXiv 2506.12708 (2025); its
      evaluation's configuration (batch per NPU, MTP acceptance, FusedDispatch latency over UB)
      as redrawn from its sec. 4 in a public reading of v3 (calibration.csv says which).
[TRT] NVIDIA/TensorRT-LLM docs/source/developer-guide/perf-overview.md @ 03e27c7d5ff0c6e8.
[GS]  GPUStack performance lab, docs.gpustack.ai/latest/performance-lab/ (Qwen3 on A100,
      H100, Ascend 910B).
[EP]  DeepEP README (V1 low-latency kernels, H800 + CX7 400 Gb/s, 128 tokens a batch):
      dispatch + combine 77 + 114 us at EP8, 118 + 195 at EP16, 155 + 273 at EP32, 173 + 314
      at EP64, 192 + 369 at EP128, 194 + 360 at EP256 — github.com/deepseek-ai/DeepEP
      README.md (docs/legacy.md in V2) [S:deepep-readme].
[FM]  FlashMLA README: up to 3000 GB/s memory-bound and 580 TFLOPS BF16 compute-bound on H800
      SXM5 (0.59 of the 989 TFLOPS peak) — github.com/deepseek-ai/FlashMLA.
[V3]  DeepSeek-V3 config.json (huggingface.co/deepseek-ai/DeepSeek-V3): 128 heads, MLA
      kv_lora_rank 512 + rope 64, qk_nope 128, v_head 128, 256 routed experts, 8 per token.

Not modelled: queueing, load below capacity (a production average such as [DS] is fitted as
capacity, so the H800 efficiencies carry DeepSeek's real utilisation), the split of all-to-all
traffic between NVLink and RDMA within an EP group, network contention between replicas.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from gridsim.catalog.types import Accelerator, LLMModel

FloatArray = npt.NDArray[np.float64]
HOURS_PER_YEAR = 8760.0
# Datasheet HBM "GB" are binary: an "80 GB" H100 holds 80 GiB (nvidia-smi reports 81,559 MiB
# usable), a "64 GB" 910B 64 GiB. Serving frameworks size the KV cache from those bytes.
HBM_BYTES_PER_GB = 2.0**30


def _out(x: FloatArray) -> float | FloatArray:
    return float(x) if np.ndim(x) == 0 else x


# --- model shapes the catalogue does not carry ------------------------------------------------
@dataclass(frozen=True)
class AttentionShape:
    """What attention costs per (query position, context position), and the MoE routing share.

    ``kind``: ``gqa`` (grouped-query / multi-head attention) or ``mla`` (DeepSeek multi-head
    latent attention). ``q_heads``, ``head_dim``: query heads and their width (GQA).
    ``routed_share``: experts a token activates over routed experts (k / E); 1 for dense.
    """

    kind: Literal["gqa", "mla"]
    q_heads: int
    head_dim: int = 128
    routed_share: float = 1.0


# Expert-parallel all-to-all per MoE layer in decode (dispatch + combine), seconds, by EP size:
# DeepEP's low-latency kernels over RDMA on NVIDIA Hopper [EP] (77 + 114 us at EP8 ... 194 + 360
# us at EP256); the held-out EP32 rows of [ANT] check the growth with EP size.
DEEPEP_LAYER_LATENCY_S: dict[int, float] = {
    8: 191e-6,
    16: 313e-6,
    32: 428e-6,
    64: 487e-6,
    128: 561e-6,
    256: 554e-6,
}
DEEPEP_VENDOR = "NVIDIA"
# Elsewhere, one latency whatever the EP size. CloudMatrix384's UB fabric: FusedDispatch 152 us
# at EP256 [CM]; ASSUMPTION: combine as long as dispatch (the paper gives combine only at EP8,
# 118 us against DeepEP's 318 us there). Other accelerators (Ascend 910B/910C over RoCE):
# ASSUMPTION, DeepEP's EP16 figure (313 us) at every EP size, as before this table; no Ascend
# all-to-all latency by EP size is sourced here, and DeepSeek-V3 on 64 x 910B at a 50 ms TPOT is
# sensitive to it (its fixed step time is then near the target).
FABRIC_LAYER_LATENCY_S: dict[str, float] = {"ascend-910c-cm384": 2 * 152e-6}
OTHER_LAYER_LATENCY_S = 313e-6


def ep_layer_latency_s(accelerator: Accelerator, ep_size: int) -> float:
    """All-to-all latency per MoE layer of a decode step over ``ep_size`` cards: the fabric's
    where listed; DeepEP's over RDMA for NVIDIA cards, interpolated in log2(EP) (flat beyond
    the table); else `OTHER_LAYER_LATENCY_S`."""
    if accelerator.id in FABRIC_LAYER_LATENCY_S:
        return FABRIC_LAYER_LATENCY_S[accelerator.id]
    if accelerator.vendor != DEEPEP_VENDOR:
        return OTHER_LAYER_LATENCY_S
    sizes = sorted(DEEPEP_LAYER_LATENCY_S)
    x = np.log2(np.clip(ep_size, sizes[0], sizes[-1]))
    return float(np.interp(x, np.log2(sizes), [DEEPEP_LAYER_LATENCY_S[n] for n in sizes]))


# LLMModel has no head counts or expert counts; until it does, the catalogue's models are listed
# here from their configs (others fall back to `attention_shape`'s inference).
MODEL_SHAPES: dict[str, AttentionShape] = {
    # [V3]: 128 heads, MLA; 256 routed experts, 8 per token.
    "deepseek-v3": AttentionShape("mla", 128, routed_share=8 / 256),
    "deepseek-r1": AttentionShape("mla", 128, routed_share=8 / 256),
    # MoonshotAI/Kimi-K2 README: 64 attention heads, MLA, 384 experts, 8 selected per token.
    "kimi-k2": AttentionShape("mla", 64, routed_share=8 / 384),
    "kimi-k2.5": AttentionShape("mla", 64, routed_share=8 / 384),
    # Qwen3 configs (zyzshishui/slime scripts/models/qwen3-*.sh): 64 q heads x 128 (235B,
    # 128 experts, 8 active; 32B), 32 q heads x 128 (8B).
    "qwen3-235b-a22b": AttentionShape("gqa", 64, 128, routed_share=8 / 128),
    "qwen3-32b": AttentionShape("gqa", 64, 128),
    "qwen3-8b": AttentionShape("gqa", 32, 128),
    # GLM-4.5 (huggingface/transformers docs glm4_moe): 96 heads x 128; 160 / 128 routed
    # experts (4.5 / Air), 8 per token.
    "glm-4.5": AttentionShape("gqa", 96, 128, routed_share=8 / 160),
    "glm-4.5-air": AttentionShape("gqa", 96, 128, routed_share=8 / 128),
    # huggingface.co/meta-llama/Llama-3.3-70B-Instruct config: 64 heads x 128, 8 KV heads.
    "llama-3.3-70b": AttentionShape("gqa", 64, 128),
}
MLA_KV_ELEMENTS = 512 + 64  # latent + decoupled RoPE key per layer [V3]
MLA_QK_NOPE, MLA_QK_ROPE, MLA_V = 128, 64, 128  # per-head dims of the unabsorbed form [V3]


def attention_shape(model: LLMModel) -> AttentionShape:
    """The model's attention shape: listed, or inferred (MLA if the KV per layer is the 576
    BF16 latent, else GQA with 8 query heads per KV head; MoE routing share 8 / 256)."""
    if model.id in MODEL_SHAPES:
        return MODEL_SHAPES[model.id]
    routed = 8 / 256 if model.active_params_b < model.total_params_b else 1.0
    per_layer = model.kv_bytes_per_token / model.layers
    if abs(per_layer - MLA_KV_ELEMENTS * 2) < 1:
        return AttentionShape("mla", 128, routed_share=routed)
    kv_elements = per_layer / 2  # BF16 by catalogue convention: K and V of the KV heads
    return AttentionShape("gqa", max(1, round(8 * kv_elements / 2 / 128)), 128, routed)


def attention_flops_per_context(model: LLMModel, phase: Literal["prefill", "decode"]) -> float:
    """FLOPs of one query position attending to one context position, all layers.

    GQA: QK^T and PV, 2 x 2 x heads x head_dim. MLA decodes in the absorbed form over the
    latent (FlashMLA [FM]: QK over 576, PV over 512 per head) and prefills in the unabsorbed
    multi-head form (QK over 192, PV over 128 per head), as DeepSeek and SGLang run it.
    """
    s = attention_shape(model)
    if s.kind == "mla":
        per_head = MLA_KV_ELEMENTS + 512 if phase == "decode" else MLA_QK_NOPE + MLA_QK_ROPE + MLA_V
        return 2.0 * s.q_heads * per_head * model.layers
    return 4.0 * s.q_heads * s.head_dim * model.layers


def dense_params_b(model: LLMModel) -> float:
    """Parameters every token uses (attention, shared experts, dense layers, embeddings), from
    total = D + R and active = D + R x k/E."""
    share = attention_shape(model).routed_share
    if share >= 1 or model.active_params_b >= model.total_params_b:
        return model.total_params_b
    return max(0.0, (model.active_params_b - share * model.total_params_b) / (1 - share))


# --- parameters ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingParams:
    """Efficiency factors and workload assumptions (see `serving_params` for the calibrated
    efficiency of an accelerator; the bare defaults are the pre-calibration values)."""

    # Share of peak (x low_precision_speedup for 8-bit weights) reached by prefill GEMMs.
    prefill_mfu: float = 0.36
    # Decode GEMMs: small per-expert batches, kernel gaps.
    decode_mfu: float = 0.25
    mem_bw_util: float = 0.85  # best kernels reach ~0.9 (FlashMLA 3.0 of 3.35 TB/s [FM])
    hbm_usable_fraction: float = 0.9  # vLLM gpu_memory_utilization / TRT-LLM free-mem 0.9
    kv_share_of_free: float = 0.9  # rest of free HBM: activations, CUDA graphs, buffers
    # A replica keeps at least this share of usable HBM for KV + activations, else it grows:
    # Llama-70B FP8 lands on TP2 H100 [TRT], DeepSeek on 2x8 H20 (EP16 decode [ANT]).
    min_free_share: float = 0.25
    tpot_target_s: float = 0.05  # 20 tok/s per user: DeepSeek's 20-22 tok/s [DS], [ANT] "Pro"
    typical_prompt_tokens: int = 2000
    typical_output_tokens: int = 500
    avg_context_tokens: float = 2250.0  # KV read per decode step: prompt + output / 2
    # FP8 (Hopper, H20) / INT8 W8A8 (Ascend) tensor rate over BF16 when weights are 8-bit.
    low_precision_speedup: float = 2.0
    # Attention kernels (FlashMLA, FlashAttention-3) reach ~0.6 of the tensor peak of their
    # precision when compute-bound: FlashMLA 580 of 989 TFLOPS BF16 [FM]. Not fitted.
    attention_efficiency: float = 0.6
    # Attention runs in the KV cache's precision: BF16 core MLA [DS]; 8-bit KV (FP8 MLA [ANT])
    # runs at the 8-bit rate. Bytes per KV element relative to the catalogue's BF16 figure.
    kv_bytes_per_element: float = 2.0
    # Expert-parallel replicas (DP attention): routed-expert time x factor (expert load
    # imbalance; EPLB keeps balance > 70 % [ANT]) + layers x all-to-all latency not hidden by
    # micro-batch overlap (`ep_layer_latency_s`, by EP size).
    multi_server_overhead: float = 1.2
    # At a tight TPOT, reading all weights each step (plus EP latency) can starve the smallest
    # replica (DeepSeek on 16 x 910B), as operators know — DeepSeek decodes on EP144 [DS]. Use
    # the smallest of 1, 2, 4, 8 x the minimal fit whose decode tok/s per card is within this
    # factor of the best of them (inf: always the minimal fit).
    replica_growth_gain: float = 2.0
    # Serving framework whose calibrated efficiency these are (None: the accelerator's).
    framework: str | None = None
    # Multi-token prediction / speculative decoding: draft tokens per step and the probability
    # that each is accepted (given the previous one was) [ANT, V3].
    speculative_tokens: int = 0
    acceptance_rate: float = 0.0
    kv_transfer_gb_per_s: float | None = None  # prefill -> decode KV bandwidth per card
    # Attention data-parallel with expert-parallel MoE (each card holds the dense weights and
    # its own sequences' KV) [DS, LM, ANT]; None: for MoE replicas spanning servers.
    attention_dp: bool | None = None
    # Fixed time of each decode forward pass (the verify pass and every MTP draft pass) that no
    # roofline term carries: kernel launches, scheduling, the batch-size exchange of DP
    # attention. Fitted with the efficiency (calibration.csv rows at two batch sizes of one
    # deployment identify it: [ANT] batch 8 and 32 on EP16).
    forward_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "prefill_mfu",
            "decode_mfu",
            "mem_bw_util",
            "hbm_usable_fraction",
            "kv_share_of_free",
            "min_free_share",
            "attention_efficiency",
        ):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if min(self.tpot_target_s, self.avg_context_tokens, self.low_precision_speedup) <= 0:
            raise ValueError("tpot_target_s, avg_context_tokens, low_precision_speedup must be > 0")
        if min(self.multi_server_overhead, self.replica_growth_gain) < 1:
            raise ValueError("multi_server_overhead and replica_growth_gain must be >= 1")
        if self.typical_prompt_tokens < 0 or self.typical_output_tokens < 1:
            raise ValueError("typical prompt must be >= 0 and output >= 1 tokens")
        if self.speculative_tokens < 0 or not 0 <= self.acceptance_rate <= 1:
            raise ValueError("speculative_tokens must be >= 0 and acceptance_rate in [0, 1]")
        if self.speculative_tokens == 0 and self.acceptance_rate > 0:
            raise ValueError("acceptance_rate needs speculative_tokens >= 1")
        if self.forward_overhead_s < 0:
            raise ValueError("forward_overhead_s must be >= 0")
        if self.kv_bytes_per_element not in (1.0, 2.0):
            raise ValueError("kv_bytes_per_element must be 1 (8-bit) or 2 (BF16)")

    @property
    def decode_tokens_per_step(self) -> float:
        """Expected tokens a decode step emits: 1 + a + a^2 + ... + a^k (draft i is kept only
        if drafts 1..i all are, each with probability a)."""
        a = self.acceptance_rate
        return 1.0 + sum(a**i for i in range(1, self.speculative_tokens + 1))


def _efficiency_rows() -> list[dict[str, str]]:
    text = (resources.files("gridsim.catalog") / "data" / "efficiency.csv").read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


# (prefill_mfu, decode_mfu, mem_bw_util, forward_overhead_s): what calibration fits.
Efficiency = tuple[float, float, float, float]


@cache
def efficiency_table() -> dict[tuple[str, str], Efficiency]:
    """(accelerator, framework) -> (prefill_mfu, decode_mfu, mem_bw_util, forward_overhead_s)
    from the packaged efficiency.csv (the overhead is stored in ms); framework "" is the
    accelerator's default, accelerator "*" the global."""
    out: dict[tuple[str, str], Efficiency] = {}
    for row in _efficiency_rows():
        key = (row["accelerator"].strip(), row["framework"].strip())
        out[key] = (
            float(row["prefill_mfu"]),
            float(row["decode_mfu"]),
            float(row["mem_bw_util"]),
            float(row["forward_overhead_ms"]) / 1e3,
        )
    return out


def efficiency_for(accelerator_id: str, framework: str | None = None) -> Efficiency:
    """Calibrated (prefill_mfu, decode_mfu, mem_bw_util, forward_overhead_s): the (accelerator,
    framework) row, else the accelerator's default row, else the global default."""
    table = efficiency_table()
    for key in ((accelerator_id, framework or ""), (accelerator_id, ""), ("*", "")):
        if key in table:
            return table[key]
    p = ServingParams
    return (p.prefill_mfu, p.decode_mfu, p.mem_bw_util, p.forward_overhead_s)


def serving_params(
    accelerator: Accelerator,
    *,
    framework: str | None = None,
    speculative_tokens: int = 0,
    acceptance_rate: float = 0.0,
    tpot_target_s: float = 0.05,
) -> ServingParams:
    """Parameters with the calibrated efficiency of ``accelerator`` (and ``framework``)."""
    prefill, decode, bw, overhead = efficiency_for(accelerator.id, framework)
    return ServingParams(
        prefill_mfu=prefill,
        decode_mfu=decode,
        mem_bw_util=bw,
        forward_overhead_s=overhead,
        framework=framework,
        speculative_tokens=speculative_tokens,
        acceptance_rate=acceptance_rate,
        tpot_target_s=tpot_target_s,
    )


def replica_size(accelerator: Accelerator, model: LLMModel, params: ServingParams) -> int:
    """Minimal fit: smallest count (1, 2, 4, ... below a server, then whole servers) leaving
    `min_free_share` of usable HBM after the weights."""
    weights = model.total_params_b * 1e9 * model.bytes_per_param
    usable = accelerator.hbm_gb * HBM_BYTES_PER_GB * params.hbm_usable_fraction
    per = accelerator.per_server
    sizes = [2**k for k in range(per.bit_length()) if 2**k < per]
    for n in sizes + [per * k for k in range(1, 1025)]:
        if weights <= (1 - params.min_free_share) * usable * n:
            return n
    raise ValueError(f"{model.id} does not fit on 1024 servers of {accelerator.id}")


# --- the model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingModel:
    """Performance of one replica of `model` on `accelerator` (build with `serving_model`)."""

    accelerator: Accelerator
    model: LLMModel
    params: ServingParams
    accelerators_per_replica: int
    servers_per_replica: int
    max_batch: int = field(init=False)  # decode slots of the replica
    meets_tpot: bool = field(init=False)

    def __post_init__(self) -> None:
        lo, ok = self.decode_slots(self.params.avg_context_tokens)
        object.__setattr__(self, "max_batch", lo)
        object.__setattr__(self, "meets_tpot", ok)

    # --- memory ---------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.model.active_params_b < self.model.total_params_b

    @property
    def attention_dp(self) -> bool:
        """DP attention + EP MoE, the layout of every large-EP deployment calibrated here
        (DeepSeek EP32/EP144 [DS], SGLang EP32/EP72 [LM], Ant EP16 [ANT], CloudMatrix EP320
        [CM]); default for MoE replicas beyond one 8-card node (past a node, tensor-parallel
        MLA would replicate its single latent KV head on every card)."""
        if self.params.attention_dp is not None:
            return self.params.attention_dp and self.is_moe
        return self.is_moe and self.accelerators_per_replica > 8

    @property
    def weight_bytes(self) -> float:
        return self.model.total_params_b * 1e9 * self.model.bytes_per_param

    @property
    def dense_weight_bytes(self) -> float:
        """Weights every token uses (attention, shared experts, dense layers, embeddings)."""
        return dense_params_b(self.model) * 1e9 * self.model.bytes_per_param

    @property
    def stored_weight_bytes(self) -> float:
        """Weights held by the replica: with DP attention every card holds the dense weights
        ([DS]: "MLA/Shared Expert DP"), the routed experts being split across the cards."""
        if not self.attention_dp:
            return self.weight_bytes
        n = self.accelerators_per_replica
        return self.weight_bytes + (n - 1) * self.dense_weight_bytes

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache per token at the serving precision (catalogue figure is BF16)."""
        return self.model.kv_bytes_per_token * self.params.kv_bytes_per_element / 2.0

    @property
    def kv_budget_bytes(self) -> float:
        usable = self.accelerator.hbm_gb * HBM_BYTES_PER_GB * self.params.hbm_usable_fraction
        free = usable * self.accelerators_per_replica - self.stored_weight_bytes
        return max(0.0, free * self.params.kv_share_of_free)

    @property
    def ep_layer_latency_s(self) -> float:
        """All-to-all latency per MoE layer (expert-parallel replicas; see `ep_layer_latency_s`)."""
        return ep_layer_latency_s(self.accelerator, self.accelerators_per_replica)

    # --- compute --------------------------------------------------------------------------------
    @property
    def peak_flops(self) -> float:
        """Replica peak FLOP/s for the weight GEMMs; 8-bit weights run on FP8/INT8 cores."""
        boost = self.params.low_precision_speedup if self.model.bytes_per_param <= 1 else 1.0
        return self.accelerator.peak_tflops * 1e12 * boost * self.accelerators_per_replica

    @property
    def attention_flops_rate(self) -> float:
        """Replica FLOP/s of attention kernels: the KV precision's peak x attention_efficiency."""
        p = self.params
        boost = p.low_precision_speedup if p.kv_bytes_per_element <= 1 else 1.0
        peak = self.accelerator.peak_tflops * 1e12 * boost * self.accelerators_per_replica
        return peak * p.attention_efficiency

    @property
    def bandwidth(self) -> float:
        """Replica achieved HBM bandwidth, bytes/s."""
        hbm = self.accelerator.hbm_bandwidth_tb_per_s * 1e12 * self.params.mem_bw_util
        return hbm * self.accelerators_per_replica

    # --- latency --------------------------------------------------------------------------------
    @overload
    def prefill_time_s(self, prompt_tokens: float, cached_tokens: float = 0.0) -> float: ...
    @overload
    def prefill_time_s(
        self, prompt_tokens: FloatArray, cached_tokens: float | FloatArray = 0.0
    ) -> FloatArray: ...
    def prefill_time_s(
        self, prompt_tokens: float | FloatArray, cached_tokens: float | FloatArray = 0.0
    ) -> float | FloatArray:
        """Seconds of the replica to prefill ``prompt_tokens`` computed tokens that follow
        ``cached_tokens`` already in the KV cache (prefix-cache hits, not recomputed).

        GEMMs: 2 x active params per computed token at the prefill MFU. Attention: computed
        token i attends to cached + i positions (causal), so T tokens cost
        T x (cached + (T + 1) / 2) context positions. No multi-server term: two-micro-batch
        overlap hides prefill all-to-all [DS, LM].
        """
        t = np.asarray(prompt_tokens, dtype=float)
        c = np.asarray(cached_tokens, dtype=float)
        gemm = 2e9 * self.model.active_params_b * t / (self.peak_flops * self.params.prefill_mfu)
        positions = t * (c + (t + 1.0) / 2.0)
        attn = positions * attention_flops_per_context(self.model, "prefill")
        return _out(gemm + attn / self.attention_flops_rate)

    def prefill_s_per_computed_token(
        self, mean_prompt: float, cache_hit_share: float = 0.0
    ) -> float:
        """Prefill seconds per computed token of a prompt of ``mean_prompt`` tokens whose
        ``cache_hit_share`` hits the prefix cache (attention over the hit prefix included)."""
        computed = max(1.0, (1.0 - cache_hit_share) * mean_prompt)
        cached = cache_hit_share * mean_prompt
        return float(self.prefill_time_s(computed, cached)) / computed

    @overload
    def decode_step_time_s(self, batch: float, context_tokens: float | None = None) -> float: ...
    @overload
    def decode_step_time_s(
        self, batch: FloatArray, context_tokens: float | None = None
    ) -> FloatArray: ...
    def decode_step_time_s(
        self, batch: float | FloatArray, context_tokens: float | None = None
    ) -> float | FloatArray:
        """One decode step of `batch` sequences of `context_tokens` (default: average) each.

        The verify pass over batch x (1 + k) positions (k speculative drafts, see
        `_pass_time_s`), then k draft passes of the MTP module, each one decoder layer over one
        position a sequence (DeepSeek-V3's MTP module is one transformer block sharing the
        embedding and output head [V3]), and a fixed ``forward_overhead_s`` for each of the
        1 + k forward passes.
        """
        b = np.asarray(batch, dtype=float)
        ctx = self.params.avg_context_tokens if context_tokens is None else context_tokens
        k = self.params.speculative_tokens
        t = self._pass_time_s(b, 1 + k, ctx)
        if k:
            t = t + k * self._pass_time_s(b, 1, ctx) / self.model.layers
        return _out(t + (1 + k) * self.params.forward_overhead_s)

    def _pass_time_s(self, b: FloatArray, positions: int, ctx: float) -> FloatArray:
        """Roofline of one forward pass of all layers over ``positions`` positions of each of
        ``b`` sequences.

        A sum of rooflines, each max(compute, HBM traffic): the dense weight GEMMs and the
        routed-expert GEMMs of b x positions tokens, and attention (KV read once per sequence,
        FLOPs in the KV precision). Expert-parallel (DP attention) replicas: x expert imbalance
        + layers x the all-to-all latency micro-batch overlap does not hide [EP] (over RDMA and
        over CloudMatrix's UB fabric alike [CM]).
        """
        tokens = b * positions
        gemm_rate = self.peak_flops * self.params.decode_mfu
        ep = self.attention_dp
        # Dense part (attention projections, shared experts, dense layers, LM head): every
        # token's; with DP attention each card reads its own copy for its own tokens.
        dense = self.dense_weight_bytes
        copies = self.accelerators_per_replica if ep else 1
        dense_flops = 2e9 * dense_params_b(self.model) * tokens
        t_dense = np.maximum(dense * copies / self.bandwidth, dense_flops / gemm_rate)
        # Routed experts: a token uses k of E, so an expert is untouched by N tokens with
        # probability (1 - k/E)^N; with EP the most loaded card sets the pace (imbalance).
        routed = self.weight_bytes - dense
        share = attention_shape(self.model).routed_share
        touched = routed * (1.0 - (1.0 - share) ** tokens)
        routed_flops = 2e9 * (self.model.active_params_b - dense_params_b(self.model)) * tokens
        t_routed = np.maximum(touched / self.bandwidth, routed_flops / gemm_rate)
        # Attention: each position attends to its sequence's context; KV read once per sequence.
        kv_read = b * ctx * self.kv_bytes_per_token / self.bandwidth
        attn_flops = tokens * ctx * attention_flops_per_context(self.model, "decode")
        t_attn = np.maximum(kv_read, attn_flops / self.attention_flops_rate)
        if not ep:
            return np.asarray(t_dense + t_routed + t_attn, dtype=float)
        # expert-parallel all-to-all: imbalance + latency overlap does not hide
        latency = self.model.layers * self.ep_layer_latency_s
        t_routed = t_routed * self.params.multi_server_overhead
        return np.asarray(t_dense + t_routed + t_attn + latency, dtype=float)

    def tpot_at(self, batch: float, context_tokens: float | None = None) -> float:
        """Time per output token at ``batch`` sequences (a step / tokens per step)."""
        step = self.decode_step_time_s(float(batch), context_tokens)
        return step / self.params.decode_tokens_per_step

    def decode_slots(self, context_tokens: float) -> tuple[int, bool]:
        """Largest batch meeting the TPOT target within the KV budget at ``context_tokens``
        per sequence (at least 1), and whether one sequence meets the target at all."""
        kv_per_seq = max(context_tokens * self.kv_bytes_per_token, 1.0)
        cap = max(1, int(self.kv_budget_bytes // kv_per_seq))
        target = self.params.tpot_target_s
        ok = self.tpot_at(1, context_tokens) <= target
        lo, hi = 1, cap if ok else 1  # TPOT is non-decreasing in batch: bisect the largest fit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.tpot_at(mid, context_tokens) <= target else (lo, mid - 1)
        return lo, ok

    def _tpot(self, batch: float) -> float:
        return self.tpot_at(batch)

    @property
    def tpot_s(self) -> float:
        """Time per output token at `max_batch`."""
        return self._tpot(self.max_batch)

    @overload
    def service_time_s(self, prompt_tokens: float, output_tokens: float) -> float: ...
    @overload
    def service_time_s(
        self, prompt_tokens: FloatArray, output_tokens: FloatArray
    ) -> FloatArray: ...
    def service_time_s(
        self, prompt_tokens: float | FloatArray, output_tokens: float | FloatArray
    ) -> float | FloatArray:
        """Slot occupancy of a request: prefill + output x TPOT (each slot acts as a server)."""
        prefill = self.prefill_time_s(np.asarray(prompt_tokens, dtype=float))
        return _out(prefill + np.asarray(output_tokens, dtype=float) * self.tpot_s)

    # --- throughput -----------------------------------------------------------------------------
    @property
    def decode_tokens_per_s(self) -> float:
        return self.max_batch / self.tpot_s

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prefill rate for the typical prompt (attention makes longer prompts slower)."""
        p = max(1.0, float(self.params.typical_prompt_tokens))
        return p / float(self.prefill_time_s(p))

    @property
    def decode_tokens_per_s_per_accelerator(self) -> float:
        return self.decode_tokens_per_s / self.accelerators_per_replica

    @property
    def prefill_tokens_per_s_per_accelerator(self) -> float:
        return self.prefill_tokens_per_s / self.accelerators_per_replica

    def output_tokens_per_s(self, prompt_tokens: float, output_tokens: float) -> float:
        """Output rate of one replica when prefill and decode share its cards (full load)."""
        per_request = self.prefill_time_s(prompt_tokens) + output_tokens * self.tpot_s / (
            self.max_batch
        )
        return output_tokens / per_request

    # --- power and cost -------------------------------------------------------------------------
    @overload
    def power_w(self, utilisation: float = 1.0) -> float: ...
    @overload
    def power_w(self, utilisation: FloatArray) -> FloatArray: ...
    def power_w(self, utilisation: float | FloatArray = 1.0) -> float | FloatArray:
        """Replica card power: idle + (TDP - idle) x utilisation, per card (no PUE)."""
        u = np.clip(np.asarray(utilisation, dtype=float), 0.0, 1.0)
        idle = self.accelerator.idle_power_fraction
        return _out(
            self.accelerator.tdp_w * self.accelerators_per_replica * (idle + (1 - idle) * u)
        )

    @property
    def joules_per_token(self) -> float:
        """Card energy per output token at full decode load (prefill excluded, no PUE)."""
        return self.power_w(1.0) / self.decode_tokens_per_s

    @property
    def joules_per_prompt_token(self) -> float:
        """Card energy per prefilled token at full prefill load (no PUE)."""
        return self.power_w(1.0) / self.prefill_tokens_per_s

    def deployment(
        self,
        accelerator_count: int,
        price_cny_per_kwh: float = 0.4,
        pue: float = 1.3,
        amortisation_years: float = 5.0,
    ) -> dict[str, Any]:
        """Capacity, latency, energy and cost of `accelerator_count` cards at full load.

        Per-token figures count input + output tokens of the typical request, prefill and decode
        sharing the cards; cards left over idle; capex is card price only, straight line.
        """
        n = self.accelerators_per_replica
        replicas = accelerator_count // n
        if replicas < 1:
            raise ValueError(
                f"{accelerator_count} x {self.accelerator.id} is fewer than the {n} "
                f"one replica of {self.model.id} needs"
            )
        p_in, p_out = self.params.typical_prompt_tokens, self.params.typical_output_tokens
        out_rate = replicas * self.output_tokens_per_s(p_in, p_out)
        tokens_per_h = out_rate * (p_in + p_out) / p_out * 3600
        idle_cards = accelerator_count - replicas * n
        idle_w = idle_cards * self.accelerator.tdp_w * self.accelerator.idle_power_fraction
        power_kw = (replicas * self.power_w(1.0) + idle_w) / 1e3
        energy = power_kw * pue / tokens_per_h * 1e6
        capex = (
            accelerator_count
            * self.accelerator.price_cny
            / (amortisation_years * HOURS_PER_YEAR)
            / tokens_per_h
            * 1e6
        )
        return {
            "model": self.model.id,
            "accelerator": self.accelerator.id,
            "accelerators": accelerator_count,
            "accelerators_per_replica": n,
            "servers_per_replica": self.servers_per_replica,
            "replicas": replicas,
            "slots": replicas * self.max_batch,
            "tpot_target_s": self.params.tpot_target_s,
            "meets_tpot": self.meets_tpot,
            "tpot_s": self.tpot_s,
            "ttft_s": self.prefill_time_s(float(p_in)),
            "prefill_tokens_per_s": replicas * self.prefill_tokens_per_s,
            "decode_tokens_per_s": replicas * self.decode_tokens_per_s,
            "typical_prompt_tokens": p_in,
            "typical_output_tokens": p_out,
            "requests_per_s": out_rate / p_out,
            "tokens_per_s": tokens_per_h / 3600,
            "power_kw": power_kw,
            "facility_power_kw": power_kw * pue,
            "joules_per_output_token": self.joules_per_token,
            "energy_kwh_per_m_tokens": energy,
            "cost_cny_per_m_tokens": energy * price_cny_per_kwh + capex,
            "capex_cny_per_m_tokens": capex,
        }


def _fits(sm: ServingModel) -> bool:
    """Weights plus the KV of one average sequence fit the replica."""
    return sm.kv_budget_bytes >= sm.params.avg_context_tokens * sm.kv_bytes_per_token


def serving_model(
    accelerator: Accelerator,
    model: LLMModel,
    params: ServingParams | None = None,
    *,
    cards: int | None = None,
) -> ServingModel:
    """A replica of `model` on `accelerator`: exactly ``cards`` cards, or (None) the smallest
    useful group (see `replica_growth_gain`). ``params`` None: `serving_params(accelerator)`."""
    p = serving_params(accelerator) if params is None else params
    per = accelerator.per_server
    if cards is not None:
        if cards < 1:
            raise ValueError(f"cards must be >= 1, got {cards}")
        sm = ServingModel(accelerator, model, p, cards, math.ceil(cards / per))
        if not _fits(sm):
            raise ValueError(
                f"{model.id} does not fit on {cards} x {accelerator.id}: weights "
                f"{sm.stored_weight_bytes / 1e9:.0f} GB leave no room for a KV cache of one "
                f"{p.avg_context_tokens:.0f}-token sequence"
            )
        return sm
    n0 = replica_size(accelerator, model, p)
    sizes = [k * n0 if k * n0 <= per else math.ceil(k * n0 / per) * per for k in (1, 2, 4, 8)]
    built = [ServingModel(accelerator, model, p, n, math.ceil(n / per)) for n in sizes]
    options = [o for o in built if _fits(o)] or built[-1:]
    best = max(o.decode_tokens_per_s_per_accelerator for o in options)
    return next(
        o for o in options if o.decode_tokens_per_s_per_accelerator * p.replica_growth_gain >= best
    )


@dataclass(frozen=True)
class LoadedReplica:
    """A replica serving a given workload.

    Co-located: prefill is compute-bound and stalls every sequence's decode while it runs. With
    ``slots`` sequences, each a mean prefill of ``P`` seconds and mean output ``O`` tokens, a
    sequence holds its slot for ``s = P + O x tpot_eff`` and the replica spends the share
    ``f = slots x P / s`` of its time prefilling, so decode advances at
    ``tpot_eff = tpot(slots) / (1 - f)``. ``slots`` is the largest count (within the KV budget)
    whose ``tpot_eff`` meets the TPOT target: a prefill-heavy workload (long agent prompts) gets
    fewer slots at the same throughput, instead of slow decoding. Decode-only (disaggregated):
    no stalls, ``slots`` the largest batch meeting the target.
    """

    slots: int
    tpot_s: float  # effective time per output token, prefill stalls included
    prefill_s_per_token: float  # per computed (not cached) prompt token

    def service_time_s(self, prompt_tokens: float, output_tokens: float) -> float:
        return prompt_tokens * self.prefill_s_per_token + output_tokens * self.tpot_s


def loaded_replica(
    sm: ServingModel,
    mean_prompt: float,
    mean_output: float,
    *,
    cache_hit_share: float = 0.0,
    colocated: bool = True,
) -> LoadedReplica:
    """Slots and effective TPOT of one replica of ``sm`` for a workload's mean lengths.

    ``cache_hit_share`` of the prompt hits the prefix cache: only the rest is computed (the KV
    context is still the whole prompt). ``colocated=False``: a decode-only replica.
    """
    if not 0 <= cache_hit_share <= 1:
        raise ValueError("cache_hit_share must be in [0, 1]")
    per_token = sm.prefill_s_per_computed_token(mean_prompt, cache_hit_share)
    prefill = (1.0 - cache_hit_share) * mean_prompt * per_token if colocated else 0.0
    context = mean_prompt + mean_output / 2
    target = sm.params.tpot_target_s

    def tpot_eff(b: int) -> float:
        tpot = sm.tpot_at(float(b), context)
        if prefill <= 0 or mean_output <= 0:
            return tpot
        # s solves (s - P)(s - bP) = O tpot s (from s = P + O tpot / (1 - bP/s)); larger root.
        total = prefill * (1 + b) + mean_output * tpot
        s = (total + math.sqrt(max(total * total - 4 * b * prefill * prefill, 0.0))) / 2
        return (s - prefill) / mean_output

    kv_cap = max(1, int(sm.kv_budget_bytes // max(context * sm.kv_bytes_per_token, 1.0)))
    lo, hi = 1, kv_cap
    while lo < hi:  # tpot_eff grows with the batch: bisect the largest that meets the target
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if tpot_eff(mid) <= target else (lo, mid - 1)
    return LoadedReplica(slots=lo, tpot_s=tpot_eff(lo), prefill_s_per_token=per_token)


def with_efficiency(params: ServingParams, efficiency: Efficiency) -> ServingParams:
    """``params`` with (prefill_mfu, decode_mfu, mem_bw_util, forward_overhead_s) replaced."""
    pre, dec, bw, overhead = efficiency
    return replace(
        params, prefill_mfu=pre, decode_mfu=dec, mem_bw_util=bw, forward_overhead_s=overhead
    )
