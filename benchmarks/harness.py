"""Running each benchmark measurement in a process of its own, so peak memory is its own."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable


def report_child(measure: Callable[[], dict[str, float]]) -> None:
    """In the child: measure, add peak RSS, print one JSON line."""
    figures = measure()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def in_child(script: str, *args: str) -> dict[str, float]:
    """Run ``script`` with ``args`` in a fresh interpreter; return its JSON line."""
    out = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
