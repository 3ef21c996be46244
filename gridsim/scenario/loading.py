"""From scenario files to a validated ``Scenario``: extends, overrides, --set, all errors at once.

See ``merging.py`` for the precedence order. Files are read with PyYAML's safe loader only;
the only other files a scenario reads are the ones it names (``extends``, ``catalog.include``,
trace paths), resolved relative to the file that names them.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import pydantic
from pydantic import BaseModel

from gridsim.catalog import Catalog, builtin_catalog
from gridsim.catalog.types import CATALOG_KINDS
from gridsim.policies.registry import policy_names
from gridsim.scenario.errors import Mark, Path, Problem, ScenarioError
from gridsim.scenario.merging import (
    Layer,
    Locator,
    PathError,
    deep_merge,
    parse_path,
    relocate,
    resolve_path,
    set_path,
)
from gridsim.scenario.schema import CatalogAdditions, Empirical, Scenario, TraceArrivals
from gridsim.scenario.tracefile import TraceFormat, load_trace
from gridsim.scenario.weights import raw_region_weights
from gridsim.scenario.yamlio import YAML_SUFFIXES, Document, parse_yaml, read_yaml

# Fields that hold file paths, relative to the file that wrote them: (path pattern, '*' = any).
_PATH_FIELDS: list[tuple[str | int, ...]] = [
    ("catalog", "include", "*"),
    ("demand", "classes", "*", "arrival", "path"),
    ("demand", "classes", "*", "input_tokens", "trace"),
    ("demand", "classes", "*", "output_tokens", "trace"),
]


@dataclass
class Resolved:
    """A merged scenario tree before validation, with where each value came from."""

    data: dict[str, Any]
    locator: Locator
    overrides: dict[str, tuple[Any, Layer]] = field(default_factory=dict)


def load_scenario(
    path: str | FsPath,
    scenarios: Sequence[str] = (),
    sets: Sequence[str] = (),
    seed: int | None = None,
) -> Scenario:
    """Read, merge and validate a scenario file. Raises ``ScenarioError`` with every problem."""
    resolved = resolve_file(FsPath(path), scenarios, sets)
    if seed is not None:
        resolved.data["seed"] = seed
        marks: dict[Path, Mark] = {("seed",): Mark(f"--seed {seed}")}
        resolved.locator.add(Layer(marks, dict(marks)))
    return validate(resolved.data, resolved.locator)


def load_scenario_text(text: str, source: str = "<string>", base_dir: str = ".") -> Scenario:
    """Validate a scenario given as YAML text (for notebooks and tests); no extends."""
    doc = parse_yaml(text, source)
    if not isinstance(doc.data, dict):
        raise ScenarioError([Problem((), "a scenario is a mapping of keys", Mark(source))])
    _absolutise(doc.data, FsPath(base_dir))
    locator = Locator([Layer(doc.values, doc.keys)])
    return validate(doc.data, locator)


def resolve_file(path: FsPath, scenarios: Sequence[str] = (), sets: Sequence[str] = ()) -> Resolved:
    """Merge the extends chain, then the chosen overrides, then ``--set`` arguments."""
    resolved = _load_chain(path.resolve(), [])
    problems: list[Problem] = []
    for name in scenarios:
        if name not in resolved.overrides:
            known = sorted(resolved.overrides)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"defined: {known or 'none'}"
            problems.append(
                Problem(("overrides", name), f"no override named {name!r}; {hint}", Mark(str(path)))
            )
            continue
        body, layer = resolved.overrides[name]
        problems += _apply_override(resolved, name, body, layer)
    for arg in sets:
        problems += _apply_set(resolved, arg)
    if problems:
        raise ScenarioError(problems)
    return resolved


def _load_chain(path: FsPath, stack: list[FsPath]) -> Resolved:
    if path in stack:
        cycle = " -> ".join(p.name for p in [*stack[stack.index(path) :], path])
        raise ScenarioError(
            [Problem(("extends",), f"extends cycle {cycle}; remove one link", Mark(str(stack[-1])))]
        )
    doc = read_yaml(path)
    if not isinstance(doc.data, dict):
        raise ScenarioError([Problem((), "a scenario is a mapping of keys", Mark(doc.source))])
    data = doc.data
    _absolutise(data, path.parent)
    parents = data_parents = data.pop("extends", None)
    if isinstance(parents, str):
        parents = [parents]
    if parents is not None and not (
        isinstance(parents, list) and all(isinstance(p, str) for p in parents)
    ):
        raise ScenarioError(
            [
                Problem(
                    ("extends",),
                    "extends takes a file path or a list of them",
                    doc.values.get(("extends",)),
                )
            ]
        )
    base = Resolved(data={}, locator=Locator())
    for i, parent in enumerate(parents or []):
        if not parent.lower().endswith(YAML_SUFFIXES):
            at = ("extends", i) if isinstance(data_parents, list) else ("extends",)
            raise ScenarioError(
                [
                    Problem(
                        ("extends",),
                        f"extends names {parent!r}, which is not a scenario file; "
                        "name a .yaml or .yml file",
                        doc.values.get(at),
                    )
                ]
            )
        ancestor = _load_chain((path.parent / parent).resolve(), [*stack, path])
        base.data = deep_merge(base.data, ancestor.data)
        base.locator.layers += ancestor.locator.layers
        base.overrides.update(ancestor.overrides)
    own_overrides = data.pop("overrides", None) or {}
    if not isinstance(own_overrides, dict):
        raise ScenarioError(
            [
                Problem(
                    ("overrides",),
                    "overrides is a mapping of name: changes",
                    doc.values.get(("overrides",)),
                )
            ]
        )
    for name, body in own_overrides.items():
        override_layer = Layer(
            relocate(doc.values, ("overrides", name), ()),
            relocate(doc.keys, ("overrides", name), ()),
        )
        base.overrides[str(name)] = (body, override_layer)
    base.data = deep_merge(base.data, data)
    base.locator.add(Layer(doc.values, doc.keys))
    return base


def _apply_override(resolved: Resolved, name: str, body: Any, layer: Layer) -> list[Problem]:
    if not isinstance(body, dict):
        return [
            Problem(
                ("overrides", name), "an override is a mapping of changes", layer.values.get(())
            )
        ]
    problems = []
    for key, value in body.items():
        try:
            target = resolve_path(resolved.data, parse_path(key))
            set_path(resolved.data, target, value, merge=True)
        except PathError as exc:
            problems.append(Problem(("overrides", name, key), str(exc), layer.keys.get((key,))))
            continue
        resolved.locator.add(
            Layer(relocate(layer.values, (key,), target), relocate(layer.keys, (key,), target))
        )
    return problems


def _apply_set(resolved: Resolved, arg: str) -> list[Problem]:
    import yaml

    mark = Mark(f"--set {arg}")
    key, sep, raw = arg.partition("=")
    if not sep:
        return [Problem((), "write --set as dotted.path=value, e.g. nodes[guian].pue=1.2", mark)]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        return [Problem((), f"the value is not valid YAML: {exc}", mark)]
    try:
        target = resolve_path(resolved.data, parse_path(key))
        set_path(resolved.data, target, value)
    except PathError as exc:
        return [Problem((), str(exc), mark)]
    marks = {target: mark}
    resolved.locator.add(Layer(marks, dict(marks)))
    return []


def _absolutise(data: dict[str, Any], base: FsPath) -> None:
    for pattern in _PATH_FIELDS:
        for parent, key in _matches(data, pattern):
            value = parent[key]
            if isinstance(value, str) and value and not FsPath(value).is_absolute():
                parent[key] = str((base / value).resolve())


def _matches(node: Any, pattern: tuple[str | int, ...]) -> Iterable[tuple[Any, Any]]:
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        keys: Iterable[Any] = range(len(node)) if isinstance(node, list) else []
    else:
        keys = [head] if isinstance(node, dict) and head in node else []
    for k in keys:
        if rest:
            yield from _matches(node[k], rest)
        else:
            yield node, k


# --- validation ------------------------------------------------------------------------


def validate(data: dict[str, Any], locator: Locator | None = None) -> Scenario:
    """Validate a merged tree: catalogue additions first, then everything else in one pass."""
    locator = locator or Locator()
    problems: list[Problem] = []
    catalog = builtin_catalog()
    raw_catalog = data.get("catalog", {}) or {}
    try:
        additions = CatalogAdditions.model_validate(raw_catalog)
    except pydantic.ValidationError as exc:
        problems += _problems(exc, raw_catalog, CatalogAdditions, locator, prefix=("catalog",))
        additions = CatalogAdditions()
    if additions.include:
        data = {**data, "catalog": _inline_includes(raw_catalog, additions, locator, problems)}
        additions = CatalogAdditions.model_validate(data["catalog"])
    catalog = extend_catalog(catalog, additions, locator, problems)
    context = {"catalog": catalog, "policies": policy_names()}
    try:
        scenario = Scenario.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        problems += _problems(exc, data, Scenario, locator)
        raise ScenarioError(problems) from None
    problems += _check_traces(scenario, locator)
    problems += _check_sample_pools(scenario, locator)
    try:
        raw_region_weights(scenario, catalog)
    except ValueError as exc:
        path = ("demand", "region_weights")
        problems.append(Problem(path, str(exc), locator.find(path)))
    if problems:
        raise ScenarioError(problems)
    return scenario


def _check_traces(scenario: Scenario, locator: Locator) -> list[Problem]:
    """Read every trace file the scenario names (cached for the run): any that is missing,
    malformed or holds nonsense is reported at the field that names it."""
    problems = []
    for i, cls in enumerate(scenario.demand.classes):
        named: list[tuple[Path, str, TraceFormat]] = []
        if isinstance(cls.arrival, TraceArrivals):
            named.append((("arrival", "path"), cls.arrival.path, cls.arrival.format))
        for field_name in ("input_tokens", "output_tokens", "service"):
            dist = getattr(cls, field_name)
            if isinstance(dist, Empirical):
                named.append(((field_name, "trace"), dist.trace, "auto"))
        for sub, file, fmt in named:
            path = ("demand", "classes", i, *sub)
            try:
                load_trace(file, fmt)
            except (OSError, ValueError) as exc:
                problems.append(Problem(path, str(exc), locator.find(path)))
    return problems


def _check_sample_pools(scenario: Scenario, locator: Locator) -> list[Problem]:
    """``demand.sample_pools.pools`` names pools of the scenario (node_id/pool_id)."""
    spec = scenario.demand.sample_pools
    if spec is None or spec.pools == "auto":
        return []
    nodes = {n.id: [f"{n.id}/{p.id}" for p in n.pools] for n in scenario.nodes}
    known = [name for names in nodes.values() for name in names]
    problems = []
    for i, name in enumerate(spec.pools):
        if name in known:
            continue
        if name in nodes:  # a node: name one of its pools
            hint = f"name one of its pools: {', '.join(nodes[name])}"
        else:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else f"pools are named node_id/pool_id, e.g. {known[0]!r}"
            )
        path = ("demand", "sample_pools", "pools", i)
        message = f"demand.sample_pools names unknown pool {name!r}; {hint}"
        problems.append(Problem(path, message, locator.find(path)))
    return problems


def scenario_catalog(scenario: Scenario) -> Catalog:
    """The packaged catalogue with the scenario's own entries added or overriding by id
    (resolved once, when the scenario was validated: ``Scenario.resolved_catalog``)."""
    return scenario.resolved_catalog


def extend_catalog(
    catalog: Catalog,
    additions: CatalogAdditions,
    locator: Locator,
    problems: list[Problem] | None,
) -> Catalog:
    for kind, entry_type in CATALOG_KINDS.items():
        entries = []
        for i, raw in enumerate(getattr(additions, kind)):
            base = catalog.get(kind).get(str(raw.get("id")))
            merged = {**base.model_dump(), **raw} if base is not None else raw
            try:
                entries.append(entry_type.model_validate(merged))
            except pydantic.ValidationError as exc:
                if problems is None:
                    raise
                problems += _problems(exc, raw, entry_type, locator, prefix=("catalog", kind, i))
        if entries:
            catalog = catalog.extended(kind, entries)
    return catalog


def _inline_includes(
    raw: dict[str, Any], additions: CatalogAdditions, locator: Locator, problems: list[Problem]
) -> dict[str, Any]:
    """Included catalogue files first, then the scenario's inline entries (which win)."""
    out: dict[str, Any] = {kind: [] for kind in CATALOG_KINDS}
    for i, name in enumerate(additions.include):
        at = ("catalog", "include", i)
        if not name.lower().endswith(YAML_SUFFIXES):
            message = f"{name!r} is not a catalogue file; include .yaml or .yml files"
            problems.append(Problem(("catalog", "include", i), message, locator.find(at)))
            continue
        try:
            doc: Document = read_yaml(FsPath(name))
        except ScenarioError as exc:
            problems += [
                Problem(("catalog", "include", i), p.message, p.mark) for p in exc.problems
            ]
            continue
        if doc.data is not None and not isinstance(doc.data, dict):
            message = f"{name} holds no mapping of catalogue kinds ({sorted(CATALOG_KINDS)})"
            problems.append(Problem(("catalog", "include", i), message, Mark(doc.source)))
            continue
        body = doc.data or {}
        for key in body:
            if key not in CATALOG_KINDS:
                problems.append(
                    Problem(
                        (key,),
                        f"unknown catalogue kind {key!r}; use {sorted(CATALOG_KINDS)}",
                        doc.keys.get((key,)),
                    )
                )
        for kind in CATALOG_KINDS:
            out[kind] += list(body.get(kind) or [])
    for kind in CATALOG_KINDS:
        out[kind] += list(raw.get(kind) or [])
    return out


def _problems(
    exc: pydantic.ValidationError,
    data: Any,
    model: type[BaseModel],
    locator: Locator,
    prefix: Path = (),
) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        path = _data_path(data, tuple(err["loc"]))
        full = (*prefix, *path)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(path[-1])
            allowed = _allowed_keys(model, data, path[:-1])
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"allowed keys: {', '.join(sorted(allowed))}"
            )
            message = f"unknown key {key!r}; {hint}"
            mark = locator.find(full, key=True)
        elif kind == "missing":
            message = f"required field {str(path[-1])!r} is missing; add it"
            mark = locator.find(full, key=True)
        else:
            message = err["msg"].removeprefix("Value error, ")
            if kind not in ("value_error", "assertion_error") and not isinstance(
                err["input"], dict | list
            ):
                message += f" (got {err['input']!r})"
            mark = locator.find(full)
        out.append(Problem(full, message, mark))
    return out


def _data_path(data: Any, loc: tuple[Any, ...]) -> Path:
    """Drop pydantic's union-tag and validator entries from an error location."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, list) and isinstance(part, int):
            node = node[part] if part < len(node) else None
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and last:
            pass
        else:
            continue
        out.append(part)
    return tuple(out)


def _allowed_keys(model: type[BaseModel], data: Any, path: Path) -> set[str]:
    """The field names of the model(s) that validate the mapping at ``path``."""
    kinds: list[Any] = [model]
    node = data
    for part in path:
        node = _child(node, part)
        step: list[Any] = []
        for option in (o for k in kinds for o in _options(k)):
            if isinstance(part, int):
                step += typing.get_args(option)[:1]  # list[X] -> X
            elif _is_model(option) and part in option.model_fields:
                step.append(option.model_fields[part].annotation)
        kinds = step
    models = [o for k in kinds for o in _options(k) if _is_model(o)]
    if isinstance(node, dict):  # a discriminated union: keep the member the tag names
        models = [m for m in models if _tag_matches(m, node)] or models
    return {name for m in models for name in m.model_fields}


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _options(kind: Any) -> list[Any]:
    while typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return [o for a in typing.get_args(kind) for o in _options(a) if o is not type(None)]
    return [kind]


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _tag_matches(model: type[BaseModel], node: dict[str, Any]) -> bool:
    for name, info in model.model_fields.items():
        if typing.get_origin(info.annotation) is typing.Literal and name in node:
            return node[name] in typing.get_args(info.annotation)
    return True
