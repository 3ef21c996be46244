"""The ``plan:`` block: what ``gridsim plan`` may build, under which limits (``gridsim.planner``).

Every field has a default, so ``gridsim plan`` runs on any scenario without one; the block
states the planner's assumptions where a scenario wants its own. The Scenario model checks that
the nodes and accelerators it names exist.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gridsim.scenario.fields import AcceleratorRef, Date, Duration, Model

SENSITIVITIES = ("high", "medium", "low")


class Supply(Model):
    """Cards of one accelerator that build-outs may order in one calendar year (overrides the
    fleet inventory's figure for that year; 0 is a ban)."""

    accelerator: AcceleratorRef
    year: int = Field(ge=2000, le=2100)
    cards: float = Field(ge=0, le=1e12)


class PlanSpec(Model):
    """Capacity expansion (``gridsim plan``): decisions, limits and the verification target."""

    period: Literal["quarter", "month"] = Field(
        default="quarter", description="planning period: quarter or month (--period overrides)"
    )
    utilisation: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="the largest share of a pool's slots the plan loads at the peak hour "
        "(ASSUMPTION: 0.9; verification tightens it on pools the simulation finds short)",
    )
    latency_budget_ms: dict[str, float | None] = Field(
        default_factory=dict,
        description="one-way network latency a class's requests may travel, by class name or "
        "latency_sensitivity (default high 5, medium 20, low none: the policy's regional and "
        "inter-hub targets); a region with no pool within budget uses its nearest",
    )
    lead_time: dict[str, Duration] = Field(
        default_factory=dict,
        description="order-to-service time by accelerator id ('jobs' for job pools; default 0: "
        "cards in stock)",
    )
    orders_from: Date | None = Field(
        default=None, description="first date an order can be placed (default: the horizon start)"
    )
    site_power_mw: dict[str, float] = Field(
        default_factory=dict,
        description="most facility power a node may draw (MW, IT x PUE at nameplate), by node id",
    )
    budget_cny: float | None = Field(
        default=None, gt=0, description="most capex (cards and facility) the build-outs may cost"
    )
    max_pue: float | None = Field(
        default=None, ge=1, description="build only at nodes whose PUE is at most this"
    )
    min_green_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="least share of the grid's energy from green power (with power:, the nodes' "
        "grid green share; else none is green)",
    )
    carbon_price_cny_per_t: float = Field(
        default=0.0, ge=0, description="a carbon price added to the objective (CNY per t CO2)"
    )
    supply: list[Supply] = Field(
        default_factory=list,
        description="cards available per accelerator and year (overrides the fleet inventory)",
    )
    build_at: list[str] | None = Field(
        default=None, description="nodes that may be built at (default: every node)"
    )
    slo_attainment: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="verification: every class must meet its SLO for this share of requests "
        "(ASSUMPTION: 0.95)",
    )
    iterations: int = Field(default=3, ge=1, le=20, description="verify-and-tighten rounds at most")
    margin_step: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="utilisation taken off the pools of a class the simulation finds short, "
        "per round",
    )
    time_limit_s: float = Field(default=120.0, gt=0, le=86400, description="solver time limit")

    @field_validator("latency_budget_ms")
    @classmethod
    def _budgets(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for key, ms in value.items():
            if ms is not None and not 0 <= ms <= 1e6:
                raise ValueError(f"latency_budget_ms[{key}] = {ms}: give milliseconds >= 0")
        return value

    @field_validator("site_power_mw")
    @classmethod
    def _power(cls, value: dict[str, float]) -> dict[str, float]:
        for key, mw in value.items():
            if not 0 <= mw <= 1e7:
                raise ValueError(f"site_power_mw[{key}] = {mw}: give megawatts >= 0")
        return value


def check_plan_names(
    plan: PlanSpec | None, nodes: set[str], classes: set[str], accelerators: set[str] | None
) -> list[str]:
    """What the plan block names that the scenario does not have (messages); accelerators are
    checked against the catalogue when one is given."""
    if plan is None:
        return []
    out = []
    for where, names in (("site_power_mw", plan.site_power_mw), ("build_at", plan.build_at or [])):
        for name in names:
            if name not in nodes:
                out.append(f"plan.{where}: unknown node {name!r}; nodes are {sorted(nodes)}")
    for key in plan.latency_budget_ms:
        if key not in classes and key not in SENSITIVITIES:
            out.append(
                f"plan.latency_budget_ms: {key!r} is neither a class ({sorted(classes)}) nor a "
                f"latency_sensitivity ({', '.join(SENSITIVITIES)})"
            )
    for key in plan.lead_time:
        if accelerators is not None and key != "jobs" and key not in accelerators:
            out.append(
                f"plan.lead_time: unknown accelerator {key!r}; use a catalogue accelerator id "
                "or 'jobs'"
            )
    return out
