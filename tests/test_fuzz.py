"""Fuzzing the command line with mutants of the project's own scenarios (see fuzzing.py).

Every outcome is exit 0 with a valid run, or exit 2 with a location: never a traceback, a hang
past the time limit, or a write outside the run folder. Failures shrink to a small reproducer
(the mutations and a diff are in the assertion message). ``python tests/fuzzing.py`` tallies
many more probes.
"""

from __future__ import annotations

import fuzzing as fz
import pytest
from hypothesis import given, settings

SOURCES = fz.load_sources()  # every file in scenarios/ and scenarios/validation/
SMALL = fz.run_sources()  # mmc and cross_fidelity, shortened to 10 simulated minutes

# Deterministic in CI: derandomized generation, no example database.
FAST = settings(deadline=None, derandomize=True, database=None, suppress_health_check=fz.HEALTH)


@pytest.fixture
def run_limit(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Runs estimated above 20 s of wall time must be refused with exit 2."""
    monkeypatch.setenv("GRIDSIM_MAX_WALL_S", fz.RUN_ENV["GRIDSIM_MAX_WALL_S"])
    return dict(fz.RUN_ENV)


def _check(outcome: fz.Outcome) -> None:
    assert outcome.kind in fz.GOOD, outcome.report()


def test_sources_cover_every_project_scenario() -> None:
    names = {s.rel for s in SOURCES}
    assert "validation/mmc.yaml" in names and "baseline.yaml" in names
    assert len(names) == len(list(fz.SCENARIOS.glob("*.yaml"))) + len(
        list((fz.SCENARIOS / "validation").glob("*.yaml"))
    )


@settings(FAST, max_examples=100)
@given(fz.mutants(SOURCES))
def test_mutation_operators_build_a_file(mutant: fz.Mutant) -> None:
    """The harness itself: every operator combination yields file bytes (cheap, no probe)."""
    assert isinstance(mutant.data, bytes) and mutant.snippet()


def test_unmutated_scenarios_are_ok() -> None:
    """The harness itself: a probe of the original files is ok (else every mutant result is
    suspect)."""
    for source in SOURCES:
        _check(fz.probe("validate", fz.build(source, []), fz.DEFAULT_LIMITS["validate"]))


def test_unmutated_small_run_is_ok(run_limit: dict[str, str]) -> None:
    for source in SMALL:
        _check(fz.probe("run", fz.build(source, []), fz.DEFAULT_LIMITS["run"], run_limit))


@pytest.mark.parametrize("name", list(fz.HAZARDS))
def test_validate_hazard(name: str) -> None:
    """The hazards the issue names, each as one mutant: probed on every run, whatever
    hypothesis draws."""
    _check(fz.probe("validate", fz.hazard(name, SOURCES), fz.DEFAULT_LIMITS["validate"]))


@pytest.mark.parametrize("name", list(fz.HAZARDS))
def test_run_hazard(name: str, run_limit: dict[str, str]) -> None:
    _check(fz.probe("run", fz.hazard(name, SMALL), fz.DEFAULT_LIMITS["run"], run_limit))


@settings(FAST, max_examples=200)
@given(fz.mutants(SOURCES))
def test_validate_mutants(mutant: fz.Mutant) -> None:
    _check(fz.probe("validate", mutant, fz.DEFAULT_LIMITS["validate"]))


@settings(FAST, max_examples=25)
@given(mutant=fz.mutants(SMALL, max_ops=2, weights=fz.RUN_WEIGHTS))
def test_run_mutants(mutant: fz.Mutant, run_limit: dict[str, str]) -> None:
    _check(fz.probe("run", mutant, fz.DEFAULT_LIMITS["run"], run_limit))


@pytest.mark.slow
@settings(FAST, max_examples=250)  # ~70 s; 500 took 140 s of the 10-minute suite
@given(mutant=fz.mutants(SOURCES))
def test_validate_and_show_many_mutants(mutant: fz.Mutant) -> None:
    for command in ("validate", "show"):
        _check(fz.probe(command, mutant, fz.DEFAULT_LIMITS[command]))


@pytest.mark.slow
@settings(FAST, max_examples=100)
@given(mutant=fz.mutants(SMALL, weights=fz.RUN_WEIGHTS))
def test_run_many_mutants(mutant: fz.Mutant, run_limit: dict[str, str]) -> None:
    _check(fz.probe("run", mutant, fz.DEFAULT_LIMITS["run"], run_limit))
