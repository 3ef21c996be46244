"""Read the long-format catalogue CSVs into validated entries, and the `Catalog` that holds them.

A catalogue file has the header ``id,attribute,value,unit,source,note``: one row per figure.
Each row's unit must equal the unit declared on the pydantic field (``-`` for text fields),
and every row must name a source; anything else raises `CatalogError`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from os import PathLike
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ValidationError

from gridsim.catalog.types import CATALOG_KINDS, Accelerator, Entry, LLMModel, Site

E = typing.TypeVar("E", bound=Entry)

HEADER = ("id", "attribute", "value", "unit", "source", "note")
TEXT_UNIT = "-"
# Set by the loader, never by a row: the per-row `source` column is the provenance.
RESERVED = frozenset({"id", "source"})


class CatalogError(ValueError):
    """A catalogue file is malformed or disagrees with the typed schema."""


def entry_type(kind: str) -> type[Entry]:
    """The pydantic class for a catalogue kind (``accelerators``, ``models``, ``sites``)."""
    try:
        return CATALOG_KINDS[kind]
    except KeyError:
        raise CatalogError(
            f"unknown catalogue kind {kind!r}; known: {sorted(CATALOG_KINDS)}"
        ) from None


def declared_units(model: type[BaseModel]) -> dict[str, str]:
    """Unit per settable field: the declared ``json_schema_extra`` unit, or ``-`` for text."""
    units: dict[str, str] = {}
    for name, info in model.model_fields.items():
        if name in RESERVED:
            continue
        extra = info.json_schema_extra
        unit = extra.get("unit") if isinstance(extra, dict) else None
        units[name] = str(unit) if unit is not None else TEXT_UNIT
    return units


def _scalar_type(annotation: object) -> type:
    """int, float or str for a field annotation (Optional and Literal unwrapped)."""
    if annotation in (int, float):
        return typing.cast(type, annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _scalar_type(args[0])
    return str


def _parse(raw: str, kind: type) -> object:
    if kind is str:
        return raw
    number = float(raw)  # ValueError on junk; caller adds the location
    if kind is int:
        if not number.is_integer():
            raise ValueError(f"{raw!r} is not an integer")
        return int(number)
    return number


def parse_entries(text: str, kind: str, label: str = "<text>") -> dict[str, Entry]:
    """Parse long-format CSV text into validated entries of ``kind``; ``label`` names the file."""
    model = entry_type(kind)
    units = declared_units(model)
    scalar = {name: _scalar_type(model.model_fields[name].annotation) for name in units}
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise CatalogError(f"{label}: header must be {','.join(HEADER)}, got {header}")

    values: dict[str, dict[str, object]] = {}
    first_line: dict[str, int] = {}
    seen: dict[tuple[str, str], int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise CatalogError(f"{label}:{line}: expected {len(HEADER)} columns, got {len(row)}")
        id_, attr, raw, unit, source, _note = (cell.strip() for cell in row)
        where = f"{label}:{line}: id={id_!r} attribute={attr!r}"
        if not id_ or not attr:
            raise CatalogError(f"{where}: id and attribute must be non-empty")
        if not source:
            raise CatalogError(f"{where}: every figure needs a source")
        if attr not in units:
            raise CatalogError(f"{where}: unknown attribute for {model.__name__}")
        if unit != units[attr]:
            raise CatalogError(
                f"{where}: unit {unit!r} but {model.__name__}.{attr} is in {units[attr]!r}"
            )
        if (id_, attr) in seen:
            raise CatalogError(f"{where}: duplicate of line {seen[id_, attr]}")
        seen[id_, attr] = line
        try:
            parsed = _parse(raw, scalar[attr])
        except ValueError as exc:
            raise CatalogError(f"{where}: bad value {raw!r} ({exc})") from None
        first_line.setdefault(id_, line)
        values.setdefault(id_, {})[attr] = parsed

    entries: dict[str, Entry] = {}
    for id_, fields in values.items():
        try:
            entries[id_] = model.model_validate({"id": id_, "source": label, **fields})
        except ValidationError as exc:
            raise CatalogError(
                f"{label}:{first_line[id_]}: id={id_!r} fails {model.__name__} validation: {exc}"
            ) from None
    return entries


def load_entries(path: str | PathLike[str], kind: str) -> dict[str, Entry]:
    """Read one catalogue CSV file from disk (see `parse_entries`)."""
    p = Path(path)
    return parse_entries(p.read_text(encoding="utf-8"), kind, label=str(p))


def _packaged_text(kind: str) -> str:
    entry_type(kind)  # reject unknown kinds before touching files
    return (resources.files("gridsim.catalog") / "data" / f"{kind}.csv").read_text(encoding="utf-8")


def figures(kind: str) -> pd.DataFrame:
    """The packaged long table for ``kind``, as stored (all columns text)."""
    return pd.read_csv(io.StringIO(_packaged_text(kind)), dtype=str, keep_default_na=False)


@dataclass(frozen=True)
class Catalog:
    """Accelerators, models and sites by id. Immutable: `extended` returns a new catalogue."""

    accelerators: Mapping[str, Accelerator]
    models: Mapping[str, LLMModel]
    sites: Mapping[str, Site]

    def __post_init__(self) -> None:
        # Read-only views, so a shared (cached) catalogue cannot be mutated by a caller.
        for kind in CATALOG_KINDS:
            object.__setattr__(self, kind, types.MappingProxyType(dict(getattr(self, kind))))

    def __reduce__(self) -> tuple[type[Catalog], tuple[dict[str, typing.Any], ...]]:
        # Mapping proxies cannot be pickled or deep-copied; a scenario carries its resolved
        # catalogue, so pickle and copy.deepcopy rebuild it from plain dicts.
        return (Catalog, (dict(self.accelerators), dict(self.models), dict(self.sites)))

    def get(self, kind: str) -> Mapping[str, Entry]:
        """Entries of one kind: ``accelerators``, ``models`` or ``sites``."""
        entry_type(kind)
        return typing.cast(Mapping[str, Entry], getattr(self, kind))

    def extended(self, kind: str, entries: Iterable[Entry]) -> Catalog:
        """A new catalogue where ``entries`` replace same-id entries of ``kind`` or are added."""
        model = entry_type(kind)
        merged = dict(self.get(kind))
        for entry in entries:
            if not isinstance(entry, model):
                raise CatalogError(
                    f"{kind} entries must be {model.__name__}, got {type(entry).__name__}"
                )
            merged[entry.id] = entry
        # Typed as Any: each entry was checked against the kind's class just above.
        changes: dict[str, typing.Any] = {kind: merged}
        return dataclasses.replace(self, **changes)

    def table(self, kind: str) -> pd.DataFrame:
        """Wide table of ``kind``: one row per entry, index ``id``, one column per field."""
        columns = [name for name in entry_type(kind).model_fields if name != "id"]
        rows = [e.model_dump() for e in self.get(kind).values()]
        frame = pd.DataFrame(rows, columns=["id", *columns])
        return frame.set_index("id")


def _only(entries: Mapping[str, Entry], model: type[E]) -> dict[str, E]:
    """Narrow parsed entries to their concrete class (parse_entries guarantees it)."""
    narrowed = {k: v for k, v in entries.items() if isinstance(v, model)}
    if len(narrowed) != len(entries):
        raise CatalogError(f"expected only {model.__name__} entries")
    return narrowed


@cache
def builtin_catalog() -> Catalog:
    """The catalogue shipped with gridsim (read once, then cached)."""

    def read(kind: str) -> dict[str, Entry]:
        label = f"gridsim/catalog/data/{kind}.csv"
        return parse_entries(_packaged_text(kind), kind, label=label)

    return Catalog(
        accelerators=_only(read("accelerators"), Accelerator),
        models=_only(read("models"), LLMModel),
        sites=_only(read("sites"), Site),
    )
