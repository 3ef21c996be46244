"""What every ``gridsim`` command shares: the two consoles and ``guard``, which turns bad input
into one clear message and exit code 2. Public, so command modules (``sweep_cli``, ``fit_cli``)
use it without reaching into ``gridsim.cli``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from gridsim.scenario import ScenarioError

T = TypeVar("T")

# Wide tables stay readable in logs and pipes, where rich would otherwise assume 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn input problems into a clear message and exit code 2."""
    try:
        return fn()
    except ScenarioError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None
    except (ValueError, KeyError, OSError) as exc:
        err.print(f"error: {message(exc)}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def message(exc: BaseException) -> str:
    """An exception as one line: OS errors with their file, key errors without quotes."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)
