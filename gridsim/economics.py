"""Energy, cost, revenue and carbon of a run: pure functions over its tables (no file I/O).

They read a run's ``pools``, ``flows`` and ``timeseries`` tables, its summary (horizon, node
utilisation) and its scenario (sample fraction, catalogue prices): ``RunTables``, which a
``gridsim.run.Result`` is, so economics sits below the run and never imports it.

Definitions (each once; per pool and per interval of ``outputs.timeseries_interval``):

- **energy**: ``E = P_it / S x (idle x C + (1 - idle) x B) x PUE``, where ``P_it`` is the
  pool's nameplate IT power (accelerators x TDP; job pools: slots x ``job_slot_power_w``),
  ``S`` its slots, ``C`` and ``B`` the interval's capacity and busy slot-seconds. With the pool
  up the whole interval of length ``w`` (``C = S w``) this is the usual
  ``cards x (idle x TDP + (1 - idle) x TDP x busy share) x PUE x w``, busy share ``B / C``; an
  interval a pool is partly down counts only its up time and a pool that is down (``C = 0``)
  draws nothing; cards lent to training (``gridsim.training``: the interval's
  ``training_card_s``, out of ``C``) add TDP x PUE while they train;
- **electricity cost** = energy x the node's price (x an hourly time-of-use factor: the
  global ``Assumptions.tou_multipliers``, and with the scenario's ``power:`` block the node's
  schedule, ``gridsim.power.sites``);
- **capex** = accelerators x card price over ``amortisation_years`` + facility capex per MW of
  nameplate IT power over ``facility_years``, both accrued per second for the cards installed
  at each instant (``gridsim.capacity_timeline``: a build-out from its cards' arrival, ``at`` +
  ``lead_time``; a retirement from ``at``; outages change nothing);
- **IT power** = cards x TDP (job slots x slot power), at the start and at the end of the
  horizon (``it_power_kw_start``, ``it_power_kw_end``; ``it_power_kw`` is the start's);
- **network cost** = tokens served x ``bytes_per_token`` x ``network_cny_per_gb``;
- **revenue** = input tokens x ((1 - h) x input list price + h x cache-hit list price) +
  output tokens x output list price of the model that served the flow (catalogue, CNY per 1e6
  tokens): the pool's model, or at a pooled pool (several models on shared cards) the class's
  own; ``h`` is the class's ``cache_hit_share`` (scenario; ``Assumptions.cache_hit_share``,
  when set, overrides it for every class); classes are those the engines ran
  (``gridsim.market.expand``: one per class, model and tier with a market); job pools earn
  nothing;
- **carbon** = energy drawn from the grid x the node's grid intensity (with ``power:``
  ``hourly``, the interval's; the node's own renewables, ``power.onsite``, cover its energy
  first and emit nothing); **green energy** (``power:`` only) = own renewables + the grid's
  hourly green share of the rest. With a series interval over an hour, each interval takes
  the mean price factor, carbon and green share of its hours (exact for a load flat within
  it; the run's notes say so);
- **by model** (``by_model``): the cost of the pools serving a model (electricity, capex and
  their network cost, which is by tokens) per million of their served tokens, against the
  model's list prices blended at the run's mix of its input, cache-hit and output tokens. A
  pooled pool's figures go to its models by their flows' share of its served tokens.

Pool figures are attributed to classes and regions by their share of the pool's served tokens
(by requests in job pools); a pool that served nothing stays with the ``(idle)`` row. Runs
simulate ``demand.sample_fraction`` of national demand and capacity, so ``economics_summary``
gives simulated totals and national figures per day (``national_*_per_day`` = total /
sample_fraction x 86400 / horizon): an extrapolation of the simulated window, not a forecast.

A pool sample (``demand.sample_pools``, request fidelity; ``gridsim.grid.PoolSample``) simulates
a few pools at full size: the pools table gives the others no slots and no cards, so every
total here (energy, cost, revenue, carbon) is that of the sampled pools. Its national figures
scale each class's share of them (its flows, as ``flow_economics`` attributes pool figures) by
1 / the class's share of demand simulated, x 86400 / horizon: the whole grid's demand of each
simulated class served at the sampled pools' cost, energy and carbon per unit of work. Classes
not simulated, and sampled pools that served nothing, are left out of them. ``economics_summary``
says so under ``"sample"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from gridsim.capacity_timeline import integrate, pool_steps, start_end
from gridsim.market.expand import expand
from gridsim.scenario import Scenario
from gridsim.scenario.schema import DemandClass

SECONDS_PER_YEAR = 8760.0 * 3600.0  # as serving.HOURS_PER_YEAR
J_PER_KWH = 3.6e6
TRAINING_CARD_S = "training_card_s"  # card-seconds lent to training (gridsim.training)
IDLE = "(idle)"  # class/region label of cost from pools that served nothing
GroupBy = Literal["pool", "node", "node_kind", "model", "region", "class"]


@dataclass(frozen=True)
class Assumptions:
    """Economic assumptions, with their defaults and where they come from."""

    # ASSUMPTION: power of one generic job slot (supercomputer pools have no accelerators in
    # the pools table). A slot of the baseline is about one CPU core (4e6 slots a centre):
    # Tianhe-2 drew 17.8 MW for 3.12e6 cores (~5.7 W/core; TOP500, June 2013), Sunway
    # TaihuLight 15.4 MW for 10.6e6 cores (~1.4 W/core) [S:top500-power].
    job_slot_power_w: float = 6.0
    job_idle_fraction: float = 0.3  # ASSUMPTION: as the accelerator catalogue's default
    job_slot_price_cny: float = 0.0  # ASSUMPTION: no source found; 0 leaves HPC hardware out
    amortisation_years: float = 5.0  # ASSUMPTION: accelerator life (as serving.deployment)
    # DC capex $10-12 M per MW of IT load (standard; range $7-15 M) [S:dc-capex-per-mw]
    facility_capex_usd_per_mw: float = 10e6
    cny_per_usd: float = 7.0  # Bailian prices imply ~6.97 CNY/USD [S:bailian-prices]
    facility_years: float = 15.0  # ASSUMPTION: building and M&E depreciation
    # ASSUMPTION: no public price of inter-region bandwidth was found; 0 leaves transfer out
    network_cny_per_gb: float = 0.0
    bytes_per_token: float = 4.0  # ASSUMPTION: ~4 bytes of text per token, both directions
    # share of input tokens billed at the cache-hit price, for every class; None: each class's
    # own cache_hit_share from the scenario (demand.classes[].cache_hit_share, default 0)
    cache_hit_share: float | None = None
    # 24 hourly factors on the electricity price (hour 0 = midnight); None: flat
    tou_multipliers: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        tou = self.tou_multipliers
        if tou is not None and (len(tou) != 24 or any(f < 0 for f in tou)):
            raise ValueError("tou_multipliers needs 24 non-negative hourly factors")
        h = self.cache_hit_share
        if h is not None and not 0.0 <= h <= 1.0:
            raise ValueError("cache_hit_share must lie in [0, 1] (or be None: per class)")
        if self.amortisation_years <= 0 or self.facility_years <= 0:
            raise ValueError("amortisation_years and facility_years must be positive")


class RunTables(Protocol):
    """What economics reads of a run (``gridsim.run.Result`` has it all)."""

    @property
    def scenario(self) -> Scenario: ...
    @property
    def summary(self) -> dict[str, Any]: ...
    @property
    def timeseries(self) -> pd.DataFrame: ...
    @property
    def flows(self) -> pd.DataFrame: ...
    @property
    def pools(self) -> pd.DataFrame: ...


DEFAULT = Assumptions()
_SUMS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "energy_kwh",
    "electricity_cny",
    "capex_cny",
    "network_cny",
    "revenue_cny",
    "carbon_kg",
)


def pool_intervals(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    """Energy, electricity cost and carbon per pool per interval.

    Columns: pool, time_s, busy_slot_s, capacity_slot_s, busy_share, energy_kwh,
    electricity_cny, carbon_kg, and tokens / capacity_tokens: busy (capacity) slot-seconds x
    the pool's served tokens per busy slot-second over the run (an estimate: tokens are counted
    per request, not per interval). Without pool series in the time series (an engine that does not
    record them), one interval per pool: up all the horizon at the node's mean utilisation.
    """
    a = assumptions
    pools = result.pools.set_index("pool")
    ts = result.timeseries
    metrics = ["busy_slot_s", "capacity_slot_s", TRAINING_CARD_S]
    mask = (ts["entity_kind"] == "pool") & ts["metric"].isin(metrics)
    if mask.any():
        wide = ts[mask].pivot_table(
            index=["entity_id", "time_s"], columns="metric", values="value", aggfunc="sum"
        )
        wide = wide.reindex(columns=metrics, fill_value=0.0)
        frame = wide.fillna(0.0).reset_index().rename(columns={"entity_id": "pool"})
        frame = frame[frame["pool"].isin(pools.index)]
    else:
        frame = _whole_horizon(result).assign(**{TRAINING_CARD_S: 0.0})
    p = pools.loc[frame["pool"]]
    slots = p["slots"].to_numpy(dtype=float)
    it_w = _it_power_w(p, a)
    idle = np.where(p["kind"] == "job", a.job_idle_fraction, p["accelerator_idle_fraction"])
    busy = frame["busy_slot_s"].to_numpy(dtype=float)
    cap = frame["capacity_slot_s"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a pool built from nothing has no start slots: its cards' power per slot of a replica
        per_slot_w = np.where(slots > 0, it_w / slots, _slot_power_w(p, a))
        share = np.where(cap > 0, busy / cap, 0.0)
    pue = p["pue"].to_numpy()
    joules = per_slot_w * (idle * cap + (1.0 - idle) * np.minimum(busy, cap)) * pue
    # cards lent to training (gridsim.training) run flat out: TDP x PUE while they train
    train_j = frame[TRAINING_CARD_S].to_numpy(dtype=float) * p["accelerator_tdp_w"].to_numpy() * pue
    kwh = (joules + train_j) / J_PER_KWH
    time_s = frame["time_s"].to_numpy(dtype=float)
    hour = (time_s // 3600).astype(int) % 24
    tou = np.asarray(a.tou_multipliers)[hour] if a.tou_multipliers is not None else 1.0
    out = frame.assign(busy_share=share, energy_kwh=kwh, training_kwh=train_j / J_PER_KWH)
    price = _prices_over_time(result, frame, p)
    carbon = p["carbon_g_per_kwh"].to_numpy(dtype=float)
    grid_kwh = kwh
    hourly = hourly_power(result, frame, p)
    if hourly is not None:  # the scenario's power: block: hourly carbon, TOU, own renewables
        tou = tou * hourly["tou"]
        carbon = hourly["carbon_g_per_kwh"]
        # own renewables cover the node's energy up to their output in the interval, shared
        # by its pools in proportion to their energy
        node_kwh = pd.Series(kwh).groupby([p["node"].to_numpy(), time_s]).transform("sum")
        with np.errstate(invalid="ignore", divide="ignore"):
            cover = np.minimum(hourly["onsite_kwh"] / node_kwh.to_numpy(), 1.0)
        own = kwh * np.nan_to_num(cover)
        grid_kwh = kwh - own
        out["onsite_kwh"] = own
        out["green_kwh"] = own + grid_kwh * hourly["grid_green_share"]
    out["electricity_cny"] = kwh * price * tou
    out["carbon_kg"] = grid_kwh * carbon / 1e3
    flows = result.flows
    if flows.empty:
        served = pd.Series(dtype=float)
    else:
        served = (flows["input_tokens"] + flows["output_tokens"]).groupby(flows["pool"]).sum()
    busy_total = out.groupby("pool")["busy_slot_s"].sum()
    ratio = (served.reindex(busy_total.index).fillna(0.0) / busy_total).replace(np.inf, 0.0)
    per_busy_s = ratio.fillna(0.0).reindex(out["pool"]).to_numpy()
    out["tokens"] = busy * per_busy_s
    out["capacity_tokens"] = cap * per_busy_s
    return out.reset_index(drop=True)


def hourly_power(
    result: RunTables, frame: pd.DataFrame, p: pd.DataFrame
) -> dict[str, np.ndarray[Any, Any]] | None:
    """Per interval row of ``frame`` (pool rows ``p``), with the scenario's ``power:`` block:
    the interval's mean time-of-use factor, grid carbon intensity and green share at the
    pool's node, and the share of the node's energy in the interval its own renewables cover
    (``gridsim.power.sites``). None without the block."""
    sc = result.scenario
    if sc.power is None or frame.empty:
        return None
    from gridsim.power.sites import interval_means, node_power

    nodes = tuple(sorted(set(p["node"])))
    first = p.groupby("node", sort=True).first()
    carbon = {str(k): float(v) for k, v in first["carbon_g_per_kwh"].items()}
    price = {str(k): float(v) for k, v in first["price_cny_per_kwh"].items()}
    hourly = node_power(sc, nodes, carbon, price)
    time_s = frame["time_s"].to_numpy(dtype=float)
    interval = float(sc.outputs.timeseries_interval)
    times, row = np.unique(time_s, return_inverse=True)
    widths = np.minimum(interval, _horizon_s(result) - times)
    col = np.array([nodes.index(n) for n in p["node"]], dtype=np.intp)
    out: dict[str, np.ndarray[Any, Any]] = {}
    for key, series in (
        ("tou", hourly.tou_factor),
        ("carbon_g_per_kwh", hourly.carbon_g_per_kwh),
        ("grid_green_share", hourly.grid_green_share),
        ("onsite_kw", hourly.onsite_kw),
    ):
        out[key] = interval_means(series, times, widths)[row, col]
    out["onsite_kwh"] = out.pop("onsite_kw") * widths[row] / 3600.0  # the node's, not the pool's
    return out


def _prices_over_time(
    result: RunTables, frame: pd.DataFrame, p: pd.DataFrame
) -> np.ndarray[Any, Any]:
    """Each interval's electricity price: the pool's node price, changed by price_change events
    (the node's latest change at or before the interval's start)."""
    price = p["price_cny_per_kwh"].to_numpy(dtype=float).copy()
    ts = result.timeseries
    changes = ts[(ts["entity_kind"] == "node") & (ts["metric"] == "price_cny_per_kwh")]
    if changes.empty:
        return price
    nodes = p["node"].to_numpy()
    times = frame["time_s"].to_numpy(dtype=float)
    for node, rows in changes.sort_values("time_s", kind="stable").groupby("entity_id"):
        at = rows["time_s"].to_numpy(dtype=float)
        values = rows["value"].to_numpy(dtype=float)
        mine = nodes == node
        last = np.searchsorted(at, times[mine], side="right") - 1
        price[mine] = np.where(last >= 0, values[np.maximum(last, 0)], price[mine])
    return price


def pool_economics(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    """One row per pool: served work, energy, cost parts, revenue, carbon and margin."""
    a = assumptions
    pools = result.pools
    energy = (
        pool_intervals(result, a)
        .groupby("pool")[["energy_kwh", "electricity_cny", "carbon_kg"]]
        .sum()
    )
    flows = _flows_served(result, a)
    served = flows.groupby("pool")[
        ["requests", "input_tokens", "output_tokens", "network_cny", "revenue_cny"]
    ].sum()
    out = pools[["pool", "node", "node_kind", "kind", "model", "accelerator"]].copy()
    out = (
        out.join(served, on="pool")
        .join(energy, on="pool")
        .fillna(dict.fromkeys([*served.columns, *energy.columns], 0.0))
    )
    it_w = _it_power_w(pools, a)
    # capex accrues per second for the cards installed at each instant: build-outs from
    # their cards' arrival, retirements from their date (outages change nothing)
    card_s, watt_s, end_w = _capacity_integrals(result, a)
    card_price = np.where(
        pools["kind"] == "job", a.job_slot_price_cny, pools["accelerator_price_cny"]
    )
    out["it_power_kw"] = it_w / 1e3  # at the start, as it_power_kw_start
    out["it_power_kw_start"] = it_w / 1e3
    out["it_power_kw_end"] = end_w / 1e3
    out["capex_cny"] = card_s * card_price / (a.amortisation_years * SECONDS_PER_YEAR)
    facility_cny_per_w = a.facility_capex_usd_per_mw * a.cny_per_usd / 1e6
    out["capex_cny"] += watt_s * facility_cny_per_w / (a.facility_years * SECONDS_PER_YEAR)
    return _finish(out)


def flow_economics(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    """One row per (class, region, pool) flow: its tokens, network cost and revenue, and its
    share of its pool's energy, electricity, capex and carbon (by served tokens; by requests in
    pools without tokens). Pools that served nothing add a row with class and region
    ``(idle)``, so the rows add up to the pool totals."""
    flows = _flows_served(result, assumptions)
    per_pool = pool_economics(result, assumptions).set_index("pool")
    tokens = (flows["input_tokens"] + flows["output_tokens"]).to_numpy()
    pool_tokens = flows.assign(t=tokens).groupby("pool")["t"].transform("sum").to_numpy()
    pool_reqs = flows.groupby("pool")["requests"].transform("sum").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(
            pool_tokens > 0, tokens / pool_tokens, flows["requests"].to_numpy() / pool_reqs
        )
    weight = np.nan_to_num(weight)
    for col in ("energy_kwh", "electricity_cny", "capex_cny", "carbon_kg"):
        flows[col] = per_pool[col].reindex(flows["pool"]).to_numpy() * weight
    idle = per_pool[~per_pool.index.isin(flows["pool"])].reset_index()
    if not idle.empty:
        rows = idle[["pool", "node", "energy_kwh", "electricity_cny", "capex_cny", "carbon_kg"]]
        rows = rows.assign(**{"class": IDLE, "region": IDLE}, requests=0.0, input_tokens=0.0)
        rows = rows.assign(output_tokens=0.0, revenue_cny=0.0, network_cny=0.0)
        flows = pd.concat([flows, rows[flows.columns]], ignore_index=True)
    flows["node_kind"] = (
        result.pools.set_index("pool")["node_kind"].reindex(flows["pool"]).to_numpy()
    )
    return _finish(flows)


def economics_by(
    result: RunTables, by: GroupBy = "node", assumptions: Assumptions = DEFAULT
) -> pd.DataFrame:
    """Tidy table, one row per ``by`` value (pool, node, node_kind, model, region or class),
    with energy_kwh, electricity_cny, capex_cny, network_cny, cost_cny, revenue_cny,
    margin_cny, carbon_kg, tokens and cost_cny_per_m_tokens (simulated totals over the
    horizon); by pool, node, node_kind and model also it_power_kw (at the start, as
    it_power_kw_start) and it_power_kw_end. By model, job pools (no model) are left out."""
    if by == "model":
        table = _model_rows(result, assumptions, pool_economics(result, assumptions))
    elif by in ("pool", "node", "node_kind"):
        table = pool_economics(result, assumptions)
    else:
        table = flow_economics(result, assumptions)
    grouped = table.groupby(by, sort=True)[list(_SUMS)].sum()
    for col in ("it_power_kw", "it_power_kw_start", "it_power_kw_end"):
        if col in table:
            grouped[col] = table.groupby(by, sort=True)[col].sum()
    return _finish(grouped.reset_index())


def by_node(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    return economics_by(result, "node", assumptions)


def by_region(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    return economics_by(result, "region", assumptions)


def by_class(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    return economics_by(result, "class", assumptions)


def model_token_mix(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    """Per model (index): the served tokens billed at each of its three list prices, summed
    over its pools' flows: ``input_tokens`` (computed: input not served from the prefix cache,
    ``(1 - h)`` x input of each class), ``cache_hit_tokens`` (``h`` x input) and
    ``output_tokens``, with ``h`` each class's cache-hit share (``cache_hit_shares``)."""
    flows = _flows_served(result, assumptions)
    model = _flow_models(result, flows)
    h = flows["class"].map(cache_hit_shares(result, assumptions)).fillna(0.0).to_numpy(float)
    inp = flows["input_tokens"].to_numpy(dtype=float)
    mix = pd.DataFrame(
        {
            "model": model,
            "input_tokens": inp * (1.0 - h),
            "cache_hit_tokens": inp * h,
            "output_tokens": flows["output_tokens"].to_numpy(dtype=float),
        }
    )
    return mix.dropna(subset=["model"]).groupby("model", sort=True).sum()


def by_model(
    result: RunTables,
    assumptions: Assumptions = DEFAULT,
    pools: pd.DataFrame | None = None,
) -> dict[str, dict[str, float | None]]:
    """Per model served by an LLM pool, for summary.json: its pools' served ``tokens``,
    ``cost_cny`` (their electricity and capex, and network cost by tokens), ``revenue_cny``,
    ``margin_cny``, ``cost_cny_per_m_tokens``, and ``list_price_cny_per_m_tokens``: the
    model's input, cache-hit and output list prices blended at this run's mix of those tokens
    for it (``model_token_mix``), to hold the cost against. Revenue is billed at the same list
    prices, so the blend is also the revenue per million tokens. None where no tokens were
    served (a model whose pools stood idle, or a model without list prices). ``pools``: the
    run's ``pool_economics``, when already computed."""
    if pools is None:
        pools = pool_economics(result, assumptions)
    by_served = _model_rows(result, assumptions, pools)
    table = _finish(by_served.groupby("model", sort=True)[list(_SUMS)].sum())
    mix = model_token_mix(result, assumptions)
    prices = _prices(result)
    out: dict[str, dict[str, float | None]] = {}
    parts_of = {str(k): {str(c): v for c, v in r.items()} for k, r in mix.to_dict("index").items()}
    rows = {str(k): {str(c): v for c, v in r.items()} for k, r in table.to_dict("index").items()}
    for model, row in rows.items():
        m = str(model)
        tokens = float(row["tokens"])
        parts = parts_of.get(m)
        list_price: float | None = None
        if parts is not None and m in prices:
            billed = float(sum(parts.values()))
            p_in, p_hit, p_out = prices[m]
            value = (
                parts["input_tokens"] * p_in
                + parts["cache_hit_tokens"] * p_hit
                + parts["output_tokens"] * p_out
            )
            list_price = float(value) / billed if billed > 0 else None
        cost, revenue = float(row["cost_cny"]), float(row["revenue_cny"])
        out[m] = {
            "tokens": tokens,
            "cost_cny": cost,
            "revenue_cny": revenue,
            "cost_cny_per_m_tokens": _ratio(cost * 1e6, tokens),
            "list_price_cny_per_m_tokens": list_price,
            "margin_cny": revenue - cost,
        }
    return out


def national_per_day(result: RunTables) -> float:
    """Factor from a simulated total to a national figure per day: ``national_scale`` x
    86400 / horizon."""
    return 86400.0 / _horizon_s(result) * national_scale(result)


def national_scale(result: RunTables) -> float:
    """Factor from a simulated total to the whole grid's: / sample_fraction, or with a pool
    sample / its share of the grid's expected requests (one factor for every class: the
    class-by-class figures are in ``economics_summary``)."""
    sample = pool_sample(result)
    if sample is not None and sample.get("share_of_demand"):
        return 1.0 / float(sample["share_of_demand"])
    return 1.0 / float(result.scenario.demand.sample_fraction)


def pool_sample(result: RunTables) -> dict[str, Any] | None:
    """The run's pool sample (``PoolSample.describe()``): from its summary, else from its pools
    table (``attrs["sample"]``); None for a run of the whole grid or of a sample_fraction."""
    sample = result.summary.get("sample") or result.pools.attrs.get("sample")
    return sample if isinstance(sample, dict) and sample.get("method") == "pools" else None


def economics_summary(result: RunTables, assumptions: Assumptions = DEFAULT) -> dict[str, Any]:
    """Totals, national-scale figures per day, and a breakdown by node kind, for summary.json
    (under ``"economics"``); JSON-safe (None where a figure is undefined)."""
    pools = pool_economics(result, assumptions)
    horizon_s = _horizon_s(result)
    fraction = float(result.scenario.demand.sample_fraction)
    sample = pool_sample(result)
    if sample is None:
        totals = _totals(pools, horizon_s, fraction)
        by_kind = {
            str(kind): _totals(group, horizon_s, fraction)
            for kind, group in pools.groupby("node_kind", sort=True)
        }
    else:
        flows = flow_economics(result, assumptions)
        per_class = {c: v.get("scale") or 0.0 for c, v in sample.get("classes", {}).items()}
        flows["scale"] = flows["class"].map(per_class).fillna(0.0)
        totals = _totals(pools, horizon_s, 1.0, _national_sums(flows))
        by_kind = {
            str(kind): _totals(
                group, horizon_s, 1.0, _national_sums(flows[flows["node_kind"] == kind])
            )
            for kind, group in pools.groupby("node_kind", sort=True)
        }
    out: dict[str, Any] = {
        "horizon_s": horizon_s,
        "sample_fraction": fraction,
        **totals,
        # nameplate IT power of the cards installed at the start and at the end of the horizon
        "it_power_kw_start": float(pools["it_power_kw_start"].sum()),
        "it_power_kw_end": float(pools["it_power_kw_end"].sum()),
        "by_node_kind": by_kind,
        "by_model": by_model(result, assumptions, pools),
        "assumptions": {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(assumptions).items()},
            "cache_hit_share_by_class": cache_hit_shares(result, assumptions),
        },
    }
    if sample is not None:
        left_out = sample.get("classes_not_simulated") or []
        out["sample"] = {
            "method": "pools",
            "pools": list(sample.get("pools", [])),
            "note": (
                "energy, cost, revenue and carbon are those of the sampled pools only (at full "
                "size), over the horizon; national per-day figures scale each simulated "
                "class's part of them by 1 / the class's share of demand simulated: the whole "
                "grid's demand at the sampled pools' cost, energy and carbon per unit of work"
                + (f" (classes not simulated, left out: {', '.join(left_out)})" if left_out else "")
            ),
        }
    return out


# --- helpers -------------------------------------------------------------------------------


def _national_sums(flows: pd.DataFrame) -> dict[str, float]:
    """A pool sample's flows, each scaled by its class's ``scale``, summed: the whole grid's
    simulated classes over the horizon at the sampled pools' figures per unit of work."""
    cols = ("tokens", "energy_kwh", "cost_cny", "revenue_cny", "margin_cny", "carbon_kg")
    return {c: float((flows[c] * flows["scale"]).sum()) for c in cols}


def _totals(
    pools: pd.DataFrame,
    horizon_s: float,
    fraction: float,
    national: dict[str, float] | None = None,
) -> dict[str, float | None]:
    """Totals of ``pools`` and national figures per day: the totals / fraction, or (a pool
    sample) ``national``, the whole grid's totals over the horizon as ``_national_sums``."""
    s = {k: float(pools[k].sum()) for k in (*_SUMS, "cost_cny", "margin_cny", "it_power_kw")}
    tokens = s["input_tokens"] + s["output_tokens"]
    per_day = 86400.0 / horizon_s / fraction if horizon_s > 0 else math.nan
    facility_kw = s["energy_kwh"] / (horizon_s / 3600.0) if horizon_s > 0 else math.nan
    if national is None:
        national = {
            "tokens": tokens,
            **{k: s[k] for k in ("energy_kwh", "cost_cny", "revenue_cny", "margin_cny")},
            "carbon_kg": s["carbon_kg"],
        }
        it_mw, facility_mw = s["it_power_kw"] / 1e3 / fraction, facility_kw / 1e3 / fraction
    else:  # the sampled pools' power in the proportion their energy is scaled
        per_day = 86400.0 / horizon_s if horizon_s > 0 else math.nan
        scale = national["energy_kwh"] / s["energy_kwh"] if s["energy_kwh"] > 0 else 0.0
        it_mw, facility_mw = s["it_power_kw"] / 1e3 * scale, facility_kw / 1e3 * scale
    out = {
        "requests": s["requests"],
        "tokens": tokens,
        "energy_kwh": s["energy_kwh"],
        "electricity_cny": s["electricity_cny"],
        "capex_cny": s["capex_cny"],
        "network_cny": s["network_cny"],
        "cost_cny": s["cost_cny"],
        "revenue_cny": s["revenue_cny"],
        "margin_cny": s["margin_cny"],
        "carbon_kg": s["carbon_kg"],
        "it_power_kw": s["it_power_kw"],
        "mean_facility_power_kw": facility_kw,
        "cost_cny_per_m_tokens": _ratio(s["cost_cny"] * 1e6, tokens),
        "revenue_cny_per_m_tokens": _ratio(s["revenue_cny"] * 1e6, tokens),
        "energy_wh_per_k_tokens": _ratio(s["energy_kwh"] * 1e6, tokens),
        "carbon_g_per_k_tokens": _ratio(s["carbon_kg"] * 1e6, tokens),
        "national_tokens_per_day": national["tokens"] * per_day,
        "national_energy_kwh_per_day": national["energy_kwh"] * per_day,
        "national_cost_cny_per_day": national["cost_cny"] * per_day,
        "national_revenue_cny_per_day": national["revenue_cny"] * per_day,
        "national_margin_cny_per_day": national["margin_cny"] * per_day,
        "national_carbon_t_per_day": national["carbon_kg"] / 1e3 * per_day,
        "national_it_power_mw": it_mw,
        "national_mean_facility_power_mw": facility_mw,
    }
    return {k: (None if v is None or not math.isfinite(v) else v) for k, v in out.items()}


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    """Add cost, margin and per-token columns."""
    t = table.copy()
    t["cost_cny"] = t["electricity_cny"] + t["capex_cny"] + t["network_cny"]
    t["margin_cny"] = t["revenue_cny"] - t["cost_cny"]
    tokens = t["input_tokens"] + t["output_tokens"]
    t["tokens"] = tokens
    per_m = tokens.where(tokens > 0) / 1e6
    t["cost_cny_per_m_tokens"] = t["cost_cny"] / per_m
    t["revenue_cny_per_m_tokens"] = t["revenue_cny"] / per_m
    return t


def _it_power_w(pools: pd.DataFrame, a: Assumptions) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Nameplate IT power of each pool's simulated share: cards x TDP, or slots x slot power."""
    llm = pools["accelerators"].to_numpy(dtype=float) * pools["accelerator_tdp_w"].to_numpy(
        dtype=float
    )
    job = pools["slots"].to_numpy(dtype=float) * a.job_slot_power_w
    return np.where(pools["kind"].to_numpy() == "job", job, llm)


def _slot_power_w(pools: pd.DataFrame, a: Assumptions) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Nameplate power of one slot from the station's replica: cards per replica x TDP / slots
    per replica (job slots: the slot power); 0 where a table lacks the columns."""
    if "accelerators_per_replica" not in pools or "station_slots_per_replica" not in pools:
        return np.zeros(len(pools))
    per_replica = pools["station_slots_per_replica"].to_numpy(dtype=float)
    cards_w = pools["accelerators_per_replica"].to_numpy(dtype=float) * pools[
        "accelerator_tdp_w"
    ].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        llm = np.where(per_replica > 0, cards_w / per_replica, 0.0)
    return np.where(pools["kind"].to_numpy() == "job", a.job_slot_power_w, llm)


def capacity_steps(result: RunTables) -> pd.DataFrame:
    """Each station's replicas, cards and slots over time (``capacity_timeline.pool_steps``)."""
    return pool_steps(result.scenario, result.pools)


def _capacity_integrals(
    result: RunTables, a: Assumptions
) -> tuple[
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
]:
    """Per pool of the pools table, in its order: card-seconds (job pools: slot-seconds) and
    nameplate IT watt-seconds over the horizon, and the IT power in watts at its end, from the
    capacity timeline (build-outs from their cards' arrival, retirements from their date)."""
    pools = result.pools
    horizon_s = _horizon_s(result)
    steps = capacity_steps(result)
    names = pools["pool"]
    card_s = integrate(steps, "accelerators", horizon_s).reindex(names).fillna(0.0).to_numpy()
    slot_s = integrate(steps, "slots", horizon_s).reindex(names).fillna(0.0).to_numpy()
    job = pools["kind"].to_numpy() == "job"
    tdp = pools["accelerator_tdp_w"].to_numpy(dtype=float)
    units_s = np.where(job, slot_s, card_s)
    watt_s = np.where(job, slot_s * a.job_slot_power_w, card_s * tdp)
    ends = start_end(steps).reindex(names)
    end_w = np.where(
        job,
        ends["slots_end"].fillna(0.0).to_numpy() * a.job_slot_power_w,
        ends["accelerators_end"].fillna(0.0).to_numpy() * tdp,
    )
    return units_s, watt_s, end_w


def _prices(result: RunTables) -> dict[str, tuple[float, float, float]]:
    """Model id -> (input, cache-hit, output) list price, CNY per 1e6 tokens."""
    models = result.scenario.resolved_catalog.models
    return {
        mid: (m.price_in_cny_per_m, m.price_cache_hit_cny_per_m, m.price_out_cny_per_m)
        for mid, m in models.items()
    }


def cache_hit_shares(result: RunTables, assumptions: Assumptions = DEFAULT) -> dict[str, float]:
    """Class name -> the share of its input tokens billed at the cache-hit price: the override
    ``assumptions.cache_hit_share`` when set, else the class's own ``cache_hit_share``."""
    h = assumptions.cache_hit_share
    return {c.name: float(c.cache_hit_share if h is None else h) for c in _engine_classes(result)}


def _engine_classes(result: RunTables) -> tuple[DemandClass, ...]:
    """The classes the engines ran, whose names the flows carry: the scenario's own, or with a
    market or model mixes, one per (class, model, tier) (``gridsim.market.expand``)."""
    return tuple(expand(result.scenario)[0].demand.classes)


def _pooled_pools(result: RunTables) -> set[str]:
    """Stations of pooled pools (several models on shared cards: ``models`` holds a "+")."""
    pools = result.pools
    if "models" not in pools or pools.empty:  # run folders from before pooled pools
        return set()
    models = pools["models"].fillna("").astype(str)
    return set(pools.loc[models.str.contains("+", regex=False), "pool"])


def _flow_models(result: RunTables, flows: pd.DataFrame) -> np.ndarray[Any, Any]:
    """The model that served each flow: its pool's, or at a pooled pool its class's own (the
    engines ran it on that model's serving)."""
    model = result.pools.set_index("pool")["model"].reindex(flows["pool"]).to_numpy(dtype=object)
    pooled = _pooled_pools(result)
    if pooled:
        of_class = {c.name: c.model for c in _engine_classes(result)}
        at_pooled = flows["pool"].isin(pooled).to_numpy()
        own = flows["class"].map(of_class).to_numpy(dtype=object)
        model = np.where(at_pooled & pd.notna(own), own, model)
    return model


def _model_rows(result: RunTables, a: Assumptions, pools: pd.DataFrame) -> pd.DataFrame:
    """Rows to group by model: each plain pool's row (``pool_economics``) and, for pooled
    pools, their flows' shares of the pool figures at each class's model (by served tokens, as
    ``flow_economics``; an idle pooled pool stays under its "+"-joined models)."""
    pooled = _pooled_pools(result)
    if not pooled:
        return pools
    plain = pools[~pools["pool"].isin(pooled)]
    flows = flow_economics(result, a)
    flows = flows[flows["pool"].isin(pooled)].copy()
    flows["model"] = _flow_models(result, flows)
    # IT power by the same token weights as the energy and cost
    tokens = (flows["input_tokens"] + flows["output_tokens"]).to_numpy(dtype=float)
    pool_tokens = flows.assign(t=tokens).groupby("pool")["t"].transform("sum").to_numpy()
    pool_reqs = flows.groupby("pool")["requests"].transform("sum").to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(
            pool_tokens > 0, tokens / pool_tokens, flows["requests"].to_numpy() / pool_reqs
        )
    weight = np.where(flows["class"].to_numpy() == IDLE, 1.0, np.nan_to_num(weight))
    per_pool = pools.set_index("pool")
    for col in ("it_power_kw", "it_power_kw_start", "it_power_kw_end"):
        flows[col] = per_pool[col].reindex(flows["pool"]).to_numpy() * weight
    cols = ["model", *_SUMS, "it_power_kw", "it_power_kw_start", "it_power_kw_end"]
    return pd.concat([plain, flows[cols]], ignore_index=True)


def _horizon_s(result: RunTables) -> float:
    return float(result.summary.get("horizon_s") or result.scenario.horizon.duration)


def _whole_horizon(result: RunTables) -> pd.DataFrame:
    """One interval per pool covering the horizon, busy at its node's mean utilisation, its
    capacity the slot-seconds of the capacity timeline (build-outs and retirements)."""
    horizon_s = _horizon_s(result)
    by_node = result.summary.get("by_node", {})
    slot_s = integrate(capacity_steps(result), "slots", horizon_s)
    rows = []
    for pool, node in result.pools[["pool", "node"]].itertuples(index=False):
        util = (by_node.get(node, {}).get("utilization") or {}).get("mean") or 0.0
        cap = float(slot_s.get(pool, 0.0))
        rows.append(
            {"pool": pool, "time_s": 0.0, "busy_slot_s": util * cap, "capacity_slot_s": cap}
        )
    return pd.DataFrame(rows)


def _flows_served(result: RunTables, a: Assumptions) -> pd.DataFrame:
    """The run's flows with float counts, revenue at list prices and network cost."""
    cols = ["class", "region", "node", "pool", "requests", "input_tokens", "output_tokens"]
    if result.flows.empty:
        flows = pd.DataFrame({c: pd.Series(dtype=object) for c in cols[:4]})
        for c in cols[4:]:
            flows[c] = pd.Series(dtype=float)
    else:
        flows = result.flows[cols].copy()
    for c in cols[4:]:
        flows[c] = flows[c].astype(float)
    prices = _prices(result)
    model = _flow_models(result, flows).tolist()
    p_in, p_hit, p_out = (
        np.array([prices.get(m, (0.0, 0.0, 0.0))[k] for m in model], dtype=float) for k in range(3)
    )
    shares = cache_hit_shares(result, a)
    h = flows["class"].map(shares).fillna(0.0).to_numpy(dtype=float)
    inp, outp = flows["input_tokens"].to_numpy(), flows["output_tokens"].to_numpy()
    flows["revenue_cny"] = (inp * ((1 - h) * p_in + h * p_hit) + outp * p_out) / 1e6
    flows["network_cny"] = (inp + outp) * a.bytes_per_token / 1e9 * a.network_cny_per_gb
    return flows
