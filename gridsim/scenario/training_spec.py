"""The ``training:`` and ``power:`` blocks: deferrable training work on the cards inference
leaves free (``gridsim.training``), and hour-by-hour power (``gridsim.power``).

Training jobs are sized in cards of the scenario's pools, as the scenario counts them (the
whole grid): a scenario with training simulates the whole grid (``demand.sample_fraction``
1, no ``sample_pools``); the Scenario model checks that and that the jobs' nodes exist.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gridsim.policies.registry import coscheduler_names
from gridsim.scenario.fields import AcceleratorRef, Duration, Id, Model


class TrainingJob(Model):
    """A long job: card-hours of work between a release and a deadline, on min..max cards,
    checkpointed every ``checkpoint_interval`` (a preemption loses the work since the last)."""

    name: Id
    card_hours: float = Field(gt=0, description="work to do, in card-hours of its accelerator")
    min_cards: int = Field(default=1, ge=1, description="fewest cards it runs on")
    max_cards: int = Field(default=1_000_000, ge=1, description="most cards it can use")
    checkpoint_interval: Duration = Field(
        default=3600.0, description="time between checkpoints while it runs, e.g. 2h"
    )
    release: Duration = Field(default=0.0, description="earliest start, after the horizon start")
    deadline: Duration | None = Field(
        default=None, description="when it should be done, after the horizon start (none: open)"
    )
    nodes: list[str] | None = Field(
        default=None, description="nodes it may run at (default: every node with LLM pools)"
    )
    accelerator: AcceleratorRef = Field(
        default=None, description="only cards of this catalogue accelerator (default: any)"
    )
    origin: str | None = Field(
        default=None,
        description="node where its data sits: elsewhere it starts after the data has moved",
    )
    data_tb: float = Field(default=0.0, ge=0, description="data moved to a node not its origin")

    @model_validator(mode="after")
    def _consistent(self) -> TrainingJob:
        if self.min_cards > self.max_cards:
            raise ValueError(
                f"min_cards ({self.min_cards}) exceeds max_cards ({self.max_cards}); "
                "set min_cards <= max_cards"
            )
        if self.checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval must be > 0, e.g. checkpoint_interval: 2h")
        if self.deadline is not None and self.deadline <= self.release:
            raise ValueError("deadline must come after release")
        return self


class Training(Model):
    """Training jobs and the co-scheduling policy that gives them cards, hour by hour."""

    policy: str = Field(
        default="inference_first",
        description="inference_first: training gets the cards inference does not need at its "
        "SLO; day_night: a share of each pool's cards trains at night whatever inference "
        "needs; carbon_aware / price_aware: as inference_first, but each job runs in the "
        "greenest / cheapest hours that still finish it by its deadline; or a user policy "
        "module:Class (gridsim.training.policies.CoScheduler)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of a user policy's class"
    )
    headroom: float = Field(
        default=0.1,
        ge=0,
        description="inference keeps the cards for its hour's peak load x (1 + headroom) "
        "at its SLO",
    )
    night_share: float = Field(
        default=0.5, gt=0, le=1, description="day_night: share of each pool's cards that train"
    )
    night_start_hour: int = Field(default=22, ge=0, le=23, description="day_night: from")
    night_end_hour: int = Field(default=8, ge=0, le=23, description="day_night: until")
    slack: float = Field(
        default=1.2,
        ge=1.0,
        description="carbon_aware / price_aware: a job keeps this multiple of its remaining "
        "work in chosen hours ahead of its deadline (room for preemptions)",
    )
    green_hours_only: bool = Field(
        default=False,
        description="jobs run only in hours when their site's green share (own renewables "
        "at its full draw, then the grid's) reaches power.green_target_share",
    )
    pools: Literal["colocated"] = Field(
        default="colocated",
        description="pools that lend cards: co-located LLM pools (disaggregated pools and job "
        "slots do not lend)",
    )
    nodes: list[str] | None = Field(
        default=None,
        description="nodes every job may run at unless it lists its own (default: every node "
        "with LLM pools)",
    )
    jobs: list[TrainingJob] = Field(min_length=1)

    def nodes_of(self, job: TrainingJob) -> list[str] | None:
        """The nodes ``job`` may run at (None: every node whose pools lend)."""
        return job.nodes if job.nodes is not None else self.nodes

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, name: str) -> str:
        if name in coscheduler_names() or ":" in name:
            return name
        known = ", ".join(sorted(coscheduler_names()))
        raise ValueError(
            f"unknown co-scheduling policy {name!r}; known: {known} (or a user class as "
            "module:Class)"
        )

    @model_validator(mode="after")
    def _unique_names(self) -> Training:
        names = [j.name for j in self.jobs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"training job names must be unique; repeated: {', '.join(dup)}")
        if self.night_start_hour == self.night_end_hour:
            raise ValueError("night_start_hour and night_end_hour must differ")
        return self


class OnSite(Model):
    """A site's own renewables (an on-site plant or a PPA): MW of solar and wind."""

    node: str
    solar_mw: float = Field(default=0.0, ge=0)
    wind_mw: float = Field(default=0.0, ge=0)


class Power(Model):
    """Hour-by-hour power: hourly grid carbon and green share per province, time-of-use prices,
    own renewables and a green-power target."""

    hourly: bool = Field(
        default=True,
        description="hourly carbon intensity and time-of-use prices per node's province "
        "(false: one annual factor and one price)",
    )
    tou: dict[str, str] = Field(
        default_factory=dict,
        description="node id -> time-of-use schedule (default: its province's; 'flat': none)",
    )
    green_target_share: float | None = Field(
        default=None, ge=0, le=1, description="share of green electricity each site should reach"
    )
    onsite: list[OnSite] = Field(default_factory=list)


def check_training_nodes(
    training: Training | None, power: Power | None, node_ids: set[str]
) -> list[tuple[tuple[Any, ...], str]]:
    """(field path, message) for every job and power entry that names an unknown node."""
    bad: list[tuple[tuple[Any, ...], str]] = []
    known = ", ".join(sorted(node_ids))
    for k, node in enumerate(training.nodes or [] if training else []):
        if node not in node_ids:
            bad.append((("training", "nodes", k), f"unknown node {node!r}"))
    for j, job in enumerate(training.jobs if training else []):
        for k, node in enumerate(job.nodes or []):
            if node not in node_ids:
                bad.append((("training", "jobs", j, "nodes", k), f"unknown node {node!r}"))
        if job.origin is not None and job.origin not in node_ids:
            bad.append((("training", "jobs", j, "origin"), f"unknown node {job.origin!r}"))
    for i, site in enumerate(power.onsite if power else []):
        if site.node not in node_ids:
            bad.append((("power", "onsite", i, "node"), f"unknown node {site.node!r}"))
    for node in power.tou if power else {}:
        if node not in node_ids:
            bad.append((("power", "tou", node), f"unknown node {node!r}"))
    return [(path, f"{msg}; known nodes: {known}") for path, msg in bad]
