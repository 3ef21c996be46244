"""Fuzzing the ``gridsim`` command line with mutants of the project's own scenarios.

The contract under test (README, "Bad input never shows a Python traceback"): whatever the
scenario file holds, ``gridsim validate|show|run FILE`` either succeeds (exit 0; for ``run``, a
complete run folder) or exits 2 with a message that says where the problem is. Never a
traceback, never a hang past a time limit, never a file written outside the run folder.

Three parts, used by ``tests/test_fuzz.py`` and runnable on their own:

- mutation operators (hypothesis strategies, so a failure shrinks to a small reproducer): on the
  parsed tree (drop, duplicate, retype and scale values, non-finite numbers, fields added with
  edge values, paths pointing outside: ``extends``, ``catalog.include``, trace files) and on the
  file's text or bytes (deleted/inserted characters, bad indentation, unclosed brackets, tabs,
  NUL bytes, invalid UTF-8, UTF-16, alias bombs, deep nesting, truncation);
- ``probe``: runs one command in-process (``typer.testing.CliRunner``) on a mutant written into a
  fresh temporary folder beside a copy of ``scenarios/`` (so relative ``extends`` resolve), under
  a wall-clock limit (SIGALRM) and an address-space limit, and classifies the outcome;
- ``tally``: N seeded random probes per command, a table of outcome counts and one reproducer per
  distinct failure cause. Run it with::

      python tests/fuzzing.py --probes 200 --commands validate,show,run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import difflib
import faulthandler
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
PACKAGE = "gridsim"

TreePath = tuple[str | int, ...]

# --- scenario sources ------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Source:
    """One project scenario to mutate: its text, parsed tree and the paths inside the tree."""

    rel: str  # relative to scenarios/, e.g. "validation/mmc.yaml"
    text: str  # the text mutants start from when only text operators apply
    tree: dict[str, Any]
    paths: tuple[TreePath, ...]  # every mapping value and list item
    numeric: tuple[TreePath, ...]  # numbers and durations ("5min")
    items: tuple[TreePath, ...]  # list items
    classes: int  # demand classes written in this file

    def __repr__(self) -> str:
        return f"Source({self.rel!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer
        printer.text(repr(self))


_DURATION_TEXT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]+)\s*$")


def _walk(node: Any, path: TreePath = ()) -> Iterator[tuple[TreePath, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*path, i), value
            yield from _walk(value, (*path, i))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def make_source(rel: str, text: str, tree: dict[str, Any] | None = None) -> Source:
    tree = yaml.safe_load(text) if tree is None else tree
    walked = list(_walk(tree))
    classes = (
        tree.get("demand", {}).get("classes") if isinstance(tree.get("demand"), dict) else None
    )
    return Source(
        rel=rel,
        text=text,
        tree=tree,
        paths=tuple(p for p, _ in walked),
        numeric=tuple(
            p
            for p, v in walked
            if _is_number(v) or (isinstance(v, str) and _DURATION_TEXT.match(v))
        ),
        items=tuple(p for p, _ in walked if isinstance(p[-1], int)),
        classes=len(classes) if isinstance(classes, list) else 0,
    )


def load_sources() -> list[Source]:
    """Every scenario in scenarios/ and scenarios/validation/, smallest file first (so that
    hypothesis shrinks towards the smallest)."""
    files = sorted(
        [*SCENARIOS.glob("*.yaml"), *(SCENARIOS / "validation").glob("*.yaml")],
        key=lambda p: (p.stat().st_size, str(p)),
    )
    return [make_source(str(f.relative_to(SCENARIOS)), f.read_text("utf-8")) for f in files]


def _set(tree: dict[str, Any], path: TreePath, value: Any) -> bool:
    """Set ``path`` in ``tree``, creating missing mappings; False when the path is blocked."""
    node: Any = tree
    for part in path[:-1]:
        if isinstance(node, dict):
            if not isinstance(node.get(part), dict | list):
                if part in node and node[part] is not None:
                    return False
                node[part] = {}
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
        return True
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
        return True
    return False


# Short runs for `gridsim run` fuzzing: applied to the original before mutating.
RUN_SHORTENING: dict[str, dict[TreePath, Any]] = {
    "validation/mmc.yaml": {
        ("horizon", "duration"): "10min",
        ("horizon", "warmup"): "1min",
    },
    "validation/cross_fidelity.yaml": {
        ("horizon", "duration"): "10min",
        ("horizon", "warmup"): "1min",
        ("outputs", "timeseries_interval"): "1min",
        ("demand", "sample_fraction"): 0.01,
    },
}


def run_sources() -> list[Source]:
    """The small scenarios, shortened to runs of a second or two, for ``gridsim run``."""
    out = []
    for rel, changes in RUN_SHORTENING.items():
        tree = yaml.safe_load((SCENARIOS / rel).read_text("utf-8"))
        for path, value in changes.items():
            _set(tree, path, value)
        out.append(make_source(rel, dump_tree(tree), tree))
    return out


# --- mutation operators ----------------------------------------------------------------------

# A scalar written into the YAML text as is (non-finite floats, numbers too big for a float).
_RAW = re.compile(r"__RAW__(.+?)__")


def raw(literal: str) -> str:
    return f"__RAW__{literal}__"


def dump_tree(tree: Any) -> str:
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=10_000)
    return _RAW.sub(lambda m: m.group(1), text)


@dataclasses.dataclass(frozen=True)
class Op:
    """One mutation: ``kind`` names the operator, ``path`` a place in the tree (tree operators)
    and ``arg`` its parameter."""

    kind: str
    path: TreePath = ()
    arg: Any = None

    @property
    def on_tree(self) -> bool:
        return self.kind in TREE_OPS

    def __str__(self) -> str:
        where = f" {_dotted(self.path)}" if self.path else ""
        return f"{self.kind}{where} {self.arg!r}" if self.arg is not None else f"{self.kind}{where}"


def _dotted(path: TreePath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parent(tree: Any, path: TreePath) -> tuple[Any, Any] | None:
    node = tree
    for part in path[:-1]:
        if not _has(node, part):
            return None
        node = node[part]
    return (node, path[-1]) if _has(node, path[-1]) else None


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


def _retype(value: Any, kind: str) -> Any:
    return {
        "string": str(value) if not isinstance(value, str) else value + "!",
        "word": "seven",
        "empty-string": "",
        "list": [value],
        "empty-list": [],
        "mapping": {"value": value},
        "empty-mapping": {},
        "bool": True,
        "null": None,
        "int": 3,
        "negative": -2.5,
        "date": "2026-02-30",
    }[kind]


RETYPES = (
    "string",
    "word",
    "empty-string",
    "list",
    "empty-list",
    "mapping",
    "empty-mapping",
    "bool",
    "null",
    "int",
    "negative",
    "date",
)
SCALES = (0, -1, 1e-12, 1e12, 1e300, 2)
# YAML 1.1 (PyYAML) reads 1e400 as a string and 1.0e+400 as a float (inf): both are here.
NONFINITE = (
    ".nan",
    ".inf",
    "-.inf",
    "1.0e+400",
    "1e400",
    "-1e400",
    "1e400s",
    "1e400d",
    "nan",
    "inf s",
)

# Fields that the small scenarios leave out, set to edge values.
ADD_FIELDS: tuple[TreePath, ...] = (
    ("outputs", "timeseries_interval"),
    ("outputs", "requests"),
    ("outputs", "figures"),
    ("horizon", "resolution"),
    ("horizon", "warmup"),
    ("horizon", "start"),
    ("horizon", "duration"),
    ("admission", "queue_limit"),
    ("admission", "max_wait"),
    ("demand", "sample_fraction"),
    ("demand", "tokens_per_day"),
    ("seed",),
    ("fidelity",),
    ("policy", "on_failure"),
    ("policy", "params"),
    ("network", "per_hop_ms"),
    ("events",),
    ("sweep",),
    ("overrides",),
)
ADD_VALUES: tuple[Any, ...] = (
    0,
    "0s",
    -1,
    1e-12,
    "1e-12s",
    1e300,
    "1e300s",
    "1e400s",
    raw(".nan"),
    raw(".inf"),
    raw("1.0e+400"),
    raw("1e400"),
    True,
    "request",
    "flow",
    "2026-02-30",
    "9999-12-31",
    "0001-01-01",
    2**70,
    [],
    {},
)

# Paths pointing outside the scenario folder, or at things that are not what the field wants.
EXTENDS_TARGETS: tuple[Any, ...] = (
    "/dev/zero",
    "../../../../etc/passwd",
    "../../../../../../../../../../etc/passwd",
    "/etc/passwd",
    "/dev/null",
    "/",
    ".",
    "missing.yaml",
    ["/etc/passwd"],
    "",
)
INCLUDE_TARGETS: tuple[str, ...] = (
    "/etc/passwd",
    "/dev/zero",
    "/dev/null",
    "/",
    ".",
    "missing.yaml",
    "../../../../../../../../../../etc/passwd",
    "SELF",
)
TRACE_TARGETS: tuple[str, ...] = (
    "missing-trace.csv",
    ".",
    "/",
    "/dev/zero",
    "/dev/null",
    "/etc/passwd",
    "SELF",  # the scenario's own (non-trace) text file
)
TRACE_FIELDS = ("arrival", "input_tokens", "output_tokens")

TREE_OPS = {
    "drop",
    "dup-item",
    "retype",
    "scale",
    "nonfinite",
    "add",
    "extends",
    "include",
    "trace",
}


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, str):
        match = _DURATION_TEXT.match(value)
        if not match:
            return value
        number, unit = match.groups()
        return f"{float(number) * factor:g}{unit}".replace("inf", "1e400")
    result = value * factor
    if isinstance(value, int) and result == int(result) and abs(result) < 2**63:
        return int(result)
    return result


def _nonfinite(value: Any, literal: str) -> Any:
    match = _DURATION_TEXT.match(value) if isinstance(value, str) else None
    if match and literal == "1e400":
        return f"1e400{match.group(2)}"  # a duration in the scenario's own unit
    if literal in (".nan", ".inf", "-.inf", "1.0e+400", "1e400", "-1e400"):
        return raw(literal)
    return literal


def _apply_tree(op: Op, tree: dict[str, Any], source: Source) -> dict[str, Any]:
    """Apply a tree operator in place; returns the root (``extends`` puts its key first)."""
    kind, path, arg = op.kind, op.path, op.arg
    if kind in ("drop", "dup-item", "retype", "scale", "nonfinite"):
        found = _parent(tree, path)
        if found is None:
            return tree
        node, key = found
        if kind == "drop":
            del node[key]
        elif kind == "dup-item":
            if isinstance(node, list):
                node.insert(key + 1, copy.deepcopy(node[key]))
        elif kind == "retype":
            node[key] = _retype(node[key], arg)
        elif kind == "scale":
            if _is_number(node[key]) or isinstance(node[key], str):
                node[key] = _scaled(node[key], arg)
        else:
            node[key] = _nonfinite(node[key], arg)
    elif kind == "add":
        _set(tree, path, copy.deepcopy(arg))
    elif kind == "extends":
        tree.pop("extends", None)
        return {"extends": copy.deepcopy(arg), **tree}
    elif kind == "include":
        target = Path(source.rel).name if arg == "SELF" else arg
        catalog = tree.get("catalog")
        if not isinstance(catalog, dict):
            catalog = tree["catalog"] = {}
        catalog["include"] = [target]
    elif kind == "trace":
        index, field_name, target = arg
        target = Path(source.rel).name if target == "SELF" else target
        classes = (
            tree.get("demand", {}).get("classes") if isinstance(tree.get("demand"), dict) else None
        )
        if not isinstance(classes, list) or not classes or not isinstance(classes[0], dict):
            _set(
                tree, ("demand", "classes"), [{"name": "fuzz", "share": 0.1, "model": "qwen3-32b"}]
            )
            classes = tree["demand"]["classes"]
            if not isinstance(classes, list):
                return tree
        cls = classes[index % len(classes)]
        if not isinstance(cls, dict):
            return tree
        if field_name == "arrival":
            cls["arrival"] = {"process": "trace", "path": target}
        else:
            which = "input" if field_name == "input_tokens" else "output"
            cls[field_name] = {"dist": "empirical", "trace": target, "field": which}
    return tree


_KEY_LINE = re.compile(rb"^(\s*)(- )?[A-Za-z_][\w.-]*:( |$)")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _key_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if _KEY_LINE.match(line)] or [0]


def _alias_bomb(levels: int, width: int = 10) -> bytes:
    rows = ["bomb0: &b0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        rows.append(f"bomb{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * width) + "]")
    return ("\n" + "\n".join(rows) + "\n").encode()


def _deep(depth: int, style: str) -> bytes:
    if style == "list":
        return f"\ndeep: {'[' * depth}{']' * depth}\n".encode()
    if style == "map":
        return f"\ndeep: {'{a: ' * depth}1{'}' * depth}\n".encode()
    return (
        "\ndeep:\n"
        + "".join(" " * (i + 1) + "a:\n" for i in range(depth))
        + " " * (depth + 1)
        + "1\n"
    ).encode()


def _apply_text(op: Op, data: bytes) -> bytes:
    kind, arg = op.kind, op.arg
    size = max(len(data), 1)
    lines = _lines(data)
    if kind == "delete-char":
        pos = arg % size
        return data[:pos] + data[pos + 1 :]
    if kind == "insert-char":
        pos, char = arg
        pos %= size
        return data[:pos] + char.encode() + data[pos:]
    if kind == "dup-key":
        keys = _key_lines(lines)
        i = keys[arg % len(keys)]
        return b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    if kind == "indent":
        line, spaces = arg
        i = line % len(lines)
        lines[i] = b" " * spaces + lines[i]
        return b"\n".join(lines)
    if kind == "dedent":
        keys = _key_lines(lines)
        i = keys[arg % len(keys)]
        lines[i] = lines[i].lstrip(b" ")
        return b"\n".join(lines)
    if kind == "unclosed":
        line, bracket = arg
        keys = _key_lines(lines)
        i = keys[line % len(keys)]
        head, sep, tail = lines[i].partition(b": ")
        lines[i] = (
            head + b": " + bracket.encode() + tail if sep else lines[i] + b" " + bracket.encode()
        )
        return b"\n".join(lines)
    if kind == "tab":
        keys = _key_lines(lines)
        i = keys[arg % len(keys)]
        stripped = lines[i].lstrip(b" ")
        lines[i] = b"\t" + stripped if len(stripped) < len(lines[i]) else b"\t" + lines[i]
        return b"\n".join(lines)
    if kind == "insert-bytes":
        pos, chunk = arg
        pos %= size
        return data[:pos] + chunk + data[pos:]
    if kind == "reencode":
        return data.decode("utf-8", "replace").encode(arg, "replace")
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n" if arg else b"\r")
    if kind == "truncate":
        return data[: arg % size]
    if kind == "alias-bomb":
        return data + _alias_bomb(arg)
    if kind == "deep":
        depth, style = arg
        return data + _deep(depth, style)
    raise ValueError(f"unknown operator {kind}")


@dataclasses.dataclass(eq=False)
class Mutant:
    """A mutated scenario: the operators applied and the resulting file bytes."""

    source: Source
    ops: tuple[Op, ...]
    data: bytes
    base: str  # the unmutated text the diff is taken against

    @property
    def name(self) -> str:
        return "mutant-" + Path(self.source.rel).name

    def __repr__(self) -> str:
        return f"Mutant({self.source.rel}: {'; '.join(map(str, self.ops))})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer
        printer.text(repr(self))

    def snippet(self, limit: int = 14, width: int = 160) -> str:
        """The change as a short unified diff (non-UTF-8 lines shown as Python bytes)."""
        try:
            text = self.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            new = [repr(line)[:width] for line in self.data.split(b"\n")]
            old = [repr(line)[:width] for line in self.base.encode().split(b"\n")]
        else:
            new = [line[:width] for line in text.split("\n")]
            old = [line[:width] for line in self.base.split("\n")]
        diff = list(difflib.unified_diff(old, new, "original", self.name, n=1, lineterm=""))[2:]
        if len(diff) > limit:
            diff = [*diff[:limit], f"... ({len(diff) - limit} more diff lines)"]
        return "\n".join(diff) or "(no change)"


def build(source: Source, ops: Sequence[Op]) -> Mutant:
    tree_ops = [op for op in ops if op.on_tree]
    if tree_ops:
        tree = copy.deepcopy(source.tree)
        for op in tree_ops:
            tree = _apply_tree(op, tree, source)
        text, base = dump_tree(tree), dump_tree(source.tree)
    else:
        text = base = source.text
    data = text.encode("utf-8")
    for op in ops:
        if not op.on_tree:
            data = _apply_text(op, data)
    return Mutant(source, tuple(ops), data, base)


# How often each group of operators is drawn: values (scale, non-finite, added fields), shape
# (drop, retype, duplicate), outside paths, text. RUN_WEIGHTS favours values, which keep more
# mutants valid, so that ``run`` reaches the engines with extreme inputs.
WEIGHTS = (2, 2, 1, 2)
RUN_WEIGHTS = (4, 1, 1, 1)


def operators(source: Source, weights: Sequence[int] = WEIGHTS) -> st.SearchStrategy[Op]:
    """Every mutation operator that applies to ``source``, simplest first (hypothesis shrinks
    towards the first group and the first operator of a group)."""
    paths = st.sampled_from(source.paths)
    pos = st.integers(0, 10**6)
    line = st.integers(0, 10**4)
    value_ops: list[st.SearchStrategy[Op]] = []
    if source.numeric:
        numeric = st.sampled_from(source.numeric)
        value_ops += [
            st.builds(Op, st.just("scale"), numeric, st.sampled_from(SCALES)),
            st.builds(Op, st.just("nonfinite"), numeric, st.sampled_from(NONFINITE)),
        ]
    value_ops.append(
        st.builds(Op, st.just("add"), st.sampled_from(ADD_FIELDS), st.sampled_from(ADD_VALUES))
    )
    shape_ops = [
        st.builds(Op, st.just("drop"), paths),
        st.builds(Op, st.just("retype"), paths, st.sampled_from(RETYPES)),
        st.builds(Op, st.just("nonfinite"), paths, st.sampled_from(NONFINITE)),
    ]
    if source.items:
        shape_ops.append(st.builds(Op, st.just("dup-item"), st.sampled_from(source.items)))
    outside = [
        st.builds(Op, st.just("extends"), st.just(()), st.sampled_from(EXTENDS_TARGETS)),
        st.builds(Op, st.just("include"), st.just(()), st.sampled_from(INCLUDE_TARGETS)),
        st.builds(
            Op,
            st.just("trace"),
            st.just(()),
            st.tuples(
                st.integers(0, 9), st.sampled_from(TRACE_FIELDS), st.sampled_from(TRACE_TARGETS)
            ),
        ),
    ]
    text_ops = [
        st.builds(Op, st.just("dup-key"), st.just(()), line),
        st.builds(Op, st.just("delete-char"), st.just(()), pos),
        st.builds(
            Op,
            st.just("insert-char"),
            st.just(()),
            st.tuples(pos, st.sampled_from(list(":-[]{}'\"&*!%|>#\n ,?@`\\"))),
        ),
        st.builds(Op, st.just("indent"), st.just(()), st.tuples(line, st.sampled_from([1, 3]))),
        st.builds(Op, st.just("dedent"), st.just(()), line),
        st.builds(
            Op,
            st.just("unclosed"),
            st.just(()),
            st.tuples(line, st.sampled_from(["[", "{", '"', "'"])),
        ),
        st.builds(Op, st.just("tab"), st.just(()), line),
        st.builds(Op, st.just("truncate"), st.just(()), pos),
        st.builds(Op, st.just("crlf"), st.just(()), st.booleans()),
        st.builds(
            Op,
            st.just("insert-bytes"),
            st.just(()),
            st.tuples(
                pos,
                st.sampled_from(
                    [b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\x1b", b"\x00" * 8]
                ),
            ),
        ),
        st.builds(
            Op,
            st.just("reencode"),
            st.just(()),
            st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig", "latin-1"]),
        ),
        st.builds(Op, st.just("alias-bomb"), st.just(()), st.integers(1, 9)),
        st.builds(
            Op,
            st.just("deep"),
            st.just(()),
            st.tuples(st.sampled_from([50, 500, 5000]), st.sampled_from(["list", "map", "block"])),
        ),
    ]
    kinds = (value_ops, shape_ops, outside, text_ops)
    groups = [group for group, weight in zip(kinds, weights, strict=True) for _ in range(weight)]
    return st.sampled_from(range(len(groups))).flatmap(lambda g: st.one_of(*groups[g]))


@st.composite
def mutants(
    draw: st.DrawFn,
    sources: Sequence[Source],
    max_ops: int = 3,
    weights: Sequence[int] = WEIGHTS,
) -> Mutant:
    """A scenario from ``sources`` with 1 to ``max_ops`` mutations."""
    source = draw(st.sampled_from(list(sources)))
    ops = draw(st.lists(operators(source, weights), min_size=1, max_size=max_ops))
    return build(source, ops)


# Named mutants, one for each hazard the issue lists, on the smallest complete scenario (mmc)
# unless a parent is needed: every test run probes these, whatever hypothesis draws.
_MMC = "validation/mmc.yaml"
_RATE = ("demand", "classes", 0, "rate_per_s")
_SLOTS = ("nodes", 0, "pools", 0, "slots")
HAZARDS: dict[str, tuple[str, tuple[Op, ...]]] = {
    "timeseries_interval: 0": (_MMC, (Op("add", ("outputs", "timeseries_interval"), 0),)),
    "resolution: 1e-12s": (_MMC, (Op("add", ("horizon", "resolution"), "1e-12s"),)),
    "warmup: 1e300s": (_MMC, (Op("add", ("horizon", "warmup"), "1e300s"),)),
    "duration: 1e400s": (_MMC, (Op("nonfinite", ("horizon", "duration"), "1e400s"),)),
    "duration: .nan": (_MMC, (Op("nonfinite", ("horizon", "duration"), ".nan"),)),
    "duration x1e12": (_MMC, (Op("scale", ("horizon", "duration"), 1e12),)),
    "start: 9999-12-31": (_MMC, (Op("add", ("horizon", "start"), "9999-12-31"),)),
    "seed: 2**70": (_MMC, (Op("add", ("seed",), 2**70),)),
    "rate_per_s: .inf": (_MMC, (Op("nonfinite", _RATE, ".inf"),)),
    "rate_per_s: 1e400": (_MMC, (Op("nonfinite", _RATE, "1e400"),)),
    "rate_per_s x0": (_MMC, (Op("scale", _RATE, 0),)),
    "rate_per_s x-1": (_MMC, (Op("scale", _RATE, -1),)),
    "rate_per_s x1e12": (_MMC, (Op("scale", _RATE, 1e12),)),
    "slots x1e12": (_MMC, (Op("scale", _SLOTS, 1e12),)),
    "slots x1e300": (_MMC, (Op("scale", _SLOTS, 1e300),)),
    "service.mean x1e-12": (
        _MMC,
        (Op("scale", ("demand", "classes", 0, "service", "mean"), 1e-12),),
    ),
    "max_wait: .nan": (_MMC, (Op("add", ("admission", "max_wait"), raw(".nan")),)),
    "queue_limit: 2**70": (_MMC, (Op("add", ("admission", "queue_limit"), 2**70),)),
    "nodes as a mapping": (_MMC, (Op("retype", ("nodes",), "mapping"),)),
    "regions: null": (_MMC, (Op("retype", ("regions",), "null"),)),
    "classes as a string": (_MMC, (Op("retype", ("demand", "classes"), "string"),)),
    "lat as a list": (_MMC, (Op("retype", ("regions", 0, "lat"), "list"),)),
    "demand dropped": (_MMC, (Op("drop", ("demand",)),)),
    # found by the tally (seed 7): the default gdp weights on a region without a catalogue site
    "region_weights dropped": (_MMC, (Op("drop", ("demand", "region_weights")),)),
    "node duplicated": (_MMC, (Op("dup-item", ("nodes", 0)),)),
    "key duplicated": (_MMC, (Op("dup-key", (), 0),)),
    "NUL byte": (_MMC, (Op("insert-bytes", (), (0, b"\x00")),)),
    "invalid UTF-8": (_MMC, (Op("insert-bytes", (), (0, b"\xff")),)),
    "UTF-16": (_MMC, (Op("reencode", (), "utf-16"),)),
    "tab indent": (_MMC, (Op("tab", (), 4),)),
    "bad indent": (_MMC, (Op("indent", (), (15, 3)),)),
    "unclosed bracket": (_MMC, (Op("unclosed", (), (4, "[")),)),
    "truncated": (_MMC, (Op("truncate", (), 700),)),
    "alias bomb": (_MMC, (Op("alias-bomb", (), 9),)),
    "5000-deep list": (_MMC, (Op("deep", (), (5000, "list")),)),
    "5000-deep mapping": (_MMC, (Op("deep", (), (5000, "map")),)),
    "extends: /dev/zero": (_MMC, (Op("extends", (), "/dev/zero"),)),
    "extends: ../../../../etc/passwd": (_MMC, (Op("extends", (), "../../../../etc/passwd"),)),
    "extends: / (a folder)": (_MMC, (Op("extends", (), "/"),)),
    "extends: missing": (_MMC, (Op("extends", (), "missing.yaml"),)),
    "include: /etc/passwd": (_MMC, (Op("include", (), "/etc/passwd"),)),
    "include: /dev/zero": (_MMC, (Op("include", (), "/dev/zero"),)),
    "trace path: missing": (_MMC, (Op("trace", (), (0, "arrival", "missing-trace.csv")),)),
    "trace path: a folder": (_MMC, (Op("trace", (), (0, "arrival", ".")),)),
    "trace path: /dev/zero": (_MMC, (Op("trace", (), (0, "arrival", "/dev/zero")),)),
    "trace path: a YAML file": (_MMC, (Op("trace", (), (0, "arrival", "SELF")),)),
    "tokens trace: /etc/passwd": (
        "validation/cross_fidelity.yaml",
        (Op("trace", (), (0, "input_tokens", "/etc/passwd")),),
    ),
}


def hazard(name: str, sources: Sequence[Source]) -> Mutant:
    rel, ops = HAZARDS[name]
    return build(next(s for s in sources if s.rel == rel), ops)


# --- running and classifying -----------------------------------------------------------------

OK, CLEAN = "ok", "clean-error"
NO_LOCATION, INCOMPLETE = "no-location", "incomplete"
TRACEBACK, HANG, WRITE = "traceback", "hang", "write"
KINDS = (OK, CLEAN, NO_LOCATION, INCOMPLETE, TRACEBACK, HANG, WRITE)
GOOD = (OK, CLEAN)
RUN_FILES = ("summary.json", "manifest.json", "scenario.resolved.yaml")
TOP_KEYS = (
    "name|description|seed|fidelity|horizon|catalog|regions|nodes|network|demand|policy"
    "|admission|events|outputs|sweep|extends|overrides"
)
_LOCATION = re.compile(
    r"\S+:\d+:\d+"  # file:line:column
    rf"|\b(?:{TOP_KEYS})(?:\[[^\]\s]+\]|\.\w+)+"  # a dotted field path
    rf"|(?:^|\s)(?:{TOP_KEYS}):\s"  # a top-level field named as the place
    r"|--set\b|--seed\b|--scenario\b|--out\b|--fidelity\b"  # a command-line argument
    r"|(?:^|[\s'\"(])/[^\s:'\"]+"  # an absolute file path
    r"|\b[\w.-]+\.ya?ml\b",  # a scenario file
    re.MULTILINE,
)


class ProbeTimeout(BaseException):
    """Raised by SIGALRM when a probe runs past its time limit (a BaseException, so that
    ``except Exception`` in the code under test does not swallow it)."""


@dataclasses.dataclass
class Outcome:
    command: str
    kind: str
    exit_code: int | None
    output: str
    cause: str = ""
    elapsed: float = 0.0
    written: tuple[str, ...] = ()
    mutant: Mutant | None = None

    @property
    def good(self) -> bool:
        return self.kind in GOOD

    def report(self) -> str:
        name = self.mutant.name if self.mutant else "FILE"
        lines = [
            f"{self.kind} ({self.cause or 'exit ' + str(self.exit_code)}) after "
            f"{self.elapsed:.1f} s: gridsim {self.command} {name}",
        ]
        if self.mutant is not None:
            lines += [f"mutations: {'; '.join(map(str, self.mutant.ops))}", self.mutant.snippet()]
        if self.written:
            lines.append("written: " + ", ".join(self.written[:10]))
        tail = self.output.strip().splitlines()[-25:]
        if tail:
            lines += ["output:", *(f"  {t[:300]}" for t in tail)]
        return "\n".join(lines)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[list[float]]:
    """SIGALRM after ``seconds`` raises ProbeTimeout; a C call that never returns to Python is
    stopped (whole process, with a stack dump) by faulthandler after three times as long."""

    def on_alarm(signum: int, frame: Any) -> None:
        fired.append(time.perf_counter())
        # Again in 0.2 s: code that swallows the first one (a gc callback, ``except
        # BaseException: pass``) does not get to run on.
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        raise ProbeTimeout(f"over {seconds} s")

    fired: list[float] = []
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(3 * seconds + 30, exit=True)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for row in fh:
            if row.startswith("VmSize:"):
                return int(row.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def memory_limit(extra_bytes: int | None) -> Iterator[None]:
    """Cap the address space at its current size plus ``extra_bytes`` (so that reading
    /dev/zero or building a huge array fails with MemoryError instead of taking the machine)."""
    if not extra_bytes or not sys.platform.startswith("linux"):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Files with their size and modification time; folders by existence only (a folder's
    time changes whenever an entry is added inside it, e.g. the allowed output folder)."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[str(Path(folder, name).relative_to(root))] = (-1, 0)
        for name in files:
            path = Path(folder, name)
            with contextlib.suppress(OSError):
                stat = path.lstat()
                out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return out


def _where(tb: Any) -> str:
    """The last frame inside the gridsim package (else the last frame) as file:line."""
    frames = [f for f in traceback.extract_tb(tb) if f.filename != __file__]  # not the harness
    ours = [f for f in frames if f"{os.sep}{PACKAGE}{os.sep}" in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "?"
    marker = f"{os.sep}{PACKAGE}{os.sep}"
    if marker in frame.filename:
        inside = frame.filename.rsplit(marker, 1)[1].replace(os.sep, "/")
        name = f"{PACKAGE}/{inside}"
    else:
        name = Path(frame.filename).name
    return f"{name}:{frame.lineno} in {frame.name}"


_VALIDATE_HEADER = re.compile(r"^\S+: (?:invalid|ok)\b.*$", re.MULTILINE)


def _hang_cause(tb: Any) -> str:
    """Where a hang was interrupted, by function (the line varies from probe to probe)."""
    where = _where(tb) if tb is not None else "?"
    file, _, rest = where.partition(":")
    return f"hang in {file} {rest.partition(' in ')[2] or '?'}"


_COUNT_HEADER = re.compile(r"^\d+ problems? in scenario$")


def _gist(output: str) -> str:
    """The first message line, with numbers and temporary paths blanked, to group failures."""
    for line in output.splitlines():
        line = line.strip()
        if line and not _VALIDATE_HEADER.match(line) and not _COUNT_HEADER.match(line):
            line = re.sub(r"\S*gridsim-fuzz-[^/\s]+", "<tmp>", line)
            line = re.sub(r"0x[0-9a-fA-F]+", "<hex>", line)
            return re.sub(r"\d+", "N", line)[:110]
    return "(no output)"


def has_location(output: str) -> bool:
    """Whether an error message says where: ``validate``'s "FILE: invalid" header does not
    count (it is printed for any problem); the problem lines must."""
    return bool(_LOCATION.search(_VALIDATE_HEADER.sub("", output)))


def probe(
    command: str,
    mutant: Mutant,
    time_limit_s: float = 10.0,
    env: dict[str, str] | None = None,
    memory_extra: int | None = 4 << 30,
    extra_args: Sequence[str] = (),
) -> Outcome:
    """Run ``gridsim COMMAND MUTANT`` in a fresh temporary folder and classify the outcome.

    Layout: ``<tmp>/scenarios/`` is a copy of the project's scenarios with the mutant written
    beside its original (so relative ``extends`` still resolve); ``<tmp>/work`` is the working
    directory; only ``<tmp>/work/out`` (``run --out``) may be written."""
    from typer.testing import CliRunner

    from gridsim.cli import app

    root = Path(tempfile.mkdtemp(prefix="gridsim-fuzz-"))
    try:
        shutil.copytree(SCENARIOS, root / "scenarios")
        target = root / "scenarios" / Path(mutant.source.rel).parent / mutant.name
        target.write_bytes(mutant.data)
        work = root / "work"
        work.mkdir()
        out_dir = work / "out"
        args = [command, str(target)]
        if command == "run":
            args += ["--out", str(out_dir)]
        elif command == "topology":
            args += ["--figure", str(out_dir / "map.png")]
            out_dir.mkdir()
        args += list(extra_args)
        before = _snapshot(root)
        runner = CliRunner(env=env)
        cwd = os.getcwd()
        started = time.perf_counter()
        result = None
        try:
            os.chdir(work)
            # The time limit innermost: its alarm is off before the other limits are undone.
            with (
                _recording_tracebacks() as seen,
                memory_limit(memory_extra),
                time_limit(time_limit_s) as fired,
            ):
                result = runner.invoke(app, args, catch_exceptions=True)
        except ProbeTimeout as exc:
            outcome = Outcome(command, HANG, None, "", _hang_cause(exc.__traceback__))
        finally:
            os.chdir(cwd)
        elapsed = time.perf_counter() - started
        if result is not None:
            outcome = _classify(command, result, out_dir, seen)
            if fired:  # the time limit passed, but something caught ProbeTimeout
                caught = result.exc_info[2] if result.exc_info else None
                outcome.kind, outcome.cause = HANG, _hang_cause(caught) + " (timeout caught)"
        outcome.elapsed, outcome.mutant = elapsed, mutant
        after = _snapshot(root)
        allowed = str(out_dir.relative_to(root))
        changed = sorted(
            p
            for p in set(before) | set(after)
            if before.get(p) != after.get(p)
            and not (p == allowed or p.startswith(allowed + os.sep))
        )
        if command == "topology":
            changed = [p for p in changed if p != allowed]
        outcome.written = tuple(changed)
        if changed and outcome.good:
            outcome.kind, outcome.cause = WRITE, "wrote " + ", ".join(changed[:3])
        return outcome
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _recording_tracebacks() -> Iterator[list[Any]]:
    """Remember the tracebacks anything formats during a probe: a catch-all handler that turns
    an unexpected exception into "internal error ..., exit 70" formats it first, and its
    traceback gives the last gridsim frame for the failure's cause."""
    seen: list[Any] = []
    original = traceback.extract_tb

    def recording(tb: Any, limit: int | None = None) -> traceback.StackSummary:
        seen.append(tb)
        return original(tb, limit)

    traceback.extract_tb = recording  # type: ignore[assignment]
    try:
        yield seen
    finally:
        traceback.extract_tb = original


_INTERNAL = re.compile(r"internal error: (\w+)(?::.*? at ([\w.]+:\d+)\.?$)?", re.S | re.M)


def _classify(command: str, result: Any, out_dir: Path, seen: Sequence[Any] = ()) -> Outcome:
    output = result.output
    code = result.exit_code
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        cause = f"{type(exc).__name__} at {_where(result.exc_info[2])}"
        return Outcome(command, TRACEBACK, code, output, cause)
    if "Traceback (most recent call last)" in output:
        return Outcome(command, TRACEBACK, code, output, "traceback printed")
    if code not in (0, 2):
        internal = _INTERNAL.search(output)
        if internal and seen:
            cause = f"{internal.group(1)} at {_where(seen[-1])} (exit {code})"
        elif internal:
            cause = f"{internal.group(1)} at {internal.group(2) or '?'} (exit {code})"
        else:
            cause = f"exit code {code}"
        return Outcome(command, TRACEBACK, code, output, cause)
    if code == 0:
        if command == "run":
            missing = [f for f in RUN_FILES if not (out_dir / f).is_file()]
            if missing:
                return Outcome(command, INCOMPLETE, code, output, f"run folder lacks {missing}")
            try:
                json.loads((out_dir / "summary.json").read_text("utf-8"))
            except ValueError as bad:
                return Outcome(command, INCOMPLETE, code, output, f"summary.json: {bad}")
        return Outcome(command, OK, code, output)
    if command == "run" and out_dir.exists():
        return Outcome(command, WRITE, code, output, "exit 2 but the run folder was written")
    if not has_location(output):
        return Outcome(command, NO_LOCATION, code, output, f"no location: {_gist(output)}")
    return Outcome(command, CLEAN, code, output)


# --- the tally -------------------------------------------------------------------------------

DEFAULT_LIMITS = {"validate": 10.0, "show": 10.0, "topology": 20.0, "run": 45.0}
RUN_ENV = {"GRIDSIM_MAX_WALL_S": "20"}
HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
    HealthCheck.function_scoped_fixture,
]


def collect(
    command: str,
    sources: Sequence[Source],
    probes: int,
    seed: int,
    time_limit_s: float,
    env: dict[str, str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    weights: Sequence[int] = WEIGHTS,
) -> list[Outcome]:
    """``probes`` random mutants (hypothesis generation only, seeded), each probed once."""
    outcomes: list[Outcome] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=probes,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=HEALTH,
    )
    @given(mutants(sources, weights=weights))
    def one(mutant: Mutant) -> None:
        outcome = probe(command, mutant, time_limit_s, env)
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)

    one()
    return outcomes


def minimise(outcome: Outcome, time_limit_s: float, env: dict[str, str] | None) -> Outcome:
    """Drop mutations one at a time while the failure cause stays the same."""
    assert outcome.mutant is not None
    best = outcome
    ops = list(outcome.mutant.ops)
    i = 0
    while len(ops) > 1 and i < len(ops):
        trial = [*ops[:i], *ops[i + 1 :]]
        again = probe(outcome.command, build(outcome.mutant.source, trial), time_limit_s, env)
        if again.kind == outcome.kind and again.cause == outcome.cause:
            ops, best = trial, again
        else:
            i += 1
    return best


def tally(
    commands: Sequence[str],
    probes: int,
    seed: int,
    run_probes: int | None = None,
    limits: dict[str, float] | None = None,
    minimise_reproducers: bool = True,
    stream: Any = sys.stdout,
) -> dict[str, Counter[str]]:
    limits = {**DEFAULT_LIMITS, **(limits or {})}
    all_sources, small = load_sources(), run_sources()
    counts: dict[str, Counter[str]] = {}
    failures: dict[tuple[str, str, str], list[Outcome]] = {}
    for command in commands:
        sources = small if command == "run" else all_sources
        env = RUN_ENV if command == "run" else None
        n = run_probes if (command == "run" and run_probes) else probes
        started = time.perf_counter()

        def progress(o: Outcome, command: str = command) -> None:
            if not o.good:
                print(f"  [{command}] {o.kind}: {o.cause}", file=sys.stderr, flush=True)

        weights = RUN_WEIGHTS if command == "run" else WEIGHTS
        outcomes = collect(command, sources, n, seed, limits[command], env, progress, weights)
        counts[command] = Counter(o.kind for o in outcomes)
        counts[command]["probes"] = len(outcomes)
        print(
            f"{command}: {len(outcomes)} probes in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        for o in outcomes:
            if not o.good:
                failures.setdefault((command, o.kind, o.cause), []).append(o)
    columns = ("probes", OK, CLEAN, TRACEBACK, HANG, WRITE, NO_LOCATION, INCOMPLETE)
    print(f"seed {seed}", file=stream)
    print(f"{'command':<10}" + "".join(f"{c:>13}" for c in columns), file=stream)
    for command, c in counts.items():
        print(f"{command:<10}" + "".join(f"{c[k]:>13}" for k in columns), file=stream)
    print(f"\n{len(failures)} distinct failure causes\n", file=stream)
    for (command, kind, cause), group in sorted(failures.items()):
        simplest = min(group, key=lambda o: (len(o.mutant.ops), len(o.mutant.data)))  # type: ignore[union-attr]
        if minimise_reproducers:
            simplest = minimise(simplest, limits[command], RUN_ENV if command == "run" else None)
        print(f"=== [{command}] {kind}: {cause}  ({len(group)} probes)", file=stream)
        print(simplest.report(), file=stream)
        print(file=stream)
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=200, help="probes per command")
    parser.add_argument(
        "--run-probes", type=int, default=None, help="probes for run (default --probes)"
    )
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--commands", default="validate,show,run")
    parser.add_argument("--no-minimise", action="store_true", help="skip reproducer minimisation")
    args = parser.parse_args(argv)
    tally(
        [c.strip() for c in args.commands.split(",") if c.strip()],
        args.probes,
        args.seed,
        run_probes=args.run_probes,
        minimise_reproducers=not args.no_minimise,
    )


if __name__ == "__main__":
    main()
