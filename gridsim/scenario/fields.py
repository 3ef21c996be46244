"""Field types every scenario model shares: durations, dates, ids, and catalogue references."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Annotated

from pydantic import (
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
