"""Shared fixtures: paths to the repository and to the public traces beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "data" / "traces"


@pytest.fixture
def traces_dir() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"public traces not found at {TRACES} (they live in ../shared/data/traces)")
    return TRACES


MINIMAL = """
name: tiny
horizon: {duration: 1h}
regions:
  - {id: r1, lat: 31.23, lon: 121.47}
nodes:
  - id: n1
    kind: data_centre
    lat: 26.57
    lon: 106.71
    pools: [{id: p, slots: 4}]
network: {generate: full_mesh}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: jobs, kind: job, rate_per_s: 1, service: {dist: exponential, mean: 1}}
"""


@pytest.fixture
def minimal_yaml() -> str:
    return MINIMAL
