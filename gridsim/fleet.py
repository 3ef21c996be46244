"""The national accelerator fleet, and how a scenario's capacity is drawn from it.

The inventory (``gridsim/catalog/data/fleet.csv``) holds, per accelerator, the cards shipped in
each period as low / central / high figures with their sources, and the share of the cards in
each use (serving tokens, training; the rest is other use or idle), also as ranges. A scenario
with a ``fleet:`` block sizes its pools from it instead of giving replicas:

    serving cards (accelerator) = cards shipped by ``as_of`` (at ``case``) x serving share
    cards (pool)                = serving cards (its accelerator) x the pool's ``fleet_share``
    replicas (pool)             = floor(cards (pool) / cards per replica of its deployment)

so the capacity a run reports follows from sourced counts and stated assumptions, never from
the demand it meets. ``case`` is ``low``, ``central``, ``high`` or a number q in [0, 1]
interpolating linearly from low (q = 0) through central (0.5) to high (1): the Monte Carlo
draws q (``uncertainty:``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

CASES = ("low", "central", "high")
USES = ("serving", "training")
Case = str | float


@dataclass(frozen=True)
class Figure:
    """A low / central / high figure with its source."""

    low: float
    central: float
    high: float
    source: str
    note: str

    def at(self, case: Case) -> float:
        """The figure at ``case``: a named case, or q in [0, 1] (0 low, 0.5 central, 1 high)."""
        if isinstance(case, str):
            if case not in CASES:
                raise ValueError(f"unknown case {case!r}; use low, central, high or 0..1")
            return float(getattr(self, case))
        q = float(case)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"case {q!r} is outside [0, 1]")
        if q <= 0.5:
            return self.low + (self.central - self.low) * q / 0.5
        return self.central + (self.high - self.central) * (q - 0.5) / 0.5


@dataclass(frozen=True)
class Shipment:
    accelerator: str
    start: dt.date
    end: dt.date  # inclusive
    cards: Figure

    def share_by(self, as_of: dt.date) -> float:
        """Share of this period's cards shipped before ``as_of`` (spread evenly over it)."""
        days = (self.end - self.start).days + 1
        done = (min(as_of, self.end + dt.timedelta(days=1)) - self.start).days
        return min(max(done / days, 0.0), 1.0)


@dataclass(frozen=True)
class Inventory:
    name: str
    shipments: tuple[Shipment, ...]
    uses: dict[tuple[str, str], Figure]  # (accelerator, use) -> share of its cards
    # cards a year that can still be bought, per accelerator and dated window (an export ban
    # is 0); years no row covers are unknown (``supply_cards`` gives None)
    supplies: tuple[Shipment, ...] = ()

    @property
    def accelerators(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.accelerator for s in self.shipments))

    def cards(self, accelerator: str, as_of: dt.date, case: Case) -> float:
        """Cards of ``accelerator`` shipped before ``as_of`` (none retire within a few years)."""
        return sum(
            s.cards.at(case) * s.share_by(as_of)
            for s in self.shipments
            if s.accelerator == accelerator
        )

    def supply_cards(self, accelerator: str, year: int, case: Case) -> float | None:
        """Cards of ``accelerator`` that can be bought in calendar ``year``: each supply row's
        yearly rate x the share of the year its window covers; None when no row covers it."""
        first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
        total, covered = 0.0, False
        for s in self.supplies:
            if s.accelerator != accelerator or s.end < first or s.start > last:
                continue
            days = (min(s.end, last) - max(s.start, first)).days + 1
            total += s.cards.at(case) * days / ((last - first).days + 1)
            covered = True
        return total if covered else None

    def use_share(self, accelerator: str, use: str, case: Case) -> float:
        figure = self.uses.get((accelerator, use))
        if figure is None:
            raise ValueError(
                f"fleet inventory {self.name!r} has no {use} share for {accelerator!r}; give "
                f"fleet.serving_share for it"
            )
        return figure.at(case)


def _csv_text() -> str:
    return (resources.files("gridsim.catalog") / "data" / "fleet.csv").read_text("utf-8")


@cache
def inventories() -> dict[str, Inventory]:
    """The packaged inventories by name."""
    shipments: dict[str, list[Shipment]] = {}
    supplies: dict[str, list[Shipment]] = {}
    uses: dict[str, dict[tuple[str, str], Figure]] = {}
    for row in csv.DictReader(io.StringIO(_csv_text())):
        figure = Figure(
            float(row["low"]),
            float(row["central"]),
            float(row["high"]),
            row["source"],
            row["note"],
        )
        if not figure.low <= figure.central <= figure.high:
            raise ValueError(
                f"fleet.csv: {row['accelerator']} {row['kind']}: low <= central <= high"
            )
        name, kind = row["inventory"], row["kind"]
        if kind in ("shipped", "supply"):
            (shipments if kind == "shipped" else supplies).setdefault(name, []).append(
                Shipment(
                    row["accelerator"],
                    dt.date.fromisoformat(row["period_start"]),
                    dt.date.fromisoformat(row["period_end"]),
                    figure,
                )
            )
        elif kind.startswith("use_"):
            uses.setdefault(name, {})[(row["accelerator"], kind[4:])] = figure
        else:
            raise ValueError(f"fleet.csv: unknown kind {kind!r}")
    return {
        n: Inventory(n, tuple(s), uses.get(n, {}), tuple(supplies.get(n, ())))
        for n, s in shipments.items()
    }


def inventory_table() -> pd.DataFrame:
    """The packaged inventories as one table (``gridsim catalog fleet``)."""
    return pd.read_csv(io.StringIO(_csv_text()), keep_default_na=False).set_index("inventory")


def inventory(name: str) -> Inventory:
    known = inventories()
    if name not in known:
        raise ValueError(f"unknown fleet inventory {name!r}; known: {sorted(known)}")
    return known[name]


@dataclass(frozen=True)
class FleetSupply:
    """Serving cards per accelerator for one scenario: what its ``fleet_share`` pools divide."""

    inventory: str
    case: Case
    serving_case: Case
    as_of: dt.date
    cards: dict[str, float]
    serving_share: dict[str, float]

    def serving_cards(self, accelerator: str) -> float:
        return self.cards[accelerator] * self.serving_share[accelerator]


def supply(scenario: Any) -> FleetSupply | None:
    """The scenario's fleet (None without a ``fleet:`` block)."""
    spec = scenario.fleet
    if spec is None:
        return None
    inv = inventory(spec.inventory)
    as_of = spec.as_of or scenario.horizon.start
    cards: dict[str, float] = {}
    shares: dict[str, float] = {}
    for acc in inv.accelerators:
        cards[acc] = inv.cards(acc, as_of, spec.case)
        override = spec.serving_share
        if isinstance(override, dict) and acc in override:
            shares[acc] = override[acc]
        elif isinstance(override, float | int) and not isinstance(override, bool):
            shares[acc] = float(override)
        else:
            shares[acc] = inv.use_share(acc, "serving", spec.serving_case)
    return FleetSupply(spec.inventory, spec.case, spec.serving_case, as_of, cards, shares)


def pool_replicas(
    fleet: FleetSupply, accelerator: str, share: float, cards_per_replica: float
) -> int:
    """Whole replicas of a pool holding ``share`` of the serving cards of ``accelerator``."""
    cards = fleet.serving_cards(accelerator) * share
    # A hair of slack so that shares written to six figures do not lose a replica to rounding.
    return max(math.floor(cards / cards_per_replica + 1e-6), 0)


@dataclass(frozen=True)
class PoolFleet:
    """How one pool's size follows from the fleet (a row of the report's trace)."""

    node: str
    pool: str
    model: str
    accelerator: str
    fleet_share: float
    cards: float  # the pool's share of the serving cards
    cards_per_replica: float
    replicas: int


def summary(fleet: FleetSupply, pools: Iterable[PoolFleet]) -> dict[str, Any]:
    """The ``fleet`` block of summary.json: the trace from the inventory to the pool sizes."""
    rows = list(pools)
    by_acc: dict[str, dict[str, float]] = {}
    for acc, cards in fleet.cards.items():
        assigned = sum(r.replicas * r.cards_per_replica for r in rows if r.accelerator == acc)
        by_acc[acc] = {
            "cards": cards,
            "serving_share": fleet.serving_share[acc],
            "serving_cards": fleet.serving_cards(acc),
            "assigned_cards": float(assigned),
        }
    return {
        "inventory": fleet.inventory,
        "case": fleet.case,
        "serving_case": fleet.serving_case,
        "as_of": fleet.as_of.isoformat(),
        "by_accelerator": by_acc,
        "pools": [
            {
                "node": r.node,
                "pool": r.pool,
                "model": r.model,
                "accelerator": r.accelerator,
                "fleet_share": r.fleet_share,
                "cards": r.cards,
                "cards_per_replica": r.cards_per_replica,
                "replicas": r.replicas,
            }
            for r in rows
        ],
    }
