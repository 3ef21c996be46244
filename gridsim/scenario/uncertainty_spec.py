"""The ``uncertainty:`` block: scenario values (any ``--set`` path) that carry a distribution.

``gridsim run FILE --draws N`` (``gridsim/montecarlo.py``) draws every parameter N times and
runs each draw; a plain run ignores the block. Whether a path addresses a field of the scenario
is checked by ``check_paths`` once the scenario itself has validated (the Scenario model calls
it), so that an error names the parameter's index and its path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from gridsim.scenario.errors import dotted
from gridsim.scenario.fields import Model
from gridsim.scenario.merging import PathError, parse_path, resolve_path

# Top-level keys a draw may not change: the block itself, the sweep around it, and the seed
# (every draw runs with the scenario's seed, so that only the parameters differ).
UNDRAWABLE = ("uncertainty", "sweep", "seed")


class _Parameter(Model):
    path: str = Field(min_length=1, description="dotted path, as in --set, e.g. demand.growth.x")
    note: str = Field(default="", description="where the range comes from (shown in the report)")


class Triangular(_Parameter):
    """Between ``low`` and ``high``, most likely at ``mode``."""

    dist: Literal["triangular"]
    low: float
    mode: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Triangular:
        if not self.low <= self.mode <= self.high:
            raise ValueError(
                f"triangular needs low <= mode <= high (got {self.low:g}, {self.mode:g}, "
                f"{self.high:g})"
            )
        if self.low == self.high:
            raise ValueError(
                f"triangular needs low < high (both are {self.low:g}); to fix a "
                "value, set it in the scenario instead"
            )
        return self


class Uniform(_Parameter):
    """Any value between ``low`` and ``high`` alike."""

    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"uniform needs low < high (got {self.low:g}, {self.high:g})")
        return self


class Lognormal(_Parameter):
    """``median x exp(sigma Z)``, Z standard normal: positive, skewed up."""

    dist: Literal["lognormal"]
    median: float = Field(gt=0)
    sigma: float = Field(gt=0, le=10)


class Choice(_Parameter):
    """One of ``values`` (any YAML value), with ``weights`` (default: alike)."""

    dist: Literal["choice"]
    values: list[Any] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _weights(self) -> Choice:
        if self.weights is None:
            return self
        if len(self.weights) != len(self.values):
            raise ValueError(
                f"choice has {len(self.values)} values but {len(self.weights)} weights; "
                "give one weight per value"
            )
        if sum(self.weights) <= 0:
            raise ValueError("choice weights add up to 0; give at least one a positive weight")
        return self


Parameter = Annotated[Triangular | Uniform | Lognormal | Choice, Field(discriminator="dist")]


class Uncertainty(Model):
    """Uncertain inputs for ``gridsim run --draws N``: draw i sets every parameter to a value
    from a generator seeded by (``seed``, i), and runs with the scenario's own seed."""

    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="seed of the draws (default: the scenario's)"
    )
    parameters: list[Parameter] = Field(min_length=1)

    @model_validator(mode="after")
    def _paths(self) -> Uncertainty:
        seen: dict[str, int] = {}
        for i, param in enumerate(self.parameters):
            try:
                parts = parse_path(param.path)
            except PathError as exc:
                raise ValueError(f"parameters[{i}].path {param.path!r}: {exc}") from None
            if parts[0] in UNDRAWABLE:
                raise ValueError(
                    f"parameters[{i}].path {param.path!r}: {parts[0]} cannot be drawn (every "
                    "draw runs with the scenario's seed, its sweep and uncertainty aside)"
                )
            if param.path.strip() in seen:
                raise ValueError(
                    f"parameters[{i}].path {param.path!r} is drawn already by "
                    f"parameters[{seen[param.path.strip()]}]; give each path once"
                )
            seen[param.path.strip()] = i
        return self


def check_paths(uncertainty: Uncertainty, scenario: Model) -> None:
    """Every parameter's path addresses an existing field of ``scenario`` (as ``--set`` would:
    list items by index or by id), else a ValidationError at ``uncertainty.parameters[i].path``.

    Fields that defaults fill in count (they are in the model's dump); keys of another kind
    of mapping do not (``demand.growth.rate_per_month`` under a logistic law)."""
    dump = scenario.model_dump(exclude=set(UNDRAWABLE))
    errors = []
    for i, param in enumerate(uncertainty.parameters):
        problem = _address_problem(dump, param.path)
        if problem is not None:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "value_error",
                        "{message}",  # the message goes in whole: a path may hold braces
                        {
                            "message": f"{param.path!r} does not address a field of this "
                            f"scenario: {problem}; write the path as for --set, e.g. "
                            "demand.growth.rate_per_month or nodes[<id>].pools[<id>].replicas"
                        },
                    ),
                    loc=("uncertainty", "parameters", i, "path"),
                    input=param.path,
                )
            )
    if errors:
        raise ValidationError.from_exception_data("Scenario", errors)


def _address_problem(dump: dict[str, Any], path: str) -> str | None:
    """Why ``path`` does not lead to an existing key of ``dump``, or None when it does."""
    try:
        target = resolve_path(dump, parse_path(path))
    except PathError as exc:
        return str(exc)
    node: Any = dump
    for depth, part in enumerate(target):
        where = dotted(target[:depth]) or "the top level"
        if isinstance(node, dict) and isinstance(part, str):
            if part not in node:
                keys = ", ".join(sorted(str(k) for k in node)) or "none"
                return f"{where} has no key {part!r} (keys: {keys})"
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part]  # resolve_path checked the index
        else:
            return f"{where} holds no {'list' if isinstance(part, int) else 'mapping'} there"
    return None
