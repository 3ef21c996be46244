"""Roofline serving model: how many tokens a replica of accelerators serves, and how fast.

A replica is the smallest group of cards holding the weights plus a useful KV cache (grown when
that group would be starved, see `replica_growth_gain`). Prefill is compute-bound; a decode step
costs max(compute, HBM traffic), the traffic being the weights the batch touches plus the KV
cache it reads, plus all-to-all costs when a replica spans servers.

The efficiency defaults of `ServingParams` are calibrated (tests/test_serving.py) against:

[DS]  DeepSeek-V3/R1 inference system overview, H800, 24 h of production: ~73.7k input tok/s
      per node incl. cache hits (32.2k excl.), ~14.8k output tok/s per node, KV length 4,989 —
      github.com/deepseek-ai/open-infra-index 202502OpenSourceWeek/
      day_6_one_more_thing_deepseekV3R1_inference_system_overview.md
[LM]  SGLang on 96 H100 (quotes DeepSeek's profile: 62.7k prefill, 18.6k decode per node) —
      lm-sys/lm-sys.github.io blog/2025-05-05-large-scale-ep.md (lmsys.org/blog/2025-05-05-...)
[ANT] Ant Group + SGLang, DeepSeek-R1 on H20-96G: 16.5k input tok/s per node (TP8), 675 output
      tok/s per GPU at TPOT < 50 ms with MTP — lmsys.org/blog/2025-09-26-sglang-ant-group
[TRT] TensorRT-LLM perf overview, Llama-3.3-70B FP8 on H100 TP2 (tok/s per GPU) — NVIDIA/
      TensorRT-LLM docs/source/developer-guide/perf-overview.md @ 03e27c7d5ff0c6e8
[EP]  DeepEP README: low-latency dispatch 118 us + combine 195 us per layer at EP16 on H800 —
      github.com/deepseek-ai/DeepEP README.md
[FM]  FlashMLA README: up to 3000 GB/s memory-bound on H800 SXM5 — github.com/deepseek-ai/FlashMLA

Model / published per card with the defaults: decode 0.84 (DeepSeek profile, H800), 1.29
([LM], H100), 0.91-0.92 ([ANT], H20), 0.94-0.96 ([TRT] Llama-70B); prefill 1.23 (profile),
1.41 ([LM]), 0.70 ([ANT]); DeepSeek's production averages are 1.6x (decode) and 2.4x (prefill)
below modelled capacity. Not matched: [TRT] offline MoE rows (Qwen3-235B H100, DeepSeek-R1
H200) sit 2-5x below this roofline. Not modelled: attention FLOPs (large for MLA at long
context: absorbed in `decode_mfu`), queueing, prefill/decode interference, prefix caching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from gridsim.catalog.types import Accelerator, LLMModel

FloatArray = npt.NDArray[np.float64]
HOURS_PER_YEAR = 8760.0


def _out(x: FloatArray) -> float | FloatArray:
    return float(x) if np.ndim(x) == 0 else x


@dataclass(frozen=True)
class ServingParams:
    """Efficiency factors and workload assumptions (defaults calibrated, see module doc)."""

    # Share of peak (x low_precision_speedup for 8-bit weights) reached in prefill. Published
    # DeepSeek prefill sits at 0.25-0.5 of it: EP32 H800/H100 [DS, LM] high, TP8 H20 [ANT] low.
    prefill_mfu: float = 0.36
    # Decode at large batch: small per-expert GEMMs, MLA attention FLOPs we do not count and
    # kernel gaps. Fits [LM] (H100), [ANT] (H20) and [TRT] (dense) within 1.3x.
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
    # Output tokens per decode step: 1 = no speculation; DeepSeek MTP accepts ~1.8-1.9 [ANT].
    decode_tokens_per_step: float = 1.0
    # Multi-server replicas: step x factor (expert load imbalance; EPLB keeps balance >70 %
    # [ANT]) + layers x all-to-all latency not hidden by micro-batch overlap [EP].
    multi_server_overhead: float = 1.2
    multi_server_layer_latency_s: float = 3.1e-4
    # At a tight TPOT, reading all weights each step (plus EP latency) can starve the smallest
    # replica (DeepSeek on 16 x 910B: 39 tok/s/card; on 32: 1,120), as operators know — DeepSeek
    # decodes on EP144 [DS]. Use the smallest of 1, 2, 4, 8 x the minimal fit whose decode
    # tok/s per card is within this factor of the best of them (inf: always the minimal fit).
    replica_growth_gain: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "prefill_mfu",
            "decode_mfu",
            "mem_bw_util",
            "hbm_usable_fraction",
            "kv_share_of_free",
            "min_free_share",
        ):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if min(self.tpot_target_s, self.avg_context_tokens, self.low_precision_speedup) <= 0:
            raise ValueError("tpot_target_s, avg_context_tokens, low_precision_speedup must be > 0")
        if (
            min(self.decode_tokens_per_step, self.multi_server_overhead, self.replica_growth_gain)
            < 1
        ):
            raise ValueError(
                "decode_tokens_per_step, multi_server_overhead and replica_growth_gain must be >= 1"
            )
        if self.typical_prompt_tokens < 0 or self.typical_output_tokens < 1:
            raise ValueError("typical prompt must be >= 0 and output >= 1 tokens")


def replica_size(accelerator: Accelerator, model: LLMModel, params: ServingParams) -> int:
    """Minimal fit: smallest count (1, 2, 4, ... below a server, then whole servers) leaving
    `min_free_share` of usable HBM after the weights."""
    weights = model.total_params_b * 1e9 * model.bytes_per_param
    usable = accelerator.hbm_gb * 1e9 * params.hbm_usable_fraction
    per = accelerator.per_server
    sizes = [2**k for k in range(per.bit_length()) if 2**k < per]
    for n in sizes + [per * k for k in range(1, 1025)]:
        if weights <= (1 - params.min_free_share) * usable * n:
            return n
    raise ValueError(f"{model.id} does not fit on 1024 servers of {accelerator.id}")


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
        kv_per_seq = self.params.avg_context_tokens * self.model.kv_bytes_per_token
        cap = max(1, int(self.kv_budget_bytes // kv_per_seq))
        target = self.params.tpot_target_s
        ok = self._tpot(1) <= target
        lo, hi = 1, cap if ok else 1  # TPOT is non-decreasing in batch: bisect the largest fit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self._tpot(mid) <= target else (lo, mid - 1)
        object.__setattr__(self, "max_batch", lo)
        object.__setattr__(self, "meets_tpot", ok)

    # --- memory and compute -------------------------------------------------------------------
    @property
    def weight_bytes(self) -> float:
        return self.model.total_params_b * 1e9 * self.model.bytes_per_param

    @property
    def kv_budget_bytes(self) -> float:
        usable = self.accelerator.hbm_gb * 1e9 * self.params.hbm_usable_fraction
        free = usable * self.accelerators_per_replica - self.weight_bytes
        return max(0.0, free * self.params.kv_share_of_free)

    @property
    def peak_flops(self) -> float:
        """Replica peak FLOP/s; 8-bit weights run on FP8/INT8 tensor cores."""
        boost = self.params.low_precision_speedup if self.model.bytes_per_param <= 1 else 1.0
        return self.accelerator.peak_tflops * 1e12 * boost * self.accelerators_per_replica

    # --- latency ------------------------------------------------------------------------------
    @overload
    def prefill_time_s(self, prompt_tokens: float) -> float: ...
    @overload
    def prefill_time_s(self, prompt_tokens: FloatArray) -> FloatArray: ...
    def prefill_time_s(self, prompt_tokens: float | FloatArray) -> float | FloatArray:
        """Compute-bound prefill: 2 x active params x tokens / (peak x MFU x cards).

        No multi-server factor: two-micro-batch overlap hides prefill all-to-all [DS, LM].
        """
        flops = 2e9 * self.model.active_params_b * np.asarray(prompt_tokens, dtype=float)
        return _out(flops / (self.peak_flops * self.params.prefill_mfu))

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

        MoE weight traffic: a sequence routes to a share f = active/total of the weights, so a
        batch of B touches total x (1 - (1 - f)^B) — `active` at B = 1, -> `total` as B grows
        (uniform routing; counting shared/attention weights as routed slightly overstates it).
        """
        b = np.asarray(batch, dtype=float)
        ctx = self.params.avg_context_tokens if context_tokens is None else context_tokens
        f = min(1.0, self.model.active_params_b / self.model.total_params_b)
        traffic = (
            self.weight_bytes * (1.0 - (1.0 - f) ** b) + b * ctx * self.model.kv_bytes_per_token
        )
        bw = self.accelerator.hbm_bandwidth_tb_per_s * 1e12 * self.params.mem_bw_util
        mem = traffic / (bw * self.accelerators_per_replica)
        positions = math.ceil(self.params.decode_tokens_per_step)  # MTP also computes drafts
        flops = 2e9 * self.model.active_params_b * b * positions
        comp = flops / (self.peak_flops * self.params.decode_mfu)
        t = np.maximum(mem, comp)
        if self.servers_per_replica > 1:
            t = t * self.params.multi_server_overhead + (
                self.model.layers * self.params.multi_server_layer_latency_s
            )
        return _out(t)

    def _tpot(self, batch: float) -> float:
        return self.decode_step_time_s(float(batch)) / self.params.decode_tokens_per_step

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

    # --- throughput ---------------------------------------------------------------------------
    @property
    def decode_tokens_per_s(self) -> float:
        return self.max_batch / self.tpot_s

    @property
    def prefill_tokens_per_s(self) -> float:
        return 1.0 / self.prefill_time_s(1.0)

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

    # --- power and cost -----------------------------------------------------------------------
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


def serving_model(
    accelerator: Accelerator, model: LLMModel, params: ServingParams | None = None
) -> ServingModel:
    """Size a replica of `model` on `accelerator` and derive its serving performance."""
    p = ServingParams() if params is None else params
    n0, per = replica_size(accelerator, model, p), accelerator.per_server
    sizes = [k * n0 if k * n0 <= per else math.ceil(k * n0 / per) * per for k in (1, 2, 4, 8)]
    options = [ServingModel(accelerator, model, p, n, math.ceil(n / per)) for n in sizes]
    best = max(o.decode_tokens_per_s_per_accelerator for o in options)
    return next(
        o for o in options if o.decode_tokens_per_s_per_accelerator * p.replica_growth_gain >= best
    )


@dataclass(frozen=True)
class LoadedReplica:
    """A replica serving a given workload with prefill and decode on the same cards.

    Prefill is compute-bound and stalls every sequence's decode while it runs. With ``slots``
    sequences, each a mean prompt ``P`` (seconds of prefill) and mean output ``O`` tokens, a
    sequence holds its slot for ``s = P + O x tpot_eff`` and the replica spends the share
    ``f = slots x P / s`` of its time prefilling, so decode advances at
    ``tpot_eff = tpot(slots) / (1 - f)``. ``slots`` is the largest count (up to the KV and TPOT
    limit of ``max_batch``) whose ``tpot_eff`` meets the TPOT target: a prefill-heavy workload
    (long agent prompts) gets fewer slots at the same throughput, instead of slow decoding.
    """

    slots: int
    tpot_s: float  # effective time per output token, prefill stalls included
    prefill_s_per_token: float

    def service_time_s(self, prompt_tokens: float, output_tokens: float) -> float:
        return prompt_tokens * self.prefill_s_per_token + output_tokens * self.tpot_s


def loaded_replica(sm: ServingModel, mean_prompt: float, mean_output: float) -> LoadedReplica:
    """Slots and effective TPOT of one replica of ``sm`` for a workload's mean lengths."""
    per_token = float(sm.prefill_time_s(1.0))
    prefill = mean_prompt * per_token
    context = mean_prompt + mean_output / 2
    target = sm.params.tpot_target_s

    def tpot_eff(b: int) -> float:
        tpot = sm.decode_step_time_s(float(b), context) / sm.params.decode_tokens_per_step
        if prefill <= 0 or mean_output <= 0:
            return tpot
        # s solves (s - P)(s - bP) = O tpot s (from s = P + O tpot / (1 - bP/s)); larger root.
        total = prefill * (1 + b) + mean_output * tpot
        s = (total + math.sqrt(max(total * total - 4 * b * prefill * prefill, 0.0))) / 2
        return (s - prefill) / mean_output

    kv_cap = max(1, int(sm.kv_budget_bytes // max(context * sm.model.kv_bytes_per_token, 1.0)))
    lo, hi = 1, max(1, min(sm.max_batch, kv_cap))
    while lo < hi:  # tpot_eff grows with the batch: bisect the largest that meets the target
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if tpot_eff(mid) <= target else (lo, mid - 1)
    return LoadedReplica(slots=lo, tpot_s=tpot_eff(lo), prefill_s_per_token=per_token)
