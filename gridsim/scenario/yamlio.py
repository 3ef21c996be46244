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


MAX_FILE_BYTES = 4 * 2**20  # scenario and catalogue files are a few kB; the baseline 24 kB
MAX_VALUES = 100_000  # values after aliases are expanded (the baseline has under 1,000)
MAX_DEPTH = 64  # nesting of mappings and lists (the baseline needs 6)
YAML_SUFFIXES = (".yaml", ".yml")


def read_yaml(path: FsPath) -> Document:
    """Load one YAML file with PyYAML's safe loader; every failure becomes a Problem.

    Only regular files up to ``MAX_FILE_BYTES`` are read (not /dev/zero, a folder or a pipe),
    as UTF-8 (a UTF-8 byte-order mark is allowed).
    """
    source = str(path)
    try:
        if not path.exists():
            raise ScenarioError([Problem((), "file not found", Mark(source))])
        if not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise ScenarioError([Problem((), f"cannot read: it is {what}", Mark(source))])
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(
                [
                    Problem(
                        (),
                        f"file is {size / 2**20:.1f} MiB; scenario and catalogue files are "
                        f"limited to {MAX_FILE_BYTES // 2**20} MiB",
                        Mark(source),
                    )
                ]
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(
            [Problem((), f"cannot read file: {exc.strerror or exc}", Mark(source))]
        ) from None
    return parse_yaml(decode(raw, source), source)


def decode(raw: bytes, source: str) -> str:
    """UTF-8 text, or a Problem at the line and column of the first byte that is not."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        problem = "the file is UTF-16; save it as UTF-8"
        raise ScenarioError([Problem((), problem, Mark(source, 1, 1))])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        problem = f"byte 0x{raw[exc.start]:02x} is not UTF-8 text; save the file as UTF-8"
        raise ScenarioError([Problem((), problem, Mark(source, line, column))]) from None


def parse_yaml(text: str, source: str) -> Document:
    doc = Document(data=None, source=source)
    problems: list[Problem] = []
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
        node = loader.get_single_node()
        if node is not None:
            doc.data = _build(node, (), loader, doc, problems, [0])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(source, mark.line + 1, mark.column + 1) if mark else Mark(source)
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        hint = "check indentation, colons and quotes"
        raise ScenarioError([Problem((), f"invalid YAML: {what}; {hint}", where)]) from None
    except yaml.reader.ReaderError as exc:
        where = _position(text, exc.position, source)
        what = f"character {exc.character!r} is not allowed in YAML; remove it"
        raise ScenarioError([Problem((), f"invalid YAML: {what}", where)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem((), f"invalid YAML: {exc}", Mark(source))]) from None
    except RecursionError:
        what = f"nested too deeply to read; at most {MAX_DEPTH} levels"
        raise ScenarioError([Problem((), what, Mark(source))]) from None
    except _TooLarge as exc:
        raise ScenarioError([Problem(exc.path, str(exc), exc.mark)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if problems:
        raise ScenarioError(problems)
    return doc


class _TooLarge(Exception):
    def __init__(self, message: str, path: Path, mark: Mark):
        super().__init__(message)
        self.path, self.mark = path, mark


def _position(text: str, index: int, source: str) -> Mark:
    before = text[:index]
    return Mark(source, before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1)


def _mark(node: yaml.Node, source: str) -> Mark:
    return Mark(source, node.start_mark.line + 1, node.start_mark.column + 1)


def _build(
    node: yaml.Node,
    path: Path,
    loader: yaml.SafeLoader,
    doc: Document,
    problems: list[Problem],
    count: list[int],
) -> Any:
    doc.values[path] = _mark(node, doc.source)
    # Aliases share nodes, so a small file can stand for an exponential tree: count values
    # as they are built, and stop well before memory or time run away.
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise _TooLarge(
            f"the file expands to more than {MAX_VALUES:,} values (YAML aliases?); simplify it",
            path,
            doc.values[path],
        )
    if len(path) > MAX_DEPTH:
        raise _TooLarge(f"nested more than {MAX_DEPTH} levels deep", path, doc.values[path])
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
            out[key] = _build(value_node, (*path, key), loader, doc, problems, count)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), loader, doc, problems, count)
            for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
