"""``gridsim fit-trace`` and ``gridsim.fit``: a demand class fitted to a serving trace."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.demand import LengthSampler
from gridsim.fit import (
    BLOCK_TOKENS,
    BURSTY_THRESHOLD,
    QUANTILES,
    class_yaml,
    default_name,
    diurnal_from_rates,
    diurnal_profile,
    fit,
    fit_cache,
    fit_lengths,
    fit_trace,
    index_of_dispersion,
    prefix_cache_hits,
    read_block_hashes,
)
from gridsim.scenario.schema import DemandClass, Lognormal

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"
AZURE_CONV = TRACES / "azure2023_AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake_conversation_trace.jsonl"
needs_traces = pytest.mark.skipif(
    not AZURE_CONV.is_file() or not MOONCAKE_CONV.is_file(),
    reason=f"public traces not found at {TRACES} (they live in ../shared/data/traces)",
)

ONE_CLASS_SCENARIO = """
name: fitted
horizon: {{duration: 10min}}
regions: [{{id: here, lat: 30.0, lon: 110.0}}]
nodes:
  - id: solo
    kind: intelligent_computing
    lat: 31.0
    lon: 112.0
    pools: [{{id: llm, model: deepseek-v3, accelerator: h20, replicas: 2}}]
network: {{generate: full_mesh}}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
{classes}
"""


@needs_traces
def test_azure_conversation_fit_matches_the_trace() -> None:
    raw = pd.read_csv(AZURE_CONV)
    stamps = pd.to_datetime(raw["TIMESTAMP"], format="ISO8601")
    span_s = (stamps.max() - stamps.min()).total_seconds()
    cls = fit_trace(AZURE_CONV, name="chat")
    assert cls["name"] == "chat"
    assert cls["input_tokens"]["dist"] == cls["output_tokens"]["dist"] == "lognormal"
    assert cls["input_tokens"]["mean"] == pytest.approx(raw["ContextTokens"].mean(), rel=0.02)
    assert cls["output_tokens"]["mean"] == pytest.approx(raw["GeneratedTokens"].mean(), rel=0.02)
    assert cls["rate_per_s"] == pytest.approx(len(raw) / span_s, rel=0.01)
    sigma_in = np.log(raw["ContextTokens"].clip(lower=1)).std()
    assert cls["input_tokens"]["sigma"] == pytest.approx(sigma_in, rel=0.01)
    # conversation traffic is over-dispersed at 10 s (SOURCES.md: ~5.5 req/s with bursts)
    assert cls["arrival"]["process"] == "bursty"
    assert cls["arrival"]["dispersion"] > BURSTY_THRESHOLD
    assert "diurnal" not in cls  # an hour of trace gives no daily shape
    DemandClass.model_validate(cls)


@needs_traces
def test_fit_reports_the_trace_and_the_fitted_law() -> None:
    result = fit(AZURE_CONV)
    assert result.format == "azure" and result.requests == 19_366
    assert result.diurnal is None and "not estimable" in result.diurnal_note
    assert set(result.dispersion_by_window) == {1.0, 10.0, 60.0}
    assert result.dispersion == result.dispersion_by_window[10.0]
    # What is estimated, recomputed here from the raw column: the lognormal with the trace's
    # mean m and s = the standard deviation of log(tokens), whose quantiles are
    # m exp(-s^2 / 2 + s z_q) (scipy's lognorm), beside the trace's own quantiles.
    raw = pd.read_csv(AZURE_CONV)["ContextTokens"].clip(lower=1).to_numpy(dtype=float)
    m, s = raw.mean(), np.log(raw).std()
    assert result.input.mean == pytest.approx(m, rel=1e-12)
    assert result.input.mean == pytest.approx(1154.7, abs=0.1)
    assert result.input.sigma == pytest.approx(s, rel=1e-12)
    law = stats.lognorm(s=s, scale=m * math.exp(-(s**2) / 2))
    assert result.input.fitted_quantiles == pytest.approx(law.ppf(QUANTILES).tolist(), rel=1e-9)
    assert result.input.trace_quantiles == pytest.approx(
        np.quantile(raw, QUANTILES).tolist(), rel=1e-12
    )
    # The trace is not lognormal: keeping its mean puts the fitted median at 711 tokens against
    # the trace's 1020, a gap of 30 %, where a median's sampling error on 19,366 requests is
    # about 1 % (s sqrt(pi / 2) / sqrt(n) for a lognormal). No tolerance can call that "near":
    # it is why the empirical option is printed beside the fit.
    se = s * math.sqrt(math.pi / 2) / math.sqrt(raw.size)
    gap = 1 - result.input.fitted_quantiles[0] / result.input.trace_quantiles[0]
    assert gap == pytest.approx(0.303, abs=0.001) and gap > 20 * se
    text = class_yaml(result, "chat")
    assert "not estimable" in text and "empirical option" in text and "p50/p90/p99" in text
    empirical = result.demand_class("chat", empirical=True)
    spec = dict(empirical["input_tokens"])
    assert Path(spec.pop("trace")).resolve() == AZURE_CONV.resolve()  # links resolved alike
    assert spec == {"dist": "empirical", "field": "input"}


@needs_traces
def test_the_printed_yaml_round_trips_through_the_schema_and_runs() -> None:
    result = fit(AZURE_CONV)
    text = class_yaml(result, "chat")
    loaded = yaml.safe_load(text)  # comments drop out
    assert loaded == [result.demand_class("chat")]
    DemandClass.model_validate(loaded[0])
    body = "\n".join("    " + line for line in text.splitlines())
    scenario = gs.load_scenario_text(ONE_CLASS_SCENARIO.format(classes=body))
    cls = scenario.demand.classes[0]
    assert isinstance(cls.input_tokens, Lognormal)
    assert cls.input_tokens.mean == pytest.approx(result.input.mean, rel=1e-4)
    run = gs.run(scenario, fidelity="flow")
    assert run.summary["requests"]["arrived"] == pytest.approx(result.rate_per_s * 600, rel=1e-3)


@needs_traces
def test_mooncake_timestamps_in_steps_widen_the_dispersion_window() -> None:
    result = fit(MOONCAKE_CONV)  # format by suffix
    assert result.format == "mooncake"
    assert result.window_s == 30.0  # timestamps come in 3 s steps
    assert any("steps of 3" in note for note in result.notes)
    assert result.input.mean == pytest.approx(12_035.1, rel=1e-4)
    assert result.output.mean == pytest.approx(342.6, rel=1e-3)


@needs_traces
def test_cli_prints_a_class_to_paste() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["fit-trace", str(AZURE_CONV), "--name", "chat", "--window", "1s"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("# gridsim fit-trace")
    [cls] = yaml.safe_load(out.output)
    assert cls["name"] == "chat"
    assert cls["arrival"] == fit(AZURE_CONV, window_s=1.0).arrival()
    DemandClass.model_validate(cls)
    out = runner.invoke(app, ["fit-trace", str(MOONCAKE_CONV), "--format", "mooncake"])
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.output)[0]["name"] == "mooncake_conversation_trace"


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["fit-trace", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "not found" in missing.output
    assert "Traceback" not in missing.output
    trace = tmp_path / "t.csv"
    _write_azure(trace, np.arange(0.0, 100.0, 0.5))
    bad_format = runner.invoke(app, ["fit-trace", str(trace), "--format", "parquet"])
    assert bad_format.exit_code == 2 and "unknown format" in bad_format.output
    wrong_reader = runner.invoke(app, ["fit-trace", str(trace), "--format", "mooncake"])
    assert wrong_reader.exit_code == 2 and "cannot fit" in wrong_reader.output
    bad_name = runner.invoke(app, ["fit-trace", str(trace), "--name", "my class"])
    assert bad_name.exit_code == 2 and "my_class" in bad_name.output
    bad_window = runner.invoke(app, ["fit-trace", str(trace), "--window", "5m"])
    assert bad_window.exit_code == 2 and "ambiguous" in bad_window.output


# --- the pieces, on synthetic data --------------------------------------------------------------


def test_lognormal_fit_recovers_mean_and_sigma() -> None:
    """On lognormal draws the fit recovers the law to within four standard errors of its
    estimates on n = 200,000 (sigma 0.9): the mean, sqrt(exp(sigma^2) - 1) / sqrt(n) = 0.24 %
    relative; sigma, sigma / sqrt(2 n) = 0.16 %; the fitted median exp(log(mean) - s^2 / 2),
    sqrt((exp(sigma^2) - 1) + sigma^4 / 2) / sqrt(n) = 0.28 % (delta method); the sample
    median, sigma sqrt(pi / 2) / sqrt(n) = 0.25 %."""
    mean, sigma, n = 800.0, 0.9, 200_000
    sampler = LengthSampler(Lognormal(dist="lognormal", mean=mean, sigma=sigma))
    draws = sampler.sample(np.random.default_rng(3), n)
    fitted = fit_lengths(draws, "input")
    median = mean * math.exp(-(sigma**2) / 2)  # the law's own median
    cv2 = math.expm1(sigma**2)
    assert fitted.mean == pytest.approx(mean, rel=4 * math.sqrt(cv2 / n))
    assert fitted.sigma == pytest.approx(sigma, rel=4 / math.sqrt(2 * n))
    fitted_se = math.sqrt(cv2 + sigma**4 / 2) / math.sqrt(n)
    assert fitted.fitted_quantiles[0] == pytest.approx(median, rel=4 * fitted_se)
    sample_se = sigma * math.sqrt(math.pi / 2) / math.sqrt(n)
    assert fitted.trace_quantiles[0] == pytest.approx(median, rel=4 * sample_se)


def test_index_of_dispersion_tells_poisson_regular_and_clumped_apart() -> None:
    rng = np.random.default_rng(7)
    poisson = np.cumsum(rng.exponential(0.2, 100_000))
    assert index_of_dispersion(poisson, 10.0) == pytest.approx(1.0, abs=0.1)
    regular = np.arange(0.0, 10_000.0, 0.2)
    assert index_of_dispersion(regular, 10.0) < 0.01
    clumped = np.repeat(np.cumsum(rng.exponential(2.0, 10_000)), 10)  # Poisson clumps of ten
    assert index_of_dispersion(clumped, 10.0) == pytest.approx(10.0, rel=0.15)
    assert math.isnan(index_of_dispersion(np.array([0.0, 1.0]), 10.0))  # under two windows


def test_diurnal_shape_needs_a_day_and_is_recovered_from_two() -> None:
    shape, note = diurnal_profile(np.arange(0.0, 3600.0, 1.0))
    assert shape is None and "not estimable" in note
    hourly = np.array([2 + (h % 12) for h in range(24)], dtype=float)  # arrivals per hour
    times = [h * 3600 + (np.arange(n) + 0.5) * 3600 / n for h, n in enumerate(np.tile(hourly, 2))]
    arrivals = np.concatenate(times)
    first_h = arrivals[0] / 3600  # the clock time of the first arrival
    shape, note = diurnal_profile(arrivals - arrivals[0], start_hour=first_h)
    assert shape is not None and "complete hours" in note
    np.testing.assert_allclose(shape, hourly / hourly.mean(), rtol=1e-9)
    # the clock time of the first arrival shifts the hours
    shifted, _ = diurnal_profile(arrivals - arrivals[0], start_hour=first_h + 6.0)
    assert shifted is not None
    np.testing.assert_allclose(np.roll(shifted, -6), shape, rtol=1e-9)
    starts = np.arange(0.0, 2 * 86400.0, 600.0)
    rates = np.repeat(np.tile(hourly, 2), 6)
    np.testing.assert_allclose(diurnal_from_rates(starts, rates), shape, rtol=1e-9)


def test_a_day_long_azure_trace_gets_a_diurnal_class(tmp_path: Path) -> None:
    hourly = np.array([1.0] * 8 + [3.0] * 16)
    times = [h * 3600 + np.arange(int(n * 60)) * 60 / n for h, n in enumerate(np.tile(hourly, 2))]
    trace = tmp_path / "two_days.csv"
    _write_azure(trace, np.concatenate(times))
    cls = fit_trace(trace, name="day")
    assert len(cls["diurnal"]) == 24
    np.testing.assert_allclose(cls["diurnal"], hourly / hourly.mean(), rtol=5e-3)
    assert cls["input_tokens"] == {"dist": "constant", "value": 100.0}  # no spread to fit
    DemandClass.model_validate(cls)


def test_default_names_are_valid_ids() -> None:
    assert default_name("/x/azure2023_AzureLLMInferenceTrace_conv.csv") == (
        "azure2023_AzureLLMInferenceTrace_conv"
    )
    assert default_name("my trace (1).jsonl") == "my_trace_1"
    assert default_name("___.csv") == "trace"
    assert len(default_name("a" * 100 + ".csv")) == 64


# --- prefix-cache hit share ----------------------------------------------------------------------

# Four requests (512-token blocks), written out of arrival order: the replay sorts by timestamp.
#   A  t=0 s  1200 tokens  [1, 2, 3]  nothing cached yet                      hit 0
#   B  t=1 s  1100 tokens  [1, 2, 4]  blocks 1, 2 cached, 4 not               hit 2 x 512 = 1024
#   C  t=2 s  1000 tokens  [5, 2]     5 not cached: the prefix stops there;
#                                     block 2 is cached but comes after a miss  hit 0
#   D  t=3 s  1300 tokens  [1, 2, 3]  all three cached: 1536, capped at 1300  hit 1300
# Unbounded: (0 + 1024 + 0 + 1300) / (1200 + 1100 + 1000 + 1300) = 2324 / 4600.
# LRU of 3 blocks (oldest first): after A [1 2 3]; B hits 1, 2 (1024), adds 4, evicts 3:
# [1 2 4]; C misses 5, adds it, evicts 1: [2 4 5], then 2 is touched: [4 5 2]; D misses at
# block 1 (evicted): hit 0. LRU share = 1024 / 4600.
HAND_TRACE = [
    {"timestamp": 0, "input_length": 1200, "output_length": 10, "hash_ids": [1, 2, 3]},
    {"timestamp": 2000, "input_length": 1000, "output_length": 10, "hash_ids": [5, 2]},
    {"timestamp": 1000, "input_length": 1100, "output_length": 10, "hash_ids": [1, 2, 4]},
    {"timestamp": 3000, "input_length": 1300, "output_length": 10, "hash_ids": [1, 2, 3]},
]
HAND_UNBOUNDED = 2324 / 4600
HAND_LRU3 = 1024 / 4600


def _write_mooncake(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cache_hit_share_by_hand(tmp_path: Path) -> None:
    assert BLOCK_TOKENS == 512
    trace = _write_mooncake(tmp_path / "hand.jsonl", HAND_TRACE)
    hashes, inputs = read_block_hashes(trace)
    assert inputs == [1200, 1100, 1000, 1300]  # arrival order, not file order
    unbounded = prefix_cache_hits(hashes, inputs)
    assert (unbounded.hit_tokens, unbounded.input_tokens) == (2324, 4600)
    assert unbounded.hit_requests == 2
    assert unbounded.share == pytest.approx(HAND_UNBOUNDED, rel=1e-12)
    lru = prefix_cache_hits(hashes, inputs, capacity_blocks=3)
    assert (lru.hit_tokens, lru.capacity_blocks) == (1024, 3)
    assert lru.share == pytest.approx(HAND_LRU3, rel=1e-12)
    # five blocks hold every block of the trace: no eviction, the unbounded answer
    assert prefix_cache_hits(hashes, inputs, capacity_blocks=5).hit_tokens == 2324
    result = fit(trace, cache_blocks=3)
    assert result.cache is not None and result.cache.distinct_blocks == 5
    assert result.cache.unbounded.share == pytest.approx(HAND_UNBOUNDED, rel=1e-12)
    assert result.demand_class()["cache_hit_share"] == round(HAND_LRU3, 4)  # 0.2226
    assert fit(trace).demand_class()["cache_hit_share"] == round(HAND_UNBOUNDED, 4)  # 0.5052
    text = class_yaml(result)  # validated against the schema on the way
    assert "upper bound" in text and "LRU cache of 3 blocks" in text and "method:" in text
    assert "up to its first block not cached (prefix semantics)" in text


def test_cache_hits_follow_prefix_semantics() -> None:
    # the second request's block 2 was seen, but after its first block missed: no hit
    assert prefix_cache_hits([[1, 2], [9, 2]], [1024, 1024]).hit_tokens == 0
    # a shared first block counts; the same block later, after a miss, does not
    assert prefix_cache_hits([[1, 2, 3], [1, 7, 3]], [1536, 1536]).hit_tokens == 512
    # hit tokens are capped at the request's input length (the last block is partial)
    assert prefix_cache_hits([[1, 2], [1, 2]], [1000, 600]).hit_tokens == 600
    with pytest.raises(ValueError, match="at least 1 block"):
        prefix_cache_hits([[1]], [10], capacity_blocks=0)


def test_lru_keeps_the_blocks_used_last() -> None:
    """Three blocks of room. [1 2], then [1 3] hits block 1 and makes it the most recently
    used: [2 1 3]; [4] evicts 2, the least recently used: [1 3 4]; so [1] hits. First in,
    first out would have evicted 1 instead and the last request would miss."""
    hashes, inputs = [[1, 2], [1, 3], [4], [1]], [1024, 1024, 512, 512]
    assert prefix_cache_hits(hashes, inputs, capacity_blocks=3).hit_tokens == 512 + 512
    assert prefix_cache_hits(hashes, inputs, capacity_blocks=2).hit_tokens == 512  # [3 4] left


def test_cli_cache_blocks_and_traces_without_hashes(tmp_path: Path) -> None:
    runner = CliRunner()
    trace = _write_mooncake(tmp_path / "hand.jsonl", HAND_TRACE)
    out = runner.invoke(app, ["fit-trace", str(trace), "--cache-blocks", "3"])
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(out.output)[0]["cache_hit_share"] == round(HAND_LRU3, 4)
    bad = runner.invoke(app, ["fit-trace", str(trace), "--cache-blocks", "0"])
    assert bad.exit_code == 2
    # a Mooncake trace without hash_ids, and an Azure trace: no share, and the output says so
    bare = [{k: v for k, v in r.items() if k != "hash_ids"} for r in HAND_TRACE]
    no_hashes = _write_mooncake(tmp_path / "bare.jsonl", bare)
    azure = tmp_path / "t.csv"
    _write_azure(azure, np.arange(0.0, 100.0, 0.5))
    for path in (no_hashes, azure):
        result = fit(path)
        assert result.cache is None
        assert "cache_hit_share" not in result.demand_class()
        out = runner.invoke(app, ["fit-trace", str(path)])
        assert out.exit_code == 0, out.output
        assert "hit share: cannot be estimated" in out.output
        assert "cache_hit_share" not in yaml.safe_load(out.output)[0]


@needs_traces
def test_mooncake_conversation_cache_hit_share() -> None:
    """Kimi's conversation trace: one shared cache would hit 37 % of input tokens at most
    (54.1 M of 144.8 M); an LRU cache hits less the smaller it is, and one that holds all the
    trace's distinct blocks gives the unbounded figure."""
    result = fit(MOONCAKE_CONV, cache_blocks=10_000)
    cache = result.cache
    assert cache is not None and cache.lru is not None
    assert 0 < cache.unbounded.share < 1
    assert cache.unbounded.share == pytest.approx(0.3736, abs=5e-5)
    assert cache.unbounded.input_tokens == pytest.approx(12_035.1 * 12_031, rel=1e-5)
    assert 0 < cache.lru.share < cache.unbounded.share
    assert result.demand_class()["cache_hit_share"] == round(cache.lru.share, 4)
    hashes, inputs = read_block_hashes(MOONCAKE_CONV)
    shares = [prefix_cache_hits(hashes, inputs, c).share for c in (1_000, 20_000, 100_000)]
    assert shares == sorted(shares)
    full = prefix_cache_hits(hashes, inputs, cache.distinct_blocks)
    assert full.hit_tokens == cache.unbounded.hit_tokens


def _write_azure(path: Path, offsets_s: np.ndarray) -> None:
    start = pd.Timestamp("2023-11-16 00:00:00")
    n = len(offsets_s)
    pd.DataFrame(
        {
            "TIMESTAMP": (start + pd.to_timedelta(offsets_s, unit="s")).strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            ),
            "ContextTokens": np.full(n, 100),
            "GeneratedTokens": np.full(n, 20),
        }
    ).to_csv(path, index=False)


@needs_traces
def test_the_baseline_agent_cache_hit_share_is_the_trace_fit() -> None:
    """scenarios/baseline.yaml's agent class quotes fit-trace on Kimi's conversation trace
    (unbounded cache): the number in the file is the fit's, to the three decimals written."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "scenarios" / "baseline.yaml").read_text("utf-8"))
    agent = next(c for c in data["demand"]["classes"] if c["name"] == "agent")
    cache, _ = fit_cache(MOONCAKE_CONV)
    assert cache is not None
    assert agent["cache_hit_share"] == round(cache.unbounded.share, 3)
