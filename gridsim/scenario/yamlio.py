"""Reading YAML safely while remembering where every key and value stands (line:column)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from gridsim.scenario.errors import Mark, Path, Problem, ScenarioError


@dataclass
class Document:
    """A YAML tree as plain Python values, with the marks of its values and keys by path."""

    data: Any
    source: str
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)


def read_yaml(path: FsPath) -> Document:
    """Load one YAML file with PyYAML's safe loader; syntax errors become Problems."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([Problem((), "file not found", Mark(source))]) from None
    except OSError as exc:
        raise ScenarioError([Problem((), f"cannot read file: {exc}", Mark(source))]) from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> Document:
    loader = yaml.SafeLoader(text)
    doc = Document(data=None, source=source)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _build(node, (), loader, doc, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(source, mark.line + 1, mark.column + 1) if mark else Mark(source)
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        hint = "check indentation, colons and quotes"
        raise ScenarioError([Problem((), f"invalid YAML: {what}; {hint}", where)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem((), f"invalid YAML: {exc}", Mark(source))]) from None
    finally:
        loader.dispose()
    if problems:
        raise ScenarioError(problems)
    return doc


def _mark(node: yaml.Node, source: str) -> Mark:
    return Mark(source, node.start_mark.line + 1, node.start_mark.column + 1)


def _build(
    node: yaml.Node, path: Path, loader: yaml.SafeLoader, doc: Document, problems: list[Problem]
) -> Any:
    doc.values[path] = _mark(node, doc.source)
    if node.tag not in loader.yaml_constructors:
        # Only the safe loader's own tags: no !!python/... and no custom constructors.
        problems.append(
            Problem(path, f"invalid YAML: tag {node.tag!r} is not allowed", doc.values[path])
        )
        return None
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<) the safe way
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                problems.append(
                    Problem(path, "mapping keys must be plain scalars", _mark(key_node, doc.source))
                )
                continue
            key = str(key)
            if key in out:
                problems.append(
                    Problem(
                        (*path, key),
                        f"duplicate key {key!r}; keep one",
                        _mark(key_node, doc.source),
                    )
                )
                continue
            doc.keys[(*path, key)] = _mark(key_node, doc.source)
            out[key] = _build(value_node, (*path, key), loader, doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), loader, doc, problems) for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
