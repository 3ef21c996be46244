"""Model pooling: several models on shared cards, and what it saves against one pool each.

A **pooled replica** is ``cards`` cards of one accelerator serving several models (the
scenario's ``Pool.models``). Its memory holds:

- the weights of its **resident set**: all its models if they fit, else the most-requested
  ones that fit (greedily, in order of request share), leaving ``min_free_share`` of usable HBM
  for the KV cache as a single-model replica does (``gridsim.serving.replica_size``);
- when some model is not resident, room for the weights of the largest of those (a swap area:
  a request for a non-resident model loads it there);
- the KV cache, shared by every sequence of every model: ``kv_share_of_free`` of what is left.

A request whose model is not resident first loads its weights: the **switch**, ``switch_s``
(the pool's, else the model's stored weight bytes over the host-to-device link of the
replica's cards, ``DEFAULT_HOST_LINK_GB_PER_S`` per card, loaded in parallel). It holds its
slot meanwhile. Every request of a non-resident model pays it (no batching of loads): an upper
bound on the switch cost, as a model outside the resident set is by construction a rarely
requested one.

**Slots.** Each model ``m`` served alone on the replica (its KV budget the pooled one) has
``S_m`` slots and a mean hold ``h_m`` (``gridsim.serving.loaded_replica``: prefill stalls and
the TPOT target). A request of ``m`` so uses ``h_m / S_m`` replica-seconds. The pooled replica
gets ``S = sum_m w_m / sum_m (w_m / S_m)`` slots, ``w_m = q_m h_m`` (``q_m`` the model's share of
the pool's requests): the hold-weighted harmonic mean, which keeps every request's
replica-seconds and its own hold. When the KV cache binds (``S_m = budget / kv_m``) it is
exactly the KV constraint of the mix (by Little's law model ``m`` holds the share ``w_m / sum
w`` of the slots, so ``S x sum_m w_m kv_m / sum w <= budget``); when the TPOT target binds, it
assumes the models' decode steps time-share the cards as token-level schedulers do
(ASSUMPTION: Aegaeon schedules and switches models per token on shared H20s [AEG]).

**Sizing** (``compare_pooling``, ``size_pool``): the fewest whole replicas that start
``START_QUANTILE`` of requests within the TTFT SLO, as ``gridsim.engine.capacity`` defines the
shortfall: an M/M/c queue with ``c`` = replicas x slots per replica, the offered load ``a`` =
sum of rate x mean hold, and the mean hold of the work, ``P(W > t) = C(c, a) exp(-(c - a) t /
h) <= 1 - START_QUANTILE`` (Erlang C). Dedicated: one pool per model, each its own replicas
(at least one: a model on offer keeps a replica). Pooled: one pool, the switch added to the
holds of non-resident models' requests. Several models with different holds in one FCFS
queue are not exactly M/M/c: the mean hold stands for the mix, the usual approximation.

Sources (SOURCES.md: [AEG] is [S:aegaeon-2025], [PCIE] is [S:pcie5-spec]):

[AEG] Xiang et al., "Aegaeon: Effective GPU Pooling for Concurrent LLM Serving on the Market",
      SOSP 2025 (Peking University and Alibaba Cloud); Alibaba Cloud blog "Alibaba Cloud boosts
      GPU utilization with AI infrastructure breakthrough at SOSP 2025"
      (alibabacloud.com/blog/602623): tens of models of 1.8B-72B in Model Studio served on 213
      instead of 1,192 H20s (82 % fewer), up to seven models per GPU, token-level
      auto-scaling with weights prefetched from host memory, its overhead cut by 97 %.
[PCIE] PCI-SIG, PCI Express Base Specification 5.0 (2019): 32 GT/s per lane, 128b/130b
      coding, about 63 GB/s per direction over x16 (H20 and H800 cards attach at PCIe Gen5
      x16).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gridsim.catalog.types import Accelerator, LLMModel
from gridsim.erlang import erlang_c
from gridsim.serving import (
    HBM_BYTES_PER_GB,
    LoadedReplica,
    ServingModel,
    ServingParams,
    loaded_replica,
    serving_model,
)

# ASSUMPTION: host-to-device bandwidth a card reaches loading weights from pinned host memory:
# about 80 % of PCIe Gen5 x16's ~63 GB/s per direction [PCIE], GB/s per card.
DEFAULT_HOST_LINK_GB_PER_S = 50.0
START_QUANTILE = 0.95  # as gridsim.engine.capacity: share of requests starting within the SLO


@dataclass(frozen=True)
class ModelLoad:
    """One model's work at a pool: its requests/s and mean lengths per request."""

    model: LLMModel
    requests_per_s: float
    mean_input: float
    mean_output: float
    cache_hit_share: float = 0.0

    def __post_init__(self) -> None:
        if self.requests_per_s < 0 or self.mean_input < 0 or self.mean_output < 0:
            raise ValueError(f"model {self.model.id}: requests_per_s and mean lengths must be >= 0")
        if not 0.0 <= self.cache_hit_share <= 1.0:
            raise ValueError(f"model {self.model.id}: cache_hit_share must be in [0, 1]")


@dataclass(frozen=True)
class _SharedServing(ServingModel):
    """A model on a pooled replica: its KV budget is what the pooled replica leaves for KV."""

    pooled_kv_budget_bytes: float = 0.0

    @property
    def kv_budget_bytes(self) -> float:
        return self.pooled_kv_budget_bytes


@dataclass(frozen=True)
class PooledReplica:
    """One replica of a pooled pool (see the module docstring). Dicts are keyed by model id,
    in the pool's order."""

    accelerator: Accelerator
    cards: int
    models: tuple[str, ...]  # the pool's models, as given
    resident: tuple[str, ...]  # resident set, most requested first
    request_share: dict[str, float]  # q_m: share of the pool's requests (equal if no rates)
    weight_bytes: dict[str, float]  # weights each model stores on the replica
    usable_bytes: float  # usable HBM of the replica's cards
    swap_bytes: float  # room kept for loading a non-resident model (0: all resident)
    kv_budget_bytes: float  # KV cache shared by every model's sequences
    load_s: dict[str, float]  # time to load each model's weights (paid if not resident)
    loaded: dict[str, LoadedReplica]  # each model alone on the replica's KV budget
    servings: dict[str, ServingModel]  # each model's serving model on the replica
    compute_hold_s: dict[str, float]  # h_m: mean prefill + decode hold of a request of m
    slots: int  # pooled slots per replica
    notes: tuple[str, ...] = field(default=())

    def is_resident(self, model_id: str) -> bool:
        return model_id in self.resident

    def switch_s(self, model_id: str) -> float:
        """The switch a request of ``model_id`` pays: its load time if not resident, else 0."""
        return 0.0 if self.is_resident(model_id) else self.load_s[model_id]

    def hold_s(self, model_id: str) -> float:
        """Mean slot hold of a request of ``model_id``: prefill, decode and any switch."""
        return self.compute_hold_s[model_id] + self.switch_s(model_id)

    @property
    def non_resident_share(self) -> float:
        """The share of the pool's requests that find their model not resident."""
        return sum(q for m, q in self.request_share.items() if not self.is_resident(m))


def pooled_replica(
    accelerator: Accelerator,
    loads: Sequence[ModelLoad],
    params: ServingParams,
    *,
    cards: int | None = None,
    switch_s: float | None = None,
    host_link_gb_per_s: float = DEFAULT_HOST_LINK_GB_PER_S,
) -> PooledReplica:
    """The pooled replica of ``loads``' models on ``cards`` x ``accelerator`` (None: the
    smallest useful group of the model with the largest weights, ``serving_model``).
    ``switch_s``: one load time for every model (None: weights over the host link). Raises
    ValueError (what and how to fix) when no model, or no KV cache, fits."""
    if not loads:
        raise ValueError("a pooled replica needs at least one model")
    ids = [ld.model.id for ld in loads]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a pooled replica names each model once; got {ids}")
    if switch_s is not None and switch_s < 0:
        raise ValueError(f"switch_s must be >= 0, got {switch_s}")
    if host_link_gb_per_s <= 0:
        raise ValueError(f"host_link_gb_per_s must be > 0, got {host_link_gb_per_s}")
    if cards is None:
        largest = max(loads, key=lambda ld: ld.model.total_params_b * ld.model.bytes_per_param)
        cards = serving_model(accelerator, largest.model, params).accelerators_per_replica
    if cards < 1:
        raise ValueError(f"cards must be >= 1, got {cards}")
    servers = math.ceil(cards / accelerator.per_server)
    alone = {
        ld.model.id: ServingModel(accelerator, ld.model, params, cards, servers) for ld in loads
    }
    weights = {m: sm.stored_weight_bytes for m, sm in alone.items()}
    usable = accelerator.hbm_gb * HBM_BYTES_PER_GB * params.hbm_usable_fraction * cards
    room = (1.0 - params.min_free_share) * usable  # for weights (resident and swap area)
    total_rate = sum(ld.requests_per_s for ld in loads)
    share = {
        ld.model.id: (ld.requests_per_s / total_rate if total_rate > 0 else 1.0 / len(loads))
        for ld in loads
    }
    # most requested first; ties keep the pool's order (sorted is stable)
    order = sorted(ids, key=lambda m: -share[m])
    resident: list[str] = []
    for m in order:
        trial = [*resident, m]
        rest = [weights[x] for x in ids if x not in trial]
        if sum(weights[x] for x in trial) + max(rest, default=0.0) <= room:
            resident = trial
    swap = max((weights[m] for m in ids if m not in resident), default=0.0)
    if not resident and swap > room:
        heaviest = max(ids, key=lambda m: weights[m])
        raise ValueError(
            f"no model of the pooled pool fits a replica of {cards} x {accelerator.id}: "
            f"{heaviest} stores {weights[heaviest] / 1e9:.0f} GB of weights, more than the "
            f"{room / 1e9:.0f} GB left beside a KV cache; raise deployment.cards_per_replica "
            "or pool smaller models"
        )
    kv_budget = max(0.0, usable - sum(weights[m] for m in resident) - swap)
    kv_budget *= params.kv_share_of_free
    loaded: dict[str, LoadedReplica] = {}
    servings: dict[str, ServingModel] = {}
    hold: dict[str, float] = {}
    load_s: dict[str, float] = {}
    for ld in loads:
        m = ld.model.id
        context = ld.mean_input + ld.mean_output / 2
        kv_seq = context * alone[m].kv_bytes_per_token
        if kv_budget < kv_seq:
            raise ValueError(
                f"a replica of {cards} x {accelerator.id} pooling {', '.join(ids)} has "
                f"{kv_budget / 1e9:.1f} GB left for the KV cache, less than one "
                f"{context:.0f}-token sequence of {m} ({kv_seq / 1e9:.2f} GB); raise "
                "deployment.cards_per_replica or pool fewer models"
            )
        sm = _SharedServing(accelerator, ld.model, params, cards, servers, kv_budget)
        servings[m] = sm
        loaded[m] = loaded_replica(
            sm, ld.mean_input, ld.mean_output, cache_hit_share=ld.cache_hit_share
        )
        computed = (1.0 - ld.cache_hit_share) * ld.mean_input
        hold[m] = loaded[m].service_time_s(computed, ld.mean_output)
        load_s[m] = (
            switch_s if switch_s is not None else weights[m] / (host_link_gb_per_s * 1e9 * cards)
        )
    work = {m: share[m] * hold[m] for m in ids}
    spent = sum(work[m] / loaded[m].slots for m in ids)
    slots = (
        max(1, math.floor(sum(work.values()) / spent))
        if spent > 0
        else min(lr.slots for lr in loaded.values())
    )
    notes: tuple[str, ...] = ()
    if len(resident) < len(ids):
        outside = [m for m in ids if m not in resident]
        notes = (
            f"{len(resident)} of {len(ids)} models resident on {cards} x {accelerator.id}; "
            f"requests for {', '.join(outside)} ({sum(share[m] for m in outside):.1%} of the "
            "pool's) load their weights first",
        )
    return PooledReplica(
        accelerator=accelerator,
        cards=cards,
        models=tuple(ids),
        resident=tuple(resident),
        request_share=share,
        weight_bytes=weights,
        usable_bytes=usable,
        swap_bytes=swap,
        kv_budget_bytes=kv_budget,
        load_s=load_s,
        loaded=loaded,
        servings=servings,
        compute_hold_s=hold,
        slots=slots,
        notes=notes,
    )


# --- Erlang C sizing -------------------------------------------------------------------------


def p_start_within(servers: int, load_erlangs: float, mean_hold_s: float, wait_s: float) -> float:
    """P(W <= t) of M/M/c: 1 - C(c, a) exp(-(c - a) t / h); 0 when the queue is unstable."""
    if load_erlangs <= 0:
        return 1.0
    if servers <= load_erlangs:
        return 0.0
    tail = float(erlang_c(np.array([float(servers)]), np.array([load_erlangs]))[0]) * math.exp(
        -(servers - load_erlangs) * wait_s / mean_hold_s
    )
    return 1.0 - tail


@dataclass(frozen=True)
class Sizing:
    """The fewest whole replicas meeting the start quantile at the SLO, and what they give."""

    replicas: int
    cards: int
    slots: int
    requests_per_s: float
    offered_erlangs: float  # sum of rate x mean hold
    mean_hold_s: float
    p_start_within_slo: float  # P(W <= TTFT SLO) at these replicas


def size_pool(
    requests_per_s: float,
    mean_hold_s: float,
    slots_per_replica: int,
    cards_per_replica: int,
    ttft_slo_s: float,
    *,
    quantile: float = START_QUANTILE,
    min_replicas: int = 1,
) -> Sizing:
    """Fewest replicas (at least ``min_replicas``) of ``slots_per_replica`` slots each whose
    M/M/c queue starts ``quantile`` of requests within ``ttft_slo_s``."""
    if slots_per_replica < 1 or cards_per_replica < 1:
        raise ValueError("slots_per_replica and cards_per_replica must be >= 1")
    if requests_per_s < 0 or mean_hold_s < 0 or ttft_slo_s < 0:
        raise ValueError("requests_per_s, mean_hold_s and ttft_slo_s must be >= 0")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    a = requests_per_s * mean_hold_s
    # below a, the queue is unstable; start at the first whole replica count above it
    n = max(min_replicas, math.floor(a / slots_per_replica) + 1 if a > 0 else min_replicas)
    while True:
        p = p_start_within(n * slots_per_replica, a, max(mean_hold_s, 1e-300), ttft_slo_s)
        if p >= quantile:
            return Sizing(
                replicas=n,
                cards=n * cards_per_replica,
                slots=n * slots_per_replica,
                requests_per_s=requests_per_s,
                offered_erlangs=a,
                mean_hold_s=mean_hold_s,
                p_start_within_slo=p,
            )
        n += 1


@dataclass(frozen=True)
class PoolingComparison:
    """Dedicated (one pool per model) against pooled (one pool) serving of the same work at
    the same SLO: cards each needs and what the pooled one saves."""

    ttft_slo_s: float
    quantile: float
    dedicated: dict[str, Sizing]  # per model
    pooled: Sizing
    replica: PooledReplica

    @property
    def dedicated_cards(self) -> int:
        return sum(s.cards for s in self.dedicated.values())

    @property
    def pooled_cards(self) -> int:
        return self.pooled.cards

    @property
    def saving_cards(self) -> int:
        return self.dedicated_cards - self.pooled_cards

    @property
    def saving_share(self) -> float:
        d = self.dedicated_cards
        return self.saving_cards / d if d > 0 else 0.0

    def describe(self) -> dict[str, object]:
        """JSON-safe figures, for a report or a notebook."""
        return {
            "ttft_slo_s": self.ttft_slo_s,
            "quantile": self.quantile,
            "dedicated_cards": self.dedicated_cards,
            "pooled_cards": self.pooled_cards,
            "saving_cards": self.saving_cards,
            "saving_share": self.saving_share,
            "dedicated": {
                m: {
                    "replicas": s.replicas,
                    "cards": s.cards,
                    "p_start_within_slo": s.p_start_within_slo,
                }
                for m, s in self.dedicated.items()
            },
            "pooled": {
                "replicas": self.pooled.replicas,
                "cards": self.pooled.cards,
                "slots_per_replica": self.replica.slots,
                "resident": list(self.replica.resident),
                "non_resident_share": self.replica.non_resident_share,
                "p_start_within_slo": self.pooled.p_start_within_slo,
            },
        }


def pooled_sizing(
    replica: PooledReplica,
    rates: Mapping[str, float],
    ttft_slo_s: float,
    *,
    quantile: float = START_QUANTILE,
) -> Sizing:
    """Replicas of ``replica`` that serve ``rates`` (requests/s by model) at the SLO: one
    queue, the load the sum of rate x hold (switches included), its mean hold the mix's."""
    total = sum(rates.values())
    offered = sum(r * replica.hold_s(m) for m, r in rates.items())
    mean_hold = offered / total if total > 0 else 0.0
    return size_pool(total, mean_hold, replica.slots, replica.cards, ttft_slo_s, quantile=quantile)


def compare_pooling(
    accelerator: Accelerator,
    loads: Sequence[ModelLoad],
    params: ServingParams,
    ttft_slo_s: float,
    *,
    cards: int | None = None,
    switch_s: float | None = None,
    quantile: float = START_QUANTILE,
    host_link_gb_per_s: float = DEFAULT_HOST_LINK_GB_PER_S,
) -> PoolingComparison:
    """Cards to serve ``loads`` at the SLO, dedicated and pooled. Dedicated: each model on its
    own replicas (``cards`` each, None: its smallest useful group), slots and hold from
    ``loaded_replica``, at least one replica per model. Pooled: ``pooled_replica``."""
    dedicated: dict[str, Sizing] = {}
    for ld in loads:
        sm = serving_model(accelerator, ld.model, params, cards=cards)
        lr = loaded_replica(sm, ld.mean_input, ld.mean_output, cache_hit_share=ld.cache_hit_share)
        hold = lr.service_time_s((1.0 - ld.cache_hit_share) * ld.mean_input, ld.mean_output)
        dedicated[ld.model.id] = size_pool(
            ld.requests_per_s,
            hold,
            lr.slots,
            sm.accelerators_per_replica,
            ttft_slo_s,
            quantile=quantile,
        )
    replica = pooled_replica(
        accelerator,
        loads,
        params,
        cards=cards,
        switch_s=switch_s,
        host_link_gb_per_s=host_link_gb_per_s,
    )
    rates = {ld.model.id: ld.requests_per_s for ld in loads}
    pooled = pooled_sizing(replica, rates, ttft_slo_s, quantile=quantile)
    return PoolingComparison(ttft_slo_s, quantile, dedicated, pooled, replica)
