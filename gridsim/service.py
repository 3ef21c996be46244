"""The service table: what serving one request of a class at a pool takes, stage by stage.

A pool of the scenario is deployed as one or more **stations**, each a queue with slots (the
grid's ``PoolSpec``\\ s): a co-located LLM pool or a job pool is one station; a disaggregated
LLM pool is a prefill station and a decode station. A request enters at its pool's first
station (the one policies choose and accounting counts) and passes the pool's **stages** in
order: a stage either holds a slot of a station (FCFS, waiting for one if none is free) or is a
pure delay (the KV cache moving from prefill to decode cards: every request at once).

Every stage's hold time is linear in the request's sizes, ``fixed + a x input tokens + b x
output tokens + j x job seconds``, with coefficients per (class, pool): the serving mode sets
them from the serving model (``gridsim.serving``) for the pool's workload, and the class's
prefix-cache hit share scales the prefill part (cached prompt tokens are not computed again).
The first token leaves at the end of the stage that prefills.

A pooled pool (``Pool.models``: several models on shared cards, ``deploy_pooled``) is one
co-located station whose slots come from the pooled replica (``gridsim.pooling``); each class
passes its own model's stage there, with the expected switch of a model that is not resident
as a fixed part of its hold (not of its time to first token: the engines put the first token
at ``first_token_per_input_s`` x input tokens after the stage starts).

Both engines, the policies and the sampling read only this table (``Grid.service``): a new
serving mode is a function registered here with ``register_mode`` that turns a pool into
stations and stages, and both engines simulate it without change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gridsim.pooling import ModelLoad, PooledReplica, pooled_replica
from gridsim.serving import (
    ServingModel,
    ServingParams,
    loaded_replica,
    serving_model,
    serving_params,
)

if TYPE_CHECKING:
    from gridsim.catalog.types import Accelerator, LLMModel
    from gridsim.scenario.schema import Deployment

FloatArray = npt.NDArray[np.float64]
# KV transfer between prefill and decode cards when the deployment does not give it: one
# 400 Gb/s RDMA NIC per card (ASSUMPTION: H800/H20 servers carry 8 x 400 Gb/s; DeepSeek's and
# Mooncake's transfer engines move KV over RDMA), GB/s per card.
DEFAULT_KV_TRANSFER_GB_PER_S = 50.0


@dataclass(frozen=True)
class Stage:
    """One step of a request through a pool.

    ``station``: the grid pool index whose slot it holds (FCFS), or None for a pure delay.
    Hold time = ``fixed_s + per_input_s x input + per_output_s x output + per_job_s x job``.
    ``first_token_per_input_s``: the first token is out ``fixed_s`` plus this many seconds per
    input token after the stage starts (its prefill); None: not in this stage.
    """

    name: str
    station: int | None
    fixed_s: float = 0.0
    per_input_s: float = 0.0
    per_output_s: float = 0.0
    per_job_s: float = 0.0
    first_token_per_input_s: float | None = None

    def hold_s(self, inputs: FloatArray, outputs: FloatArray, job_s: FloatArray) -> FloatArray:
        """Hold times of many requests (vectorised)."""
        out: FloatArray = (
            self.fixed_s
            + self.per_input_s * np.asarray(inputs, dtype=np.float64)
            + self.per_output_s * np.asarray(outputs, dtype=np.float64)
        )
        if self.per_job_s:  # LLM requests carry no job time (nan)
            out = out + self.per_job_s * np.asarray(job_s, dtype=np.float64)
        return out

    def hold_one(self, inputs: float, outputs: float, job_s: float) -> float:
        """Hold time of one request (the request engine's hot path)."""
        hold = self.fixed_s + self.per_input_s * inputs + self.per_output_s * outputs
        return hold + self.per_job_s * job_s if self.per_job_s else hold

    def mean_s(self, mean_input: float, mean_output: float, mean_job_s: float) -> float:
        return self.hold_one(mean_input, mean_output, mean_job_s)


Route = tuple[Stage, ...]


@dataclass(frozen=True)
class StationPlan:
    """A station a mode deploys for a pool: its stage name, replicas per pool replica, slots
    per replica, and the serving model of one replica (power, cards, memory)."""

    stage: str  # "serve", "prefill", "decode", ...
    replicas_per_pool_replica: float
    slots_per_replica: int
    serving: ServingModel | None


@dataclass(frozen=True)
class StageTemplate:
    """A stage before the pool's stations have grid indices: ``station`` indexes the mode's
    ``StationPlan`` list (None: a delay). ``per_input_s`` is split into the part scaled by
    the class's cache-miss share (prefill compute) and the part that is not (KV transfer)."""

    name: str
    station: int | None
    per_computed_input_s: float = 0.0  # x (1 - cache_hit_share) x input tokens
    per_input_s: float = 0.0  # x input tokens
    per_output_s: float = 0.0
    per_job_s: float = 0.0
    fixed_s: float = 0.0
    first_token: bool = False

    def stage(self, stations: tuple[int, ...], cache_hit_share: float) -> Stage:
        """The stage for a class with this cache-hit share, at the pool's stations. With
        ``first_token``, the first token comes once the stage's input part is done."""
        per_input = self.per_computed_input_s * (1.0 - cache_hit_share) + self.per_input_s
        return Stage(
            name=self.name,
            station=None if self.station is None else stations[self.station],
            fixed_s=self.fixed_s,
            per_input_s=per_input,
            per_output_s=self.per_output_s,
            per_job_s=self.per_job_s,
            first_token_per_input_s=per_input if self.first_token else None,
        )


@dataclass(frozen=True)
class Deployed:
    """What a serving mode makes of one LLM pool: its stations and the stages through them."""

    stations: tuple[StationPlan, ...]
    stages: tuple[StageTemplate, ...]
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Workload:
    """The pool's workload that sizes its replicas: mean prompt and output tokens and the
    token-weighted prefix-cache hit share of the classes it may serve."""

    mean_input: float
    mean_output: float
    cache_hit_share: float = 0.0


# (accelerator, model, deployment, workload[, *, tpot_target_s]) -> Deployed; the keyword is
# passed only when a caller sets a TPOT target, so builders without it keep working.
ModeBuilder = Callable[..., Deployed]
MODES: dict[str, ModeBuilder] = {}


def register_mode(name: str) -> Callable[[ModeBuilder], ModeBuilder]:
    """Register a serving mode under ``name`` (the scenario's ``deployment.mode``)."""

    def wrap(builder: ModeBuilder) -> ModeBuilder:
        MODES[name] = builder
        return builder

    return wrap


def deploy(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    workload: Workload,
    *,
    tpot_target_s: float | None = None,
) -> Deployed:
    """The stations and stages of a pool in its deployment mode (ValueError: why not);
    ``tpot_target_s``: the TPOT target of its serving parameters (None: their default)."""
    builder = MODES.get(deployment.mode)
    if builder is None:
        raise ValueError(
            f"unknown deployment mode {deployment.mode!r}; choose one of {sorted(MODES)}"
        )
    if tpot_target_s is None:
        return builder(accelerator, model, deployment, workload)
    return builder(accelerator, model, deployment, workload, tpot_target_s=tpot_target_s)


def deployment_params(
    accelerator: Accelerator, deployment: Deployment, tpot_target_s: float | None = None
) -> ServingParams:
    """The calibrated serving parameters of a deployment: its accelerator's (and framework's)
    efficiency, its speculative decoding, and the TPOT target (None: the default)."""
    params = serving_params(
        accelerator,
        framework=deployment.framework,
        speculative_tokens=deployment.speculative_tokens,
        acceptance_rate=deployment.acceptance_rate,
        **({} if tpot_target_s is None else {"tpot_target_s": tpot_target_s}),
    )
    scale = deployment.efficiency_scale
    if scale == 1.0:
        return params
    # a share of peak cannot pass the peak; a faster stack also passes its fixed costs faster
    return replace(
        params,
        prefill_mfu=min(params.prefill_mfu * scale, 1.0),
        decode_mfu=min(params.decode_mfu * scale, 1.0),
        mem_bw_util=min(params.mem_bw_util * scale, 1.0),
        forward_overhead_s=params.forward_overhead_s / scale,
    )


def _serving(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    cards: int | None,
    tpot_target_s: float | None = None,
) -> ServingModel:
    params = deployment_params(accelerator, deployment, tpot_target_s)
    if cards is None and deployment.efficiency_scale != 1.0:
        # The replica is sized at the calibrated efficiency; the scale says how fast that
        # replica runs. Sized at the scaled one, a draw a few % faster could pick a smaller
        # group with far fewer slots a card (DeepSeek-V3 on the 910B: 64 cards and 9.3 slots a
        # card at 1.03, 32 cards and 3.8 at 1.04), so capacity would fall as efficiency rose.
        calibrated = deployment.model_copy(update={"efficiency_scale": 1.0})
        base = deployment_params(accelerator, calibrated, tpot_target_s)
        cards = serving_model(accelerator, model, base).accelerators_per_replica
    return serving_model(accelerator, model, params, cards=cards)


@register_mode("colocated")
def colocated(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    workload: Workload,
    *,
    tpot_target_s: float | None = None,
) -> Deployed:
    """Prefill and decode on the same cards: one station whose slots are the sequences a
    replica holds; a prompt's prefill stalls every sequence's decode (``loaded_replica``)."""
    sm = _serving(accelerator, model, deployment, deployment.cards_per_replica, tpot_target_s)
    loaded = loaded_replica(
        sm, workload.mean_input, workload.mean_output, cache_hit_share=workload.cache_hit_share
    )
    return Deployed(
        stations=(StationPlan("serve", 1.0, loaded.slots, sm),),
        stages=(
            StageTemplate(
                "serve",
                0,
                per_computed_input_s=loaded.prefill_s_per_token,
                per_output_s=loaded.tpot_s,
                first_token=True,
            ),
        ),
    )


@register_mode("disaggregated")
def disaggregated(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    workload: Workload,
    *,
    tpot_target_s: float | None = None,
) -> Deployed:
    """Prefill replicas feed decode replicas (DeepSeek's and Mooncake's production layout).

    A prefill replica computes one prompt at a time at its full compute (one slot: batching
    prompts does not raise a compute-bound rate), at the pool workload's seconds per computed
    token; then the prompt's KV cache moves to the
    decode cards at ``kv_transfer_gb_per_s`` per prefill card; a decode replica holds as many
    sequences as meet the TPOT target in its KV budget, with no prefill stalls. The pool's
    ``replicas`` are decode replicas; prefill replicas per decode replica follow
    ``prefill_ratio`` (cards per decode card) or, unset, keep prefill exactly as busy as
    decode for the pool's workload.
    """
    decode = _serving(accelerator, model, deployment, deployment.cards_per_replica, tpot_target_s)
    prefill = _serving(
        accelerator, model, deployment, deployment.prefill_cards_per_replica, tpot_target_s
    )
    loaded = loaded_replica(
        decode,
        workload.mean_input,
        workload.mean_output,
        cache_hit_share=workload.cache_hit_share,
        colocated=False,
    )
    # per computed token at the workload's prompt: attention over the prompt (and over its
    # cached prefix) makes long prompts dearer per token
    per_token = prefill.prefill_s_per_computed_token(workload.mean_input, workload.cache_hit_share)
    if deployment.prefill_ratio is not None:
        ratio = (
            deployment.prefill_ratio
            * decode.accelerators_per_replica
            / prefill.accelerators_per_replica
        )
    else:
        # Prefill busy as decode: decode serves slots / (O x tpot) requests/s per replica,
        # each (1 - h) x P x per_token seconds of a prefill replica.
        decode_rps = loaded.slots / max(workload.mean_output * loaded.tpot_s, 1e-12)
        prefill_s = (1.0 - workload.cache_hit_share) * workload.mean_input * per_token
        ratio = decode_rps * prefill_s
    bandwidth = deployment.kv_transfer_gb_per_s or DEFAULT_KV_TRANSFER_GB_PER_S
    transfer_s_per_token = model.kv_bytes_per_token / (
        bandwidth * 1e9 * prefill.accelerators_per_replica
    )
    return Deployed(
        stations=(
            StationPlan("prefill", ratio, 1, prefill),
            StationPlan("decode", 1.0, loaded.slots, decode),
        ),
        stages=(
            StageTemplate("prefill", 0, per_computed_input_s=per_token, first_token=True),
            StageTemplate("kv_transfer", None, per_input_s=transfer_s_per_token),
            StageTemplate("decode", 1, per_output_s=loaded.tpot_s),
        ),
    )


# --- pooled pools: several models on shared cards (gridsim.pooling) -------------------------


@dataclass(frozen=True)
class PooledDeployed(Deployed):
    """A pooled pool: one co-located station whose slots come from the pooled replica, and
    each model's stages (``by_model``): its own prefill and decode on the pool's cards, and
    its expected switch as a fixed part of its hold. ``stages`` are the most requested
    model's."""

    by_model: dict[str, tuple[StageTemplate, ...]] = field(default_factory=dict)
    replica: PooledReplica | None = None


def deploy_pooled(
    accelerator: Accelerator,
    models: Sequence[LLMModel],
    deployment: Deployment,
    workloads: Mapping[str, Workload],
    requests_per_s: Mapping[str, float],
    *,
    switch_s: float | None = None,
    tpot_target_s: float | None = None,
) -> PooledDeployed:
    """The station and per-model stages of a pool of several models (``Pool.models``),
    co-located only (ValueError otherwise, or when the models do not fit a replica).
    ``workloads``/``requests_per_s``: each model's mean lengths and requests/s among the
    classes the pool may serve (a model without classes: the typical request, no requests)."""
    if deployment.mode != "colocated":
        raise ValueError(
            f"a pooled pool (models:) is deployed co-located; deployment mode "
            f"{deployment.mode!r} is not supported for it: drop deployment.mode or serve the "
            "models in separate pools"
        )
    params = deployment_params(accelerator, deployment, tpot_target_s)
    loads = []
    for m in models:
        w = workloads.get(m.id) or Workload(
            float(params.typical_prompt_tokens), float(params.typical_output_tokens)
        )
        loads.append(
            ModelLoad(
                m, requests_per_s.get(m.id, 0.0), w.mean_input, w.mean_output, w.cache_hit_share
            )
        )
    replica = pooled_replica(
        accelerator, loads, params, cards=deployment.cards_per_replica, switch_s=switch_s
    )
    by_model: dict[str, tuple[StageTemplate, ...]] = {
        m: (
            StageTemplate(
                "serve",
                0,
                per_computed_input_s=lr.prefill_s_per_token,
                per_output_s=lr.tpot_s,
                fixed_s=replica.switch_s(m),
                first_token=True,
            ),
        )
        for m, lr in replica.loaded.items()
    }
    top = replica.resident[0] if replica.resident else replica.models[0]
    return PooledDeployed(
        stations=(StationPlan("serve", 1.0, replica.slots, replica.servings[top]),),
        stages=by_model[top],
        notes=replica.notes,
        by_model=by_model,
        replica=replica,
    )


# --- the table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceTable:
    """Per (class, entry pool): the route of stages (None where the pool does not serve the
    class, or is not an entry); the class means the engines and policies forecast with."""

    routes: tuple[tuple[Route | None, ...], ...]  # [class][pool]
    mean_input_tokens: tuple[float, ...]
    mean_output_tokens: tuple[float, ...]
    mean_job_s: tuple[float, ...]
    entry: tuple[int, ...]  # per pool (station): the entry station of its scenario pool

    def route(self, c: int, p: int) -> Route:
        r = self.routes[c][p]
        if r is None:
            raise KeyError(f"pool {p} does not serve class {c}")
        return r

    def _means(self, c: int) -> tuple[float, float, float]:
        return self.mean_input_tokens[c], self.mean_output_tokens[c], self.mean_job_s[c]

    def mean_s(self, c: int, p: int) -> float:
        """Mean time from the start of the first stage to the last stage's end (no waits)."""
        r = self.routes[c][p]
        return sum(s.mean_s(*self._means(c)) for s in r) if r else 0.0

    def first_token_s(self, c: int, p: int) -> float:
        """Mean time from the start of the first stage to the first token (no waits); 0 where
        no stage makes tokens (jobs: their first output is their start)."""
        r = self.routes[c][p]
        before = 0.0
        for s in r or ():
            if s.first_token_per_input_s is not None:  # after the stage's fixed part (a switch)
                return before + s.fixed_s + s.first_token_per_input_s * self.mean_input_tokens[c]
            before += s.mean_s(*self._means(c))
        return 0.0

    def arrays(self, n_pools: int) -> tuple[FloatArray, FloatArray]:
        """(classes, pools) arrays: mean route time and mean first-token time (0 where the
        pool is not an entry the class may use)."""
        n_c = len(self.routes)
        total = np.zeros((n_c, n_pools))
        first = np.zeros((n_c, n_pools))
        for c in range(n_c):
            for p in range(n_pools):
                if self.routes[c][p]:
                    total[c, p] = self.mean_s(c, p)
                    first[c, p] = self.first_token_s(c, p)
        return total, first

    def station_holds(self, n_pools: int) -> FloatArray:
        """(classes, stations) mean hold of each class at each station (0: never held)."""
        out = np.zeros((len(self.routes), n_pools))
        for c, per_pool in enumerate(self.routes):
            for r in per_pool:
                for s in r or ():
                    if s.station is not None:
                        out[c, s.station] = s.mean_s(*self._means(c))
        return out


def cache_weighted(shares: list[float], weights: list[float] | None) -> float:
    """Token-weighted mean of cache-hit shares (equal weights when none are given)."""
    if not shares:
        return 0.0
    w = weights if weights is not None and sum(weights) > 0 else [1.0] * len(shares)
    return float(sum(s * x for s, x in zip(shares, w, strict=True)) / sum(w))


def pool_replicas(per_pool_replica: float, replicas: float) -> int:
    """Replicas of a station for ``replicas`` of its pool: rounded, at least one if any."""
    raw = per_pool_replica * replicas
    return max(1, math.ceil(raw - 1e-9)) if raw > 0 else 0


def mode_figures(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    workload: Workload,
    *,
    tpot_target_s: float | None = None,
) -> dict[str, float | int | str]:
    """A pool in this mode at full load, per card: the request rate its busiest station
    allows, and the input and output tokens/s that make; the mean time to first token and per
    output token without waiting. Cards: every station's replicas (fractional, as the mode's
    ratio) per pool replica. ``tpot_target_s``: as in ``deploy``."""
    deployed = deploy(accelerator, model, deployment, workload, tpot_target_s=tpot_target_s)
    stages = [
        t.stage(tuple(range(len(deployed.stations))), workload.cache_hit_share)
        for t in deployed.stages
    ]
    means = (workload.mean_input, workload.mean_output, 0.0)
    cards = 0.0
    rate = math.inf  # requests/s per pool replica the stations allow
    for k, st in enumerate(deployed.stations):
        n = st.serving.accelerators_per_replica if st.serving is not None else 0
        cards += st.replicas_per_pool_replica * n
        hold = sum(s.mean_s(*means) for s in stages if s.station == k)
        if hold > 0:
            rate = min(rate, st.replicas_per_pool_replica * st.slots_per_replica / hold)
    ttft = 0.0
    for s in stages:
        if s.first_token_per_input_s is not None:
            ttft += s.fixed_s + s.first_token_per_input_s * workload.mean_input
            break
        ttft += s.mean_s(*means)
    decode = [s for s in stages if s.per_output_s > 0]
    tpot = decode[-1].per_output_s if decode else 0.0
    per_card = rate / cards if cards > 0 else 0.0
    return {
        "mode": deployment.mode,
        "cards_per_pool_replica": cards,
        "requests_per_s_per_card": per_card,
        "input_tokens_per_s_per_card": per_card * workload.mean_input,
        "output_tokens_per_s_per_card": per_card * workload.mean_output,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "stations": " + ".join(
            f"{st.replicas_per_pool_replica:g} x {st.stage}"
            f" ({st.serving.accelerators_per_replica if st.serving else 0} cards,"
            f" {st.slots_per_replica} slots)"
            for st in deployed.stations
        ),
    }
