"""Combining scenario layers: deep merge, dotted ``--set`` paths, and where each value came from.

Precedence, lowest first (the one place it is written down; the README repeats it):

1. field defaults of the schema;
2. ``extends:`` files, the farthest ancestor first (a file's own keys beat what it extends);
3. the scenario file itself;
4. named ``overrides:`` chosen with ``--scenario A,B``, in the order given;
5. ``--set path=value`` arguments, in the order given.

Mappings merge key by key; any other value (lists included) replaces what was there, and so
does a mapping that changes its kind (``law``, ``dist`` or ``process``). A list item is
addressed by index (``nodes[2]``) or by its ``id``/``name`` (``nodes[guian]``).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from gridsim.scenario.errors import Mark, Path, dotted

_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)|(\.)")


class PathError(ValueError):
    """A dotted path that does not parse or does not lead anywhere."""


def parse_path(expr: str) -> list[str | int]:
    """``nodes[guian].pools[0].replicas`` -> ``['nodes', '[guian]', 'pools', 0, 'replicas']``.

    Bracketed non-numeric selectors stay as ``[name]`` strings until resolved against data.
    """
    parts: list[str | int] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise PathError(f"cannot parse path {expr!r} at character {pos + 1}")
        bracket, name, _dot = m.groups()
        if bracket is not None:
            sel = bracket.strip()
            if not sel:
                raise PathError(f"empty [] in path {expr!r}")
            parts.append(int(sel) if re.fullmatch(r"-?\d+", sel) else f"[{sel}]")
        elif name is not None:
            parts.append(name.strip())
        pos = m.end()
    if not parts:
        raise PathError("empty path")
    return parts


def resolve_path(data: Any, parts: list[str | int]) -> Path:
    """Turn ``[id]`` selectors into list indices by looking them up in ``data``."""
    out: list[str | int] = []
    node = data
    for part in parts:
        if isinstance(part, str) and part.startswith("["):
            sel = part[1:-1]
            if not isinstance(node, list):
                raise PathError(
                    f"{dotted(tuple(out)) or '<top>'} is not a list; cannot select {part}"
                )
            idx = next(
                (
                    i
                    for i, item in enumerate(node)
                    if isinstance(item, dict) and sel in (item.get("id"), item.get("name"))
                ),
                None,
            )
            if idx is None:
                ids = [
                    str(item.get("id", item.get("name"))) for item in node if isinstance(item, dict)
                ]
                raise PathError(f"no item {sel!r} in {dotted(tuple(out))}; items are {ids}")
            part = idx
        if isinstance(part, int):
            if not isinstance(node, list):
                raise PathError(f"{dotted(tuple(out)) or '<top>'} is not a list; cannot index it")
            if not -len(node) <= part < len(node):
                raise PathError(
                    f"index {part} is out of range for {dotted(tuple(out))} ({len(node)} items)"
                )
            part = part % len(node)
            node = node[part]
        else:
            node = node.get(part) if isinstance(node, dict) else None
        out.append(part)
    return tuple(out)


def set_path(data: dict[str, Any], path: Path, value: Any, merge: bool = False) -> None:
    """Set ``value`` at ``path`` (indices already resolved), creating mappings on the way."""
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = node[part] if isinstance(node, list) and isinstance(part, int) else node.get(part)
        if not isinstance(nxt, dict | list):
            if isinstance(part, int):
                raise PathError(f"{dotted(path[: i + 1])} is not a mapping")
            nxt = {}
            node[part] = nxt
        node = nxt
    last = path[-1]
    if isinstance(node, dict) and not isinstance(last, int):
        node[last] = deep_merge(node.get(last), value) if merge else copy.deepcopy(value)
    elif isinstance(node, list) and isinstance(last, int):
        node[last] = deep_merge(node[last], value) if merge else copy.deepcopy(value)
    else:
        raise PathError(f"cannot set {dotted(path)}: its parent is not a mapping or list")


# Keys that say which kind of thing a mapping is (a growth law, a distribution, an arrival
# process): when a layer changes one, the mapping is replaced, not merged with the old kind's keys.
TAGS = ("law", "dist", "process")


def deep_merge(base: Any, top: Any) -> Any:
    """``top`` over ``base``: mappings merge key by key (unless ``top`` changes their kind, see
    ``TAGS``), anything else is replaced."""
    if isinstance(base, dict) and isinstance(top, dict):
        if any(tag in top and tag in base and top[tag] != base[tag] for tag in TAGS):
            return copy.deepcopy(top)
        out = dict(base)
        for key, value in top.items():
            out[key] = deep_merge(base.get(key), value)
        return out
    return copy.deepcopy(top)


@dataclass
class Layer:
    """Where the values of one input layer stand, by their path in the merged scenario."""

    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)


@dataclass
class Locator:
    """Finds the line:column of a path: the longest known prefix, from the topmost layer."""

    layers: list[Layer] = field(default_factory=list)  # lowest precedence first

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)

    def find(self, path: Path, key: bool = False) -> Mark | None:
        for n in range(len(path), -1, -1):
            prefix = path[:n]
            for layer in reversed(self.layers):
                if key and prefix in layer.keys:
                    return layer.keys[prefix]
                if prefix in layer.values:
                    return layer.values[prefix]
        return None


def relocate(marks: dict[Path, Mark], src: Path, dst: Path) -> dict[Path, Mark]:
    """The marks under ``src`` as if they stood under ``dst``."""
    n = len(src)
    return {(*dst, *p[n:]): m for p, m in marks.items() if p[:n] == src}
