"""Field types every scenario model shares: durations, dates, ids, bounds, and references to the
catalogue and the policy registry (checked against the validation context)."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

from gridsim.scenario.units import format_duration, parse_date, parse_duration

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9.eE+-]+\s*[a-z]*\s*$"},
            ],
            "description": "duration: seconds, or a number with a unit (250ms, 5min, 2h, 30d, 2y)",
        }
    ),
]
Date = Annotated[
    dt.date,
    BeforeValidator(parse_date),
    WithJsonSchema({"type": "string", "description": "date: YYYY-MM-DD or YYYY-MM"}),
]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)]

# Upper bounds far beyond any real grid, so that no arithmetic downstream overflows.
MAX_COUNT = 10**9  # replicas, slots, queue places
MAX_TOKENS = 1e9  # tokens in one request (today's longest contexts are ~1e7)
MAX_TOKENS_PER_DAY = 1e20  # national volume (China: 1.4e14 in March 2026)


class Model(BaseModel):
    # No NaN or infinity in any float field: every number a scenario gives must be finite.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )


def check_ref(info: ValidationInfo, kind: str, ref: str | None) -> str | None:
    """Check that ``ref`` names an entry of catalogue ``kind``; suggest the closest ids."""
    catalog = (info.context or {}).get("catalog")
    if ref is None or catalog is None:
        return ref
    known = catalog.get(kind)
    if ref not in known:
        close = difflib.get_close_matches(ref, list(known), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}" if close else ""
        listing = f"known {kind}: {', '.join(sorted(known))}"
        raise ValueError(
            f"unknown {kind[:-1]} {ref!r}; {hint or listing}. "
            f"Add it under catalog.{kind} or run `gridsim catalog {kind}`"
        )
    return ref


def _catalog_ref(kind: str) -> AfterValidator:
    def check(ref: str | None, info: ValidationInfo) -> str | None:
        return check_ref(info, kind, ref)

    return AfterValidator(check)


# Optional references to catalogue entries; the validator wraps the whole optional type, so an
# error is reported at the field itself, not at one branch of ``str | None``.
AcceleratorRef = Annotated[str | None, _catalog_ref("accelerators")]
ModelRef = Annotated[str | None, _catalog_ref("models")]
SiteRef = Annotated[str | None, _catalog_ref("sites")]


def check_policy(name: str, info: ValidationInfo) -> str:
    """Check that ``name`` is a policy the registry knows (context ``"policies"``) or a user
    policy named ``module:Class``; suggest the closest name."""
    names = (info.context or {}).get("policies")
    if names is None or name in names or ":" in name:
        return name
    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(names))}"
    raise ValueError(f"unknown policy {name!r}; {hint} (or name a user policy as module:Class)")


PolicyName = Annotated[str, AfterValidator(check_policy)]
