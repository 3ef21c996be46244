"""Scenario problems: each with where (file, line:column, dotted path), what, and how to fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A place in an input: a file with 1-based line and column, or a command-line argument."""

    source: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}" if self.line else self.source


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    mark: Mark | None = None

    @property
    def dotted(self) -> str:
        return dotted(self.path)

    def __str__(self) -> str:
        where = f"{self.mark}: " if self.mark else ""
        return f"{where}{self.dotted or '<top>'}: {self.message}"


class ScenarioError(ValueError):
    """Every problem found in a scenario, reported together."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in scenario"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


def dotted(path: Path) -> str:
    """``('nodes', 2, 'pools', 0, 'replicas')`` -> ``nodes[2].pools[0].replicas``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
