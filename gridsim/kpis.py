"""The KPI registry: every figure of ``summary.json`` defined once (name, where it sits, unit,
a one-sentence definition, how values combine, and which way is better).

The report cards, ``gridsim compare``, sweeps, ``gridsim regress``, ``gridsim export`` and the
command line's run summary all read their KPI lists, names, units and directions from here;
no module keeps a list of its own (a test checks that every leaf of a summary is either here
or in ``METADATA``).

Paths are tuples of keys into ``summary.json``. A ``*`` in a path stands for one entity of a
per-entity map or one row of a list (``("capacity", "by_model", "*", "peak_demand_erlangs")``).
The per-entity blocks that repeat national figures (``by_class``, ``by_region``, ``by_node``,
``by_pool``, ``economics.by_node_kind``, ``economics.by_model``, ``capacity.by_model``,
``capacity.by_hub``, ``market.by_plan``, ``market.by_model``) map onto the national KPI:
``("by_class", "chat", "latency_s", "p95")`` is ``latency_p95_s`` for the class ``chat``, and
``("market", "by_plan", "pro", "revenue_cny")`` is ``market_revenue_cny`` for the plan ``pro``.

Units: ``%`` is a fraction (0.941) shown as a percentage, ``s`` seconds, ``date`` an ISO date
and time, ``""`` a label or a yes/no; the rest are written out (``CNY``, ``kWh``, ``tokens``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Aggregation = Literal["mean", "sum", "min", "max", "first"]
Kind = Literal["number", "date", "text", "flag"]
AGGREGATIONS: tuple[str, ...] = ("mean", "sum", "min", "max", "first")


@dataclass(frozen=True)
class Kpi:
    """One KPI. ``aggregation`` says how several values of it make one figure (the parts of a
    grid, or runs pooled): ``sum`` for totals that add up, ``mean`` for rates, shares and
    statistics, ``min``/``max`` for extremes (the earliest shortfall, the peak), ``first`` for
    settings and labels that do not vary. ``higher_is_better`` is None where neither way is
    better in itself (demand, utilisation, power)."""

    name: str
    path: tuple[str, ...]
    unit: str
    definition: str
    aggregation: Aggregation
    higher_is_better: bool | None
    entity: str = ""  # what the path's "*" stands for ("model", "hub", "gap row")

    @property
    def is_pattern(self) -> bool:
        return "*" in self.path

    @property
    def kind(self) -> Kind:
        """number, date (ISO text), text (a label) or flag (yes/no)."""
        if self.unit == "date":
            return "date"
        return _KINDS.get(self.name, "number")


@dataclass(frozen=True)
class Entry:
    """A KPI's value in one summary: national (``entity_kind`` empty) or of one entity (a class,
    a region, a model, a row of the capacity gap)."""

    kpi: Kpi
    path: tuple[str, ...]
    value: Any
    entity_kind: str = ""
    entity_id: str = ""

    # The Kpi's fields, so an Entry reads like its Kpi (``entry.name``, ``entry.unit``).
    @property
    def name(self) -> str:
        return self.kpi.name

    @property
    def unit(self) -> str:
        return self.kpi.unit

    @property
    def definition(self) -> str:
        return self.kpi.definition

    @property
    def aggregation(self) -> Aggregation:
        return self.kpi.aggregation

    @property
    def higher_is_better(self) -> bool | None:
        return self.kpi.higher_is_better

    @property
    def key(self) -> str:
        """A stable dotted key: ``latency_p95_s``, ``by_class.chat.latency_p95_s``."""
        if not self.entity_kind:
            return self.kpi.name
        return f"{self.entity_kind}.{self.entity_id}.{self.kpi.name}"


_K: list[Kpi] = []
_KINDS: dict[str, Kind] = {}  # KPIs that are not numbers and whose unit does not say so


def _add(
    name: str,
    path: Sequence[str],
    unit: str,
    definition: str,
    aggregation: Aggregation,
    better: bool | None,
    entity: str = "",
) -> None:
    _K.append(Kpi(name, tuple(path), unit, definition, aggregation, better, entity))


# --- requests and tokens --------------------------------------------------------------------
_REQ = {
    "arrived": ("requests that arrived in the horizon", None),
    "served": ("requests served to the end (every token generated)", True),
    "dropped": ("requests refused by the admission limits or with nowhere to go", False),
    "abandoned": ("requests that gave up waiting (their class's patience ran out)", False),
    "lost": ("requests lost in a pool that failed (policy.on_failure: drop)", False),
    "in_flight": ("requests admitted but unfinished at the end of the horizon", None),
    "retried": ("requests routed again after a failure", False),
}
for _term, (_text, _better) in _REQ.items():
    _add(
        f"requests_{_term}", ("requests", _term), "requests", f"Number of {_text}.", "sum", _better
    )
for _side in ("input", "output"):
    _add(
        f"tokens_{_side}_demanded",
        ("tokens", _side, "demanded"),
        "tokens",
        f"{_side.capitalize()} tokens of the requests that arrived.",
        "sum",
        None,
    )
    _add(
        f"tokens_{_side}_served",
        ("tokens", _side, "served"),
        "tokens",
        f"{_side.capitalize()} tokens of the requests served.",
        "sum",
        True,
    )

# --- service quality --------------------------------------------------------------------------
_add(
    "sla_attainment",
    ("sla_attainment",),
    "%",
    "Share of the requests that ended (served, dropped, abandoned or lost) that met every SLO "
    "of their class.",
    "mean",
    True,
)
_STATS = {"mean": "mean", "p50": "median", "p95": "95th percentile", "p99": "99th percentile"}
_LAT = {
    "latency": ("latency_s", "end-to-end latency of served requests (network, wait, prefill, "),
    "wait": ("wait_s", "wait for a slot of served requests ("),
    "ttft": ("ttft_s", "time to first token of served requests ("),
}
_LAT_TAIL = {
    "latency": "decode), after the warm-up",
    "wait": "queueing only), after the warm-up",
    "ttft": "network, wait and prefill), after the warm-up",
}
for _kind, (_block, _text) in _LAT.items():
    _stats = ("mean", "p95") if _kind == "ttft" else ("mean", "p50", "p95", "p99")
    for _stat in _stats:
        _add(
            f"{_kind}_{_stat}_s",
            (_block, _stat),
            "s",
            f"{_STATS[_stat].capitalize()} {_text}{_LAT_TAIL[_kind]}.",
            "mean",
            False,
        )
    _add(
        f"{_kind}_count",
        (_block, "count"),
        "requests",
        f"Requests in the {_kind} statistics (served, arrived after the warm-up).",
        "sum",
        None,
    )
_add(
    "wait_share_waited",
    ("wait_s", "share_waited"),
    "%",
    "Share of served requests that waited for a slot at all.",
    "mean",
    False,
)
_add(
    "utilization_mean",
    ("utilization", "mean"),
    "%",
    "Time-weighted mean share of slots busy.",
    "mean",
    None,
)
_add(
    "utilization_peak",
    ("utilization", "peak"),
    "%",
    "Highest share of slots busy in any interval.",
    "max",
    None,
)
_add("horizon_s", ("horizon_s",), "s", "Length of the simulated horizon.", "first", None)

# --- capacity (flow fidelity) -----------------------------------------------------------------
_SHORTFALL = "the first time demand exceeds the capacity that can serve it within SLO (see "
_SHORTFALL += "capacity.definition)"
_add(
    "shortfall_day",
    ("capacity", "shortfall_day"),
    "d",
    f"Days from the start to {_SHORTFALL}; empty when there is none within the horizon.",
    "min",
    True,
)
_add("shortfall_at", ("capacity", "shortfall_at"), "date", f"Date of {_SHORTFALL}.", "min", True)
_add(
    "shortfall_at_s",
    ("capacity", "shortfall_at_s"),
    "s",
    f"Seconds from the start to {_SHORTFALL}.",
    "min",
    True,
)
_add(
    "shortfall_model",
    ("capacity", "shortfall_model"),
    "",
    "The model whose capacity runs out first.",
    "first",
    None,
)
_KINDS["shortfall_model"] = "text"
_add(
    "shortfall_at_by_region",
    ("capacity", "shortfall_by_region", "*"),
    "date",
    f"Date of {_SHORTFALL}, for demand from this region.",
    "min",
    True,
    "region",
)
_add(
    "headroom_mean",
    ("capacity", "headroom", "mean"),
    "%",
    "Mean share of capacity left over demand.",
    "mean",
    True,
)
_add(
    "headroom_min",
    ("capacity", "headroom", "min"),
    "%",
    "Smallest share of capacity left over demand in any hour.",
    "min",
    True,
)
_add(
    "unserved_tokens",
    ("capacity", "unserved_tokens"),
    "tokens",
    "Tokens demanded that the grid could not serve.",
    "sum",
    False,
)
for _metric, _text in (
    ("peak_demand_erlangs", "Peak demand for the model, in slots busy (erlangs)"),
    ("slo_capacity_erlangs", "Slots the model's pools hold within SLO at that peak (erlangs)"),
):
    _add(f"model_{_metric}", ("capacity", "by_model", "*", _metric), "erlangs", f"{_text}.",
         "sum", None if _metric.startswith("peak") else True, "model")  # fmt: skip
_add(
    "gap_cards",
    ("capacity", "gap_cards"),
    "cards",
    "Accelerator cards to add, over all hubs and models, to hold the SLO through the horizon.",
    "sum",
    False,
)
for _metric, _unit, _text, _better in (
    ("cards_to_add", "cards", "Cards to add at this hub for this model", False),
    ("replicas_to_add", "replicas", "Serving replicas to add at this hub for this model", False),
    (
        "peak_demand_erlangs",
        "erlangs",
        "Demand at this hub for this model in the hour it exceeds its SLO capacity the most",
        None,
    ),
    (
        "slo_capacity_erlangs",
        "erlangs",
        "Capacity within SLO at this hub for this model in that hour",
        True,
    ),
    (
        "peak_at",
        "date",
        "The hour the hub's SLO capacity for this model falls shortest of its demand (the "
        "hour of peak demand unless capacity changes during the run)",
        None,
    ),
):
    _agg: Aggregation = "first" if _unit == "date" else "sum"
    _add(f"gap_{_metric}", ("capacity", "gap", "*", _metric), _unit, f"{_text}.", _agg,
         _better, "gap row")  # fmt: skip

# --- economics ----------------------------------------------------------------------------
_ECON: tuple[tuple[str, str, str, str, Aggregation, bool | None], ...] = (
    ("sample_fraction", "sample_fraction", "", "Share of demand simulated "
     "(demand.sample_fraction).", "first", None),
    ("requests_costed", "requests", "requests", "Requests whose cost is counted.", "sum", None),
    ("tokens_served", "tokens", "tokens", "Tokens served (input and output).", "sum", True),
    ("energy_kwh", "energy_kwh", "kWh", "Facility energy over the horizon (IT x PUE).", "sum",
     False),
    ("electricity_cny", "electricity_cny", "CNY", "Electricity bill over the horizon.", "sum",
     False),
    ("capex_cny", "capex_cny", "CNY", "Capital cost of cards and facilities amortised over the "
     "horizon.", "sum", False),
    ("network_cny", "network_cny", "CNY", "Network transfer cost over the horizon.", "sum", False),
    ("cost_cny", "cost_cny", "CNY", "Total cost over the horizon (electricity, capex, network).",
     "sum", False),
    ("revenue_cny", "revenue_cny", "CNY", "Revenue at list prices of the tokens served.", "sum",
     True),
    ("margin_cny", "margin_cny", "CNY", "Revenue less cost over the horizon.", "sum", True),
    ("carbon_kg", "carbon_kg", "kg CO2", "Carbon emitted by the energy used.", "sum", False),
    ("it_power_kw", "it_power_kw", "kW", "IT power of the equipment installed.", "sum", None),
    ("it_power_kw_start", "it_power_kw_start", "kW", "IT power installed at the start.", "sum",
     None),
    ("it_power_kw_end", "it_power_kw_end", "kW", "IT power installed at the end (after "
     "build-outs and retirements).", "sum", None),
    ("mean_facility_power_kw", "mean_facility_power_kw", "kW", "Mean facility power drawn.",
     "sum", None),
    ("cost_cny_per_m_tokens", "cost_cny_per_m_tokens", "CNY/M tokens", "Cost per million tokens "
     "served.", "mean", False),
    ("revenue_cny_per_m_tokens", "revenue_cny_per_m_tokens", "CNY/M tokens", "Revenue per million "
     "tokens served.", "mean", True),
    ("energy_wh_per_k_tokens", "energy_wh_per_k_tokens", "Wh/k tokens", "Facility energy per "
     "thousand tokens served.", "mean", False),
    ("carbon_g_per_k_tokens", "carbon_g_per_k_tokens", "g CO2/k tokens", "Carbon per thousand "
     "tokens served.", "mean", False),
    ("national_tokens_per_day", "national_tokens_per_day", "tokens/day", "Tokens served per day, "
     "scaled to the whole country.", "sum", None),
    ("national_energy_kwh_per_day", "national_energy_kwh_per_day", "kWh/day", "Facility energy per "
     "day, scaled to the whole country.", "sum", False),
    ("national_cost_cny_per_day", "national_cost_cny_per_day", "CNY/day", "Cost per day, scaled to "
     "the whole country.", "sum", False),
    ("national_revenue_cny_per_day", "national_revenue_cny_per_day", "CNY/day", "Revenue per day, "
     "scaled to the whole country.", "sum", True),
    ("national_margin_cny_per_day", "national_margin_cny_per_day", "CNY/day", "Margin per day, "
     "scaled to the whole country.", "sum", True),
    ("national_carbon_t_per_day", "national_carbon_t_per_day", "t CO2/day", "Carbon per day, "
     "scaled to the whole country.", "sum", False),
    ("national_it_power_mw", "national_it_power_mw", "MW", "IT power, scaled to the whole "
     "country.", "sum", None),
    ("national_mean_facility_power_mw", "national_mean_facility_power_mw", "MW", "Mean facility "
     "power, scaled to the whole country.", "sum", None),
)  # fmt: skip
for _name, _key, _unit, _text, _agg, _better in _ECON:
    _add(_name, ("economics", _key), _unit, _text, _agg, _better)
_add(
    "model_list_price_cny_per_m_tokens",
    ("economics", "by_model", "*", "list_price_cny_per_m_tokens"),
    "CNY/M tokens",
    "The model's list prices blended at this run's input, cache-hit and output token mix.",
    "mean",
    None,
    "model",
)

# --- token market (scenarios with a market: or model mixes; gridsim/market/outputs.py) -------
# Totals of the market (simulated totals over the horizon, as economics); the per-plan and
# per-model blocks (market.by_plan, market.by_model) repeat them per plan and per model.
_MARKET: tuple[tuple[str, str, str, str, Aggregation, bool | None], ...] = (
    ("market_revenue_cny", "revenue_cny", "CNY", "Revenue of the token plans over the horizon: "
     "fees, per-token and overage (tokens sold by no plan at list prices).", "sum", True),
    ("market_fees_cny", "fees_cny", "CNY", "Subscription fees of the plans over the horizon.",
     "sum", True),
    ("market_per_token_cny", "per_token_cny", "CNY", "Per-token revenue (pay-as-you-go plans, and "
     "tokens sold by no plan) over the horizon.", "sum", True),
    ("market_overage_cny", "overage_cny", "CNY", "Revenue from tokens billed past a plan's quota "
     "over the horizon.", "sum", True),
    ("market_cost_cny", "cost_cny", "CNY", "Cost of serving the plans' tokens (electricity, capex, "
     "network; shared by served tokens).", "sum", False),
    ("market_margin_cny", "margin_cny", "CNY", "Plan revenue less the cost of serving it.", "sum",
     True),
    ("market_served_tokens", "served_tokens", "tokens", "Tokens served to the plans' subscribers.",
     "sum", True),
    ("market_quota_tokens", "quota_tokens", "tokens", "Quota tokens the subscribers of plans with "
     "a quota paid for over the horizon.", "sum", None),
    ("market_breakage_tokens", "breakage_tokens", "tokens", "Quota tokens paid for and left unused "
     "(breakage) over the horizon.", "sum", None),
    ("market_breakage_share", "breakage_share", "%", "Share of the quota tokens paid for that went "
     "unused (breakage).", "mean", None),
    ("market_throttled_tokens", "throttled_tokens", "tokens", "Tokens subscribers wanted past "
     "their quota or rate limit and were refused (throttled) over the horizon.", "sum", False),
    ("market_cost_cny_per_m_tokens", "cost_cny_per_m_tokens", "CNY/M tokens", "Cost per million "
     "tokens served to the plans.", "mean", False),
    ("market_revenue_cny_per_m_tokens", "revenue_cny_per_m_tokens", "CNY/M tokens", "Plan revenue "
     "per million tokens served.", "mean", True),
    ("national_market_revenue_cny_per_day", "national_revenue_cny_per_day", "CNY/day", "Plan "
     "revenue per day, scaled to the whole country.", "sum", True),
    ("national_market_margin_cny_per_day", "national_margin_cny_per_day", "CNY/day", "Plan margin "
     "per day, scaled to the whole country.", "sum", True),
    ("market_free_shed_share", "free_shed_share", "%", "Share of the free tier's requests shed "
     "(dropped or abandoned).", "mean", False),
)  # fmt: skip
for _name, _key, _unit, _text, _agg, _better in _MARKET:
    _add(_name, ("market", _key), _unit, _text, _agg, _better)
for _metric, _unit, _text, _agg, _better in (
    ("subscribers", "subscribers", "Subscribers (contracts for reserved plans)", "sum", None),
    ("fee_cny_per_subscriber_month", "CNY", "Monthly fee per subscriber", "first", None),
    ("quota_tokens_per_subscriber_month", "tokens", "Quota per subscriber per month", "first",
     None),
    ("demanded_tokens_per_subscriber_month", "tokens", "Mean tokens a subscriber wants per month "
     "(uncapped)", "mean", None),
    ("used_tokens_per_subscriber_month", "tokens", "Mean tokens a subscriber may use per month "
     "(after the quota and rate limit)", "mean", None),
    ("throttled_tokens_per_subscriber_month", "tokens", "Mean tokens a subscriber is refused per "
     "month (past the quota or rate limit)", "mean", False),
    ("overage_tokens_per_subscriber_month", "tokens", "Mean tokens a subscriber uses past the "
     "quota per month, billed as overage", "mean", None),
    ("breakage_tokens_per_subscriber_month", "tokens", "Mean quota tokens a subscriber leaves "
     "unused per month", "mean", None),
    ("quota_use_share", "%", "Share of the quota subscribers use", "mean", None),
):  # fmt: skip
    _add(f"plan_{_metric}", ("market", "by_plan", "*", _metric), _unit, f"{_text}.", _agg,
         _better, "plan")  # fmt: skip
for _metric, _unit, _text in (
    ("input_computed_tokens", "tokens", "Input tokens of this model computed (not cache hits)"),
    ("input_cache_hit_tokens", "tokens", "Input tokens of this model billed as cache hits"),
    ("output_tokens", "tokens", "Output tokens of this model served to the plans"),
):
    _add(f"market_model_{_metric}", ("market", "by_model", "*", _metric), _unit, f"{_text}.",
         "sum", None, "model")  # fmt: skip
for _metric, _unit, _text, _agg, _better in (
    ("priority", "", "Admission priority of the tier (0 is served first)", "first", None),
    ("engine_classes", "classes", "Engine classes (class x model) of the tier", "first", None),
    ("requests_arrived", "requests", "Requests of the tier that arrived", "sum", None),
    ("requests_served", "requests", "Requests of the tier served", "sum", True),
    ("requests_dropped", "requests", "Requests of the tier dropped by admission", "sum", False),
    ("requests_abandoned", "requests", "Requests of the tier that gave up waiting", "sum", False),
    ("requests_lost", "requests", "Requests of the tier lost to failures", "sum", False),
    ("requests_shed", "requests", "Requests of the tier shed (dropped or abandoned)", "sum",
     False),
    ("shed_share", "%", "Share of the tier's arrivals shed (dropped or abandoned)", "mean",
     False),
    ("sla_attainment", "%", "Share of the tier's requests that ended and met every SLO", "mean",
     True),
    ("tokens_served", "tokens", "Tokens served to the tier", "sum", True),
):  # fmt: skip
    _add(f"tier_{_metric}", ("market", "by_tier", "*", _metric), _unit, f"{_text}.", _agg,
         _better, "tier")  # fmt: skip

# --- fleet (scenarios with a fleet: block) ------------------------------------------------
for _metric, _unit, _text, _agg in (
    ("cards", "cards", "Cards of this accelerator in the inventory", "sum"),
    ("serving_share", "%", "Share of this accelerator's cards that serve tokens", "mean"),
    ("serving_cards", "cards", "Cards of this accelerator that serve tokens", "sum"),
    ("assigned_cards", "cards", "Serving cards of this accelerator assigned to pools", "sum"),
):
    _add(f"fleet_{_metric}", ("fleet", "by_accelerator", "*", _metric), _unit, f"{_text}.",
         _agg, None, "accelerator")  # fmt: skip
for _metric, _unit, _text, _agg in (
    ("fleet_share", "%", "Share of its accelerator's serving cards this pool holds", "sum"),
    ("cards", "cards", "Cards of this pool", "sum"),
    ("cards_per_replica", "cards", "Cards per serving replica of this pool", "first"),
    ("replicas", "replicas", "Serving replicas of this pool", "sum"),
):
    _add(f"fleet_pool_{_metric.removeprefix('fleet_')}", ("fleet", "pools", "*", _metric), _unit,
         f"{_text} (from the inventory).", _agg, None, "pool row")  # fmt: skip

# --- training and co-scheduling (scenarios with a training: block; gridsim.training) -------
_TRAINING: tuple[tuple[str, str, str, Aggregation, bool | None], ...] = (
    ("card_hours_available", "card-hours", "Card-hours the co-scheduling policy left free for "
     "training over the horizon, whether or not jobs used them", "sum", None),
    ("card_hours_done", "card-hours", "Training work done by the end of the horizon (lost work "
     "excluded, work not yet checkpointed included)", "sum", True),
    ("card_hours_run", "card-hours", "Card-hours training jobs held cards, lost work included",
     "sum", None),
    ("card_hours_lost", "card-hours", "Training work lost to preemptions (since each one's last "
     "checkpoint)", "sum", False),
    ("preemptions", "preemptions", "Times inference took back cards a training job held",
     "sum", False),
    ("jobs_finished", "jobs", "Training jobs finished within the horizon", "sum", True),
    ("deadline_attainment", "%", "Share of the training jobs due within the horizon that "
     "finished by their deadline", "mean", True),
    ("utilization", "%", "Busy (serving or training) over up card-seconds of the pools that "
     "lend cards to training", "mean", None),
    ("utilization_inference_only", "%", "The same utilisation in the inference-only flow run "
     "of the scenario", "mean", None),
    ("sla_attainment_inference_only", "%", "SLA attainment of the inference-only flow run of "
     "the scenario", "mean", True),
    ("energy_kwh", "kWh", "Energy of the cards lent to training (TDP x PUE while they train)",
     "sum", False),
    ("electricity_cny", "CNY", "Electricity cost of training, hour by hour at the node's price",
     "sum", False),
    ("carbon_kg", "kg CO2", "Carbon of training's electricity, hour by hour at the grid's "
     "intensity", "sum", False),
    ("electricity_cny_per_card_hour", "CNY/card-hour", "Training's electricity cost per "
     "card-hour run", "mean", False),
    ("carbon_kg_per_card_hour", "kg CO2/card-hour", "Training's carbon per card-hour run",
     "mean", False),
    ("dedicated_capex_avoided_cny", "CNY", "What the card-hours done would cost in capex on "
     "cards bought for training (card price over the amortisation hours)", "sum", True),
    ("data_moved_tb", "TB", "Data of the training jobs placed away from their origin, moved "
     "over the backbone before they start", "sum", None),
    ("data_transfer_cny", "CNY", "What moving that data costs at the network price per GB",
     "sum", False),
    ("electricity_cny_inference_only", "CNY", "Electricity cost of the inference-only flow run",
     "sum", False),
    ("carbon_kg_inference_only", "kg CO2", "Carbon of the inference-only flow run", "sum",
     False),
    ("electricity_cny_with_training", "CNY", "Electricity cost of the run, training included "
     "(as economics.electricity_cny)", "sum", False),
    ("carbon_kg_with_training", "kg CO2", "Carbon of the run, training included (as "
     "economics.carbon_kg)", "sum", False),
)  # fmt: skip
for _metric, _unit, _text, _agg, _better in _TRAINING:
    _add(f"training_{_metric}", ("training", _metric), _unit, f"{_text}.", _agg, _better)
for _metric, _unit, _text, _agg, _better in (
    ("card_hours", "card-hours", "Work the job needs", "sum", None),
    ("card_hours_done", "card-hours", "Work the job did by the end (lost work excluded)", "sum",
     True),
    ("card_hours_run", "card-hours", "Card-hours the job held cards", "sum", None),
    ("card_hours_lost", "card-hours", "Work the job lost to preemptions", "sum", False),
    ("preemptions", "preemptions", "Times inference took back the job's cards", "sum", False),
    ("pauses", "pauses", "Times the job checkpointed and paused for greener or cheaper hours",
     "sum", None),
    ("resizes", "resizes", "Times the job checkpointed and restarted on more cards", "sum",
     None),
    ("started_at_s", "s", "When the job first ran, after the horizon start", "min", None),
    ("finished_at_s", "s", "When the job finished, after the horizon start (empty: not within "
     "the horizon)", "max", False),
    ("deadline_s", "s", "The job's deadline, after the horizon start", "first", None),
    ("met_deadline", "", "Whether the job finished by its deadline (empty: due after the "
     "horizon, or none)", "min", True),
):  # fmt: skip
    _add(f"training_job_{_metric}", ("training", "jobs", "*", _metric), _unit, f"{_text}.",
         _agg, _better, "job")  # fmt: skip
_KINDS["training_job_met_deadline"] = "flag"
_add("training_policy", ("training", "policy"), "", "The co-scheduling policy.", "first", None)
_KINDS["training_policy"] = "text"
_add("training_job_node", ("training", "jobs", "*", "node"), "", "Node the job ran at.",
     "first", None, "job")  # fmt: skip
_KINDS["training_job_node"] = "text"

# --- power (scenarios with a power: block; gridsim.power) ----------------------------------
_add("power_hourly", ("power", "hourly"), "", "Whether carbon and prices are hourly.", "first",
     None)  # fmt: skip
_KINDS["power_hourly"] = "flag"
_add("green_target_share", ("power", "green_target_share"), "%", "The scenario's green-power "
     "target for each site.", "first", None)  # fmt: skip
_add("green_share", ("power", "green_share"), "%", "Green electricity over all electricity: "
     "own renewables up to each site's draw plus the grid's hourly green share of the rest.",
     "mean", True)  # fmt: skip
_add("onsite_kwh", ("power", "onsite_kwh"), "kWh", "Electricity from the sites' own "
     "renewables (up to their draw).", "sum", True)  # fmt: skip
_add("sites_meeting_green_target", ("power", "sites_meeting_green_target"), "sites", "Sites "
     "whose green share reaches the target.", "sum", True)  # fmt: skip
for _metric, _unit, _text, _agg, _better in (
    ("energy_kwh", "kWh", "Electricity of the site (serving and training)", "sum", None),
    ("green_kwh", "kWh", "Green electricity of the site", "sum", True),
    ("onsite_kwh", "kWh", "Electricity from the site's own renewables", "sum", True),
    ("green_share", "%", "Green share of the site's electricity", "mean", True),
    ("meets_green_target", "", "Whether the site's green share reaches the target", "min",
     True),
):  # fmt: skip
    _add(f"site_{_metric}", ("power", "by_node", "*", _metric), _unit, f"{_text}.", _agg,
         _better, "node")  # fmt: skip
_KINDS["site_meets_green_target"] = "flag"

# --- uncertainty (gridsim run --draws N) ---------------------------------------------------
_add("uncertainty_draws", ("uncertainty", "draws"), "draws", "Monte Carlo draws run.", "first",
     None)  # fmt: skip
_add(
    "band_censored",
    ("uncertainty", "bands", "*", "censored"),
    "draws",
    "Draws with no value within the horizon (for the shortfall: no shortfall).",
    "sum",
    None,
    "KPI",
)

# --- topology ------------------------------------------------------------------------------
for _scope, _text in (("city", "1 ms in a city"), ("region", "5 ms in a region"),
                      ("hub", "20 ms between hubs")):  # fmt: skip
    _add(
        f"regions_meeting_{_scope}_target",
        ("topology", "regions_meeting", _scope),
        "regions",
        f"Regions whose demand reaches compute within the target of {_text}.",
        "sum",
        True,
    )
    _add(
        f"region_meets_{_scope}_target",
        ("topology", "by_region", "*", f"meets_{_scope}"),
        "",
        f"Whether this region reaches compute within {_text} (empty: no site in its city).",
        "min",
        True,
        "region",
    )
    _KINDS[f"region_meets_{_scope}_target"] = "flag"
_add("topology_regions", ("topology", "regions"), "regions", "Regions checked.", "first", None)
_add(
    "region_nearest_ms",
    ("topology", "by_region", "*", "nearest_ms"),
    "ms",
    "One-way network latency from this region to its nearest compute node.",
    "mean",
    False,
    "region",
)
_add(
    "region_city_ms",
    ("topology", "by_region", "*", "city_ms"),
    "ms",
    "One-way latency from this region to a node in its own city (empty: none).",
    "mean",
    False,
    "region",
)

REGISTRY: dict[str, Kpi] = {}
for _kpi in _K:
    if _kpi.name in REGISTRY:
        raise AssertionError(f"KPI {_kpi.name!r} is registered twice")
    REGISTRY[_kpi.name] = _kpi

# The KPIs the report cards, compare and the command line show first, in this order.
HEADLINE: tuple[str, ...] = (
    "requests_served",
    "tokens_served",
    "sla_attainment",
    "latency_p95_s",
    "ttft_p95_s",
    "utilization_mean",
    "cost_cny_per_m_tokens",
    "national_cost_cny_per_day",
    "national_energy_kwh_per_day",
    "shortfall_day",
    "shortfall_at",
    "gap_cards",
    # token market runs only (absent elsewhere, so not shown)
    "market_revenue_cny",
    "market_margin_cny",
    "market_breakage_share",
    "market_free_shed_share",
    # runs with training or power blocks only
    "training_card_hours_done",
    "training_utilization",
    "green_share",
)

# Blocks of summary.json that are not KPIs: what ran and how, free text and inputs.
METADATA: tuple[tuple[str, ...], ...] = (
    ("scenario",),  # the scenario's name
    ("seed",),  # the run's seed
    ("fidelity",),  # request or flow
    ("notes",),  # free text for the reader
    ("engine_warnings",),  # free text for the reader
    ("sample",),  # how a pool sample was drawn (its inputs and the counts simulated)
    ("economics", "assumptions"),  # the economic inputs
    ("economics", "sample"),  # a note on a pool sample's economics
    ("economics", "horizon_s"),  # the same as horizon_s
    ("capacity", "definition"),  # the shortfall definition, a sentence
    ("fleet", "inventory"),  # which inventory (input)
    ("fleet", "case"),  # low / central / high (input)
    ("fleet", "as_of"),  # the inventory's date (input)
    ("uncertainty", "parameters"),  # the distributions drawn from (inputs)
    ("uncertainty", "bands", "*", "unit"),  # the band's KPI unit, as in the registry
    ("topology", "targets_ms"),  # the policy targets (inputs)
    ("topology", "by_region", "*", "nearest_node"),  # a node id (null when unreachable)
    ("topology", "by_region", "*", "city_node"),  # a node id, null without a node in the city
)

# Per-entity blocks that repeat national KPIs: the block's path (a "*" for the entity) and the
# entity kind. A KPI under the block has the national KPI's path with the block in place of
# the block's parent: ("economics", "by_model", "m", "cost_cny") is ("economics", "cost_cny").
ENTITY_BLOCKS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("by_class",), "by_class"),
    (("by_region",), "by_region"),
    (("by_node",), "by_node"),
    (("by_pool",), "by_pool"),
    (("economics", "by_node_kind"), "by_node_kind"),
    (("economics", "by_model"), "by_model"),
    (("capacity", "by_model"), "capacity_by_model"),
    (("capacity", "by_hub"), "by_hub"),
    (("market", "by_plan"), "by_plan"),
    (("market", "by_model"), "market_by_model"),
)
BANDS = ("uncertainty", "bands")
BAND_STATS = {"p10": "10th", "p50": "50th", "p90": "90th"}

_BY_PATH: dict[tuple[str, ...], Kpi] = {k.path: k for k in _K if not k.is_pattern}
_PATTERNS: list[Kpi] = [k for k in _K if k.is_pattern]


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return len(pattern) == len(path) and all(
        p in ("*", q) for p, q in zip(pattern, path, strict=True)
    )


def kpi_for_path(path: Sequence[str]) -> Kpi | None:
    """The registry entry for a concrete path into summary.json, or None. Per-entity blocks
    give the national KPI; ``uncertainty.bands.<kpi>.p10`` gives that KPI's 10th percentile
    over draws (a Kpi named ``<kpi>_p10``)."""
    path = tuple(str(p) for p in path)
    if path in _BY_PATH:
        return _BY_PATH[path]
    for kpi in _PATTERNS:
        if _match(kpi.path, path):
            return kpi
    for block, _kind in ENTITY_BLOCKS:
        n = len(block)
        if len(path) > n + 1 and path[:n] == block:
            found = _BY_PATH.get((*block[:-1], *path[n + 1 :]))
            if found is not None:
                return found
    if len(path) == 4 and path[:2] == BANDS and path[3] in BAND_STATS:
        base = REGISTRY.get(path[2])
        if base is not None and not base.is_pattern:
            return band_kpi(base, path[3])
    return None


def band_kpi(base: Kpi, stat: str) -> Kpi:
    """The Kpi of a band percentile (``shortfall_day_p10``) of a registered KPI."""
    return dataclasses.replace(
        base,
        name=f"{base.name}_{stat}",
        path=(*BANDS, base.name, stat),
        definition=f"{BAND_STATS[stat]} percentile over Monte Carlo draws of: {base.definition}",
        aggregation="first",
    )


def is_metadata(path: Sequence[str]) -> bool:
    """Whether ``path`` is in (or under) one of the ``METADATA`` blocks."""
    path = tuple(str(p) for p in path)
    return any(len(path) >= len(m) and _match(m, path[: len(m)]) for m in METADATA)


def value(summary: dict[str, Any], name: str) -> Any:
    """A KPI's value in a summary: None where the summary lacks it; for a per-entity KPI
    (a ``*`` in its path) a dict of entity -> value."""
    kpi = REGISTRY[name]
    if not kpi.is_pattern:
        return _get(summary, kpi.path)
    return {e.entity_id: e.value for e in entries_for(summary) if e.kpi.name == name}


def _get(node: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def leaves(summary: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf of a summary (lists of mappings by row number), with its path."""
    if isinstance(summary, dict):
        for key, item in summary.items():
            yield from leaves(item, (*path, str(key)))
    elif isinstance(summary, list) and summary and all(isinstance(r, dict) for r in summary):
        for i, row in enumerate(summary):
            yield from leaves(row, (*path, str(i)))
    else:
        yield path, summary


def entries_for(summary: dict[str, Any]) -> list[Entry]:
    """The registry's KPIs present in a summary, in summary order: national figures with an
    empty entity, per-entity ones with the entity's kind (``by_class``, ``gap row``) and id."""
    out: list[Entry] = []
    for path, leaf in leaves(summary):
        if is_metadata(path):
            continue
        kpi = kpi_for_path(path)
        if kpi is None:
            continue
        kind, ident = _entity_of(kpi, path)
        out.append(Entry(kpi, path, leaf, kind, ident))
    return out


def _entity_of(kpi: Kpi, path: tuple[str, ...]) -> tuple[str, str]:
    if kpi.path == path:
        return "", ""
    if kpi.is_pattern:
        return kpi.entity, "/".join(p for k, p in zip(kpi.path, path, strict=True) if k == "*")
    if path[:2] == BANDS:
        return "", ""  # a band's percentile is a national figure of its own name
    for block, kind in ENTITY_BLOCKS:
        if path[: len(block)] == block:
            return kind, path[len(block)]
    return "", ""


def national(summary: dict[str, Any]) -> list[Entry]:
    """The entries of the whole grid (no entity), in summary order."""
    return [e for e in entries_for(summary) if not e.entity_kind]


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` with the headline KPIs first (in their order), then the rest as given."""
    names = list(names)
    head = [n for n in HEADLINE if n in names]
    return head + [n for n in names if n not in head]


def is_number(x: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?$")


def is_date(x: Any) -> bool:
    """An ISO date or date-time string (``2026-03-17`` or ``2026-03-17T04:00:00``)."""
    return isinstance(x, str) and bool(_ISO.match(x))


def format_value(kpi: Kpi | Entry, x: Any) -> str:
    """A KPI's value for a person, in its unit (``gridsim.numbers``): "3.65 T tokens",
    "94.1 %", "2026-03-17 04:00"; None reads "—"."""
    from gridsim.numbers import MISSING, human, human_count

    unit = kpi.unit
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    if isinstance(x, bool):
        return "yes" if x else "no"
    if unit == "date" or isinstance(x, str):
        return str(x).replace("T", " ")[:16]
    if unit in ("requests", "tokens", "cards", "replicas", "regions", "draws"):
        return f"{human_count(x)} {unit}"
    return human(x, unit)


def aggregate(kpi: Kpi, values: Sequence[Any]) -> Any:
    """One figure from several values of ``kpi`` by its aggregation (None values left out;
    dates compare as text, which orders ISO dates)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return None
    if kpi.aggregation == "first":
        return present[0]
    if kpi.aggregation == "min":
        return min(present)
    if kpi.aggregation == "max":
        return max(present)
    total = sum(float(v) for v in present)
    return total if kpi.aggregation == "sum" else total / len(present)


def check_names(names: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` naming ``where`` when a name is not a registry KPI."""
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(
            f"{where}: {', '.join(map(repr, unknown))} not in the KPI registry "
            "(gridsim/kpis.py); use a registry name such as latency_p95_s"
        )
