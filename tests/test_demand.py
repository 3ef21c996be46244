"""Demand: growth laws, region weights, profiles, lengths, traces, arrival processes."""

from __future__ import annotations

import datetime as dt
import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from gridsim.catalog import builtin_catalog
from gridsim.demand import (
    MONTH_DAYS,
    Arrivals,
    DemandModel,
    LengthSampler,
    load_trace,
    national_tokens_per_day,
    profile_factor,
    read_trace,
    region_weights,
    stable_hash,
)
from gridsim.scenario import Scenario, load_scenario_text
from gridsim.scenario.schema import Constant, Empirical, Exponential, Lognormal

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"
AZURE = "azure2023_AzureLLMInferenceTrace_conv.csv"
MOONCAKE = "mooncake_conversation_trace.jsonl"
DAY = 86_400.0
MONTH = MONTH_DAYS * DAY
FIELDS = ("time_s", "class_idx", "region_idx", "input_tokens", "output_tokens", "service_s")


@pytest.fixture
def traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"public traces not found at {TRACES} (they live in ../shared/data/traces)")
    return TRACES


CHAT: dict[str, Any] = {
    "name": "chat",
    "share": 1.0,
    "input_tokens": {"dist": "lognormal", "mean": 1000, "sigma": 1.0},
    "output_tokens": {"dist": "lognormal", "mean": 300, "sigma": 0.8},
}
TWO_REGIONS = [{"id": "r1", "lat": 30.0, "lon": 110.0}, {"id": "r2", "lat": 31.0, "lon": 111.0}]


def jobs(rate_per_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": "jobs",
        "kind": "job",
        "rate_per_s": rate_per_s,
        "service": {"dist": "exponential", "mean": 1.0},
        **extra,
    }


def replay(path: Path, **arrival: Any) -> dict[str, Any]:
    return {
        "name": "replay",
        "input_tokens": {"dist": "constant", "value": 1},
        "output_tokens": {"dist": "constant", "value": 1},
        "arrival": {"process": "trace", "path": str(path), **arrival},
    }


def make(
    classes: list[dict[str, Any]],
    regions: Any = None,
    weights: str = "equal",
    tokens_per_day: float = 1e9,
    growth: dict[str, Any] | None = None,
    duration: str = "1d",
    start: str = "2026-03-01",
    sample_fraction: float = 1.0,
) -> Scenario:
    demand: dict[str, Any] = {
        "tokens_per_day": tokens_per_day,
        "region_weights": weights,
        "sample_fraction": sample_fraction,
        "classes": classes,
    }
    if growth is not None:
        demand["growth"] = growth
    pools = [
        {"id": "slots", "slots": 4},
        {"id": "llm", "model": "deepseek-v3", "accelerator": "h100", "replicas": 1},
    ]
    data = {
        "name": "t",
        "horizon": {"start": start, "duration": duration, "resolution": "5min"},
        "regions": TWO_REGIONS if regions is None else regions,
        "nodes": [{"id": "n", "kind": "data_centre", "lat": 30.0, "lon": 110.0, "pools": pools}],
        "network": {"generate": "full_mesh"},
        "demand": demand,
    }
    return load_scenario_text(yaml.safe_dump(data))


def same(a: Arrivals, b: Arrivals) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in FIELDS)


# --- growth ------------------------------------------------------------------------------


def test_no_growth_is_flat() -> None:
    d = make([CHAT], tokens_per_day=5e12).demand
    assert np.all(national_tokens_per_day(d, dt.date(2026, 3, 1), [0, MONTH, 12 * MONTH]) == 5e12)


def test_exponential_doubles_in_log2_over_log1p_months() -> None:
    d = make(
        [CHAT], tokens_per_day=1e12, growth={"law": "exponential", "rate_per_month": 0.1}
    ).demand
    start = dt.date(2026, 3, 1)
    doubling = math.log(2) / math.log(1.1) * MONTH
    level = national_tokens_per_day(d, start, [0.0, MONTH, doubling, 2 * doubling])
    np.testing.assert_allclose(level, [1e12, 1.1e12, 2e12, 4e12], rtol=1e-12)


def test_logistic_starts_at_d0_grows_like_exponential_and_approaches_ceiling() -> None:
    growth = {"law": "logistic", "rate_per_month": 0.2, "ceiling_tokens_per_day": 1e15}
    d = make([CHAT], tokens_per_day=1e12, growth=growth).demand
    start = dt.date(2026, 3, 1)
    level = national_tokens_per_day(d, start, np.array([0, 1, 12, 60, 120, 240]) * MONTH)
    assert level[0] == pytest.approx(1e12, rel=1e-12)
    assert level[1] == pytest.approx(1.2e12, rel=2e-3)  # far below K: about (1 + r) a month
    assert np.all(np.diff(level) > 0) and np.all(level <= 1e15)
    assert level[-1] == pytest.approx(1e15, rel=1e-9)


def test_piecewise_hits_its_points_log_linear_between_clamped_outside() -> None:
    points = [
        {"date": "2024-01", "tokens_per_day": 0.1e12},
        {"date": "2026-03", "tokens_per_day": 140e12},
    ]
    d = make([CHAT], growth={"law": "piecewise", "points": points}).demand
    start = dt.date(2025, 1, 1)
    t_first = (dt.date(2024, 1, 1) - start).days * DAY
    t_last = (dt.date(2026, 3, 1) - start).days * DAY
    t = [t_first, t_last, (t_first + t_last) / 2, t_first - 10 * DAY, t_last + 400 * DAY]
    level = national_tokens_per_day(d, start, t)
    geometric_mean = math.sqrt(0.1e12 * 140e12)
    np.testing.assert_allclose(level, [0.1e12, 140e12, geometric_mean, 0.1e12, 140e12], rtol=1e-12)


# --- region weights and profiles ---------------------------------------------------------


def test_weights_sum_to_one_and_follow_gdp_or_population() -> None:
    catalog = builtin_catalog()
    for how, field in (("gdp", "gdp_100m_cny"), ("population", "population_10k")):
        s = make([CHAT], regions="provinces", weights=how)
        w = region_weights(s, catalog)
        raw = np.array([getattr(catalog.sites[r.id], field) for r in s.regions])
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(w, raw / raw.sum(), rtol=1e-12)
    s = make([CHAT], regions="provinces", weights="gdp")
    w = region_weights(s, catalog)
    ids = [r.id for r in s.regions]
    assert w[ids.index("guangdong")] > w[ids.index("ningxia")]


def test_equal_and_given_weights_and_their_errors() -> None:
    catalog = builtin_catalog()
    np.testing.assert_allclose(region_weights(make([CHAT]), catalog), [0.5, 0.5])
    given = [{**TWO_REGIONS[0], "share": 3.0}, {**TWO_REGIONS[1], "share": 1.0}]
    np.testing.assert_allclose(region_weights(make([CHAT], given, "given"), catalog), [0.75, 0.25])
    with pytest.raises(ValueError, match=r"share on every region; missing on \['r2'\]"):
        region_weights(make([CHAT], [given[0], TWO_REGIONS[1]], "given"), catalog)
    with pytest.raises(ValueError, match="catalogue site"):
        region_weights(make([CHAT], weights="gdp"), catalog)  # lat/lon regions have no GDP


def test_profile_mean_is_one_over_a_week_and_follows_the_clock() -> None:
    diurnal = [1.0] * 8 + [3.0] * 12 + [1.0] * 4
    weekly = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    cls = make([{**CHAT, "diurnal": diurnal, "weekly": weekly}]).demand.classes[0]
    start = dt.date(2026, 3, 2)  # a Monday
    hours = np.arange(7 * 24) * 3600.0 + 1800.0
    factor = profile_factor(cls, start, hours)
    assert factor.mean() == pytest.approx(1.0, abs=1e-12)
    d_norm = np.mean(diurnal)
    w_norm = np.mean(weekly)
    assert factor[9] == pytest.approx(3.0 / d_norm / w_norm)  # Monday 09:00
    assert factor[5 * 24 + 2] == pytest.approx(1.0 / d_norm * 0.5 / w_norm)  # Saturday 02:00
    sunday_start = profile_factor(cls, dt.date(2026, 3, 1), [0.0])[0]  # 2026-03-01 is a Sunday
    assert sunday_start == pytest.approx(1.0 / d_norm * 0.5 / w_norm)


# --- lengths -----------------------------------------------------------------------------


def test_lognormal_sample_mean_within_two_percent() -> None:
    sampler = LengthSampler(Lognormal(dist="lognormal", mean=1000.0, sigma=1.0))
    x = sampler.sample(np.random.default_rng(7), 1_000_000)
    assert x.dtype == np.int64 and x.min() >= 1
    assert sampler.mean == 1000.0
    assert x.mean() == pytest.approx(1000.0, rel=0.02)
    assert np.log(x).std() == pytest.approx(1.0, rel=0.02)


def test_other_laws_tokens_and_seconds() -> None:
    rng = np.random.default_rng(3)
    service = LengthSampler(Exponential(dist="exponential", mean=2.5), tokens=False)
    s = service.sample(rng, 200_000)
    assert s.dtype == np.float64 and s.mean() == pytest.approx(2.5, rel=0.02)
    const = LengthSampler(Constant(dist="constant", value=0.3))
    assert const.mean == 1.0 and np.all(const.sample(rng, 5) == 1)  # whole tokens, at least 1


def test_empirical_lengths_resample_the_trace_column(traces: Path) -> None:
    path = str(traces / AZURE)
    sampler = LengthSampler(Empirical(dist="empirical", trace=path, field="output"))
    column = read_trace(path)["output_tokens"].to_numpy()
    assert sampler.mean == pytest.approx(column.mean())
    x = sampler.sample(np.random.default_rng(1), 100_000)
    assert np.isin(x, column).all()
    assert x.mean() == pytest.approx(column.mean(), rel=0.02)


# --- arrivals: rates and processes -------------------------------------------------------


def test_llm_rate_from_tokens_per_day_share_weight_and_growth() -> None:
    chat = {**CHAT, "share": 0.5}
    given = [{**TWO_REGIONS[0], "share": 3.0}, {**TWO_REGIONS[1], "share": 1.0}]
    growth = {"law": "exponential", "rate_per_month": 0.1}
    s = make([chat], given, "given", tokens_per_day=1.3e9, growth=growth, sample_fraction=0.5)
    model = DemandModel(s)
    assert model.mean_tokens_per_request("chat") == 1300.0
    expected = 1.3e9 * 0.5 * np.array([0.75, 0.25]) * 0.5 / 1300.0 / DAY
    np.testing.assert_allclose(model.base_rates[:, 0], expected, rtol=1e-12)
    first_hour = model.rates([0.0, 1800.0, 3599.0])[:, :, 0]  # growth at the hour's middle
    np.testing.assert_allclose(first_hour, [expected * 1.1 ** (1800 / MONTH)] * 3, rtol=1e-12)
    later = model.rates([MONTH])[0, :, 0] / expected  # hourly steps: growth at the hour's middle
    assert later == pytest.approx([1.1, 1.1], rel=1e-4)
    tokens_in, tokens_out = model.token_rates([0.0])
    total = (tokens_in + tokens_out)[0].sum()
    assert total == pytest.approx(1.3e9 * 0.5 * 0.5 / DAY * 1.1 ** (1800 / MONTH), rel=1e-12)


def test_poisson_count_over_a_long_window_within_three_sigma() -> None:
    model = DemandModel(make([CHAT], tokens_per_day=10.0 * DAY * 1300.0))
    arrivals = model.arrivals(11, 0.0, DAY)
    expected = model.mean_rates([0.0, DAY])[0].sum() * DAY
    assert expected == pytest.approx(10.0 * DAY)
    assert abs(len(arrivals) - expected) < 3 * math.sqrt(expected)
    assert np.all(np.diff(arrivals.time_s) >= 0)
    assert arrivals.time_s.min() >= 0 and arrivals.time_s.max() < DAY
    assert np.all(np.isnan(arrivals.service_s)) and arrivals.input_tokens.min() >= 1


def test_poisson_gaps_are_exponential_and_profile_shapes_hourly_counts() -> None:
    diurnal = [1.0] * 12 + [4.0] * 12
    model = DemandModel(make([jobs(5.0, diurnal=diurnal)], duration="7d"))
    a = model.arrivals(2, 0.0, 7 * DAY)
    hour = (a.time_s // 3600).astype(int) % 24
    counts = np.bincount(hour, minlength=24) / 7
    edges = np.arange(25) * 3600.0
    expected = model.mean_rates(edges).sum(axis=(1, 2)) * 3600.0
    np.testing.assert_allclose(expected, 5.0 * 3600 * np.array(diurnal) / 2.5)
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected / 7))
    gaps = np.diff(a.time_s[(hour >= 12) & (a.region_idx == 0)])
    gaps = gaps[gaps < 3000]  # drop the overnight jumps
    cv = gaps.std() / gaps.mean()
    assert cv == pytest.approx(1.0, abs=0.03)


def test_bursty_counts_have_the_target_index_of_dispersion() -> None:
    model = DemandModel(
        make([jobs(40.0, arrival={"process": "bursty", "dispersion": 4.0})], duration="1d")
    )
    a = model.arrivals(5, 0.0, DAY)
    window = 20.0  # 400 mean gaps a window per region
    counts = np.bincount((a.time_s[a.region_idx == 0] // window).astype(int))
    assert counts.mean() == pytest.approx(20.0 * window, rel=0.03)
    assert counts.var() / counts.mean() == pytest.approx(4.0, rel=0.12)
    poisson = DemandModel(make([jobs(40.0)])).arrivals(5, 0.0, DAY)
    counts = np.bincount((poisson.time_s[poisson.region_idx == 0] // window).astype(int))
    assert counts.var() / counts.mean() == pytest.approx(1.0, rel=0.12)


def test_job_classes_need_a_rate() -> None:
    bad = make([{**CHAT, "share": 0.5}, {**jobs(1.0), "rate_per_s": None, "share": 0.5}])
    with pytest.raises(ValueError, match="needs rate_per_s"):
        DemandModel(bad)


# --- determinism, independence, chunks ---------------------------------------------------

MIXED: list[dict[str, Any]] = [
    {**CHAT, "share": 0.6, "diurnal": [1.0] * 6 + [2.0] * 18},
    {
        **CHAT,
        "name": "agent",
        "share": 0.4,
        "arrival": {"process": "bursty", "dispersion": 3.0},
        "input_tokens": {"dist": "exponential", "mean": 4000},
    },
    jobs(0.2),
]


def test_same_seed_identical_other_seed_different() -> None:
    s = make(MIXED, tokens_per_day=2e8, growth={"law": "exponential", "rate_per_month": 0.3})
    a = DemandModel(s).arrivals(3, 0.0, 6 * 3600)
    b = DemandModel(s).arrivals(3, 0.0, 6 * 3600)
    c = DemandModel(s).arrivals(4, 0.0, 6 * 3600)
    assert len(a) > 1000 and same(a, b)
    assert not same(a, c)
    assert set(np.unique(a.class_idx)) == {0, 1, 2}
    job = a.class_idx == 2
    assert np.all(a.input_tokens[job] == 0) and np.all(a.service_s[job] > 0)


def test_adding_a_region_leaves_other_streams_unchanged() -> None:
    before = [{**TWO_REGIONS[0], "share": 0.5}, {**TWO_REGIONS[1], "share": 0.5}]
    after = [*before[:1], {**TWO_REGIONS[1], "share": 0.25}, {"id": "r3", "lat": 32, "lon": 112}]
    after[2]["share"] = 0.25
    a = DemandModel(make(MIXED, before, "given", 2e8)).arrivals(9, 0.0, 3 * 3600)
    b = DemandModel(make(MIXED, after, "given", 2e8)).arrivals(9, 0.0, 3 * 3600)
    assert same(a.take(a.region_idx == 0), b.take(b.region_idx == 0))
    assert not np.array_equal(a.time_s[a.region_idx == 1], b.time_s[b.region_idx == 1])
    assert stable_hash("r1") == zlib.crc32(b"r1")  # the same on every run and machine


@pytest.mark.parametrize("chunk_s", [300.0, 3600.0, 1234.5])
def test_chunks_give_exactly_the_one_shot_arrivals(chunk_s: float) -> None:
    s = make(MIXED, tokens_per_day=2e8, duration="12h")
    model = DemandModel(s)
    whole = model.arrivals(1, 0.0, 12 * 3600)
    chunked = Arrivals.concat(list(model.iter_arrivals(1, chunk_s)))
    assert len(whole) > 1000 and same(whole, chunked)
    # A cold start part-way (no cursor) replays the earlier draws: the same tail.
    tail = DemandModel(s).arrivals(1, 5 * 3600, 12 * 3600)
    assert same(tail, whole.take(whole.time_s >= 5 * 3600))


# --- traces ------------------------------------------------------------------------------


def test_read_azure_and_mooncake(traces: Path) -> None:
    azure = read_trace(traces / AZURE)
    raw = pd.read_csv(traces / AZURE)
    assert list(azure.columns) == ["arrival_s", "input_tokens", "output_tokens"]
    assert len(azure) == len(raw) == 19_366
    assert azure["arrival_s"].iloc[0] == 0.0 and azure["arrival_s"].is_monotonic_increasing
    assert azure["arrival_s"].iloc[-1] == pytest.approx(3501.721937, abs=1e-6)
    assert azure["input_tokens"].sum() == raw["ContextTokens"].sum()
    assert azure["output_tokens"].dtype == np.int64
    moon = read_trace(traces / MOONCAKE)
    rows = [json.loads(line) for line in (traces / MOONCAKE).read_text().splitlines()]
    assert len(moon) == len(rows) == 12_031
    assert moon["arrival_s"].iloc[-1] == pytest.approx(max(r["timestamp"] for r in rows) / 1000)
    assert moon["input_tokens"].sum() == sum(r["input_length"] for r in rows)
    assert moon["output_tokens"].sum() == sum(r["output_length"] for r in rows)
    assert load_trace(traces / MOONCAKE) is load_trace(str(traces / MOONCAKE))  # cached by path


def test_trace_replay_matches_the_file_exactly(traces: Path) -> None:
    model = DemandModel(make([replay(traces / AZURE)], duration="2h"))
    a = model.arrivals(0, 0.0, 2 * 3600)
    raw = pd.read_csv(traces / AZURE)
    assert len(a) == len(raw)
    assert a.input_tokens.sum() == raw["ContextTokens"].sum()
    assert a.output_tokens.sum() == raw["GeneratedTokens"].sum()
    np.testing.assert_array_equal(a.time_s, read_trace(traces / AZURE)["arrival_s"])
    share_r1 = np.mean(a.region_idx == 0)
    assert share_r1 == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / len(a)))
    rate = model.mean_rates([0.0, 3600.0, 7200.0]).sum(axis=1)[:, 0] * 3600
    assert rate.sum() == pytest.approx(len(raw))


def test_trace_loop_doubles_counts_over_two_spans_and_time_scale_stretches(
    traces: Path,
) -> None:
    path = traces / MOONCAKE
    n = len(read_trace(path))
    looped = DemandModel(make([replay(path, loop=True)], duration="3h"))
    pass_s = looped._replays[0].pass_s if looped._replays[0] else 0.0
    a = looped.arrivals(0, 0.0, 2 * pass_s)
    assert len(a) == 2 * n
    assert a.input_tokens.sum() == 2 * read_trace(path)["input_tokens"].sum()
    assert a.time_s[n] == pytest.approx(pass_s)
    chunked = Arrivals.concat(list(looped.iter_arrivals(0, 1000.0, t_end=2 * pass_s)))
    assert same(a, chunked)
    once = DemandModel(make([replay(path)], duration="3h")).arrivals(0, 0.0, 3 * 3600)
    assert len(once) == n
    slow = DemandModel(make([replay(path, time_scale=2.0)], duration="3h"))
    b = slow.arrivals(0, 0.0, 3 * 3600)
    np.testing.assert_allclose(b.time_s, 2 * read_trace(path)["arrival_s"].to_numpy())
    assert len(slow.arrivals(1, 0.0, 3600.0)) < n / 2 + 0.1 * n


def test_trace_sampled_by_fraction(traces: Path) -> None:
    model = DemandModel(make([replay(traces / AZURE)], sample_fraction=0.25))
    a = model.arrivals(0, 0.0, 3600.0 * 2)
    assert len(a) == pytest.approx(0.25 * 19_366, abs=4 * math.sqrt(19_366 * 0.25 * 0.75))
