"""Fitting a demand class to an LLM serving trace (Azure CSV or Mooncake JSONL).

What is fitted, from a trace's arrival times and token lengths:

- **token lengths**: a lognormal per field (input, output) with the trace's *mean* (so the fitted
  class carries exactly the trace's token volume) and ``sigma`` = the standard deviation of
  log(tokens) (the maximum-likelihood shape). Quantiles of the fitted law are reported beside
  the trace's, and the empirical alternative (resampling the trace's own column) is offered;
- **arrival rate**: requests per second over the trace's span (first to last arrival, with one
  mean gap added, as a looped replay would repeat it: ``(n - 1) / span``);
- **burstiness**: the index of dispersion (variance / mean) of arrival counts in windows of
  ``window_s`` seconds; above ``BURSTY_THRESHOLD`` the class gets
  ``arrival: {process: bursty, dispersion: D}`` (gamma renewal gaps whose squared CV is D, the
  asymptotic index of dispersion of a renewal process), else Poisson. Counts in 1 s, 10 s and
  60 s windows and the squared CV of the gaps are reported as well: they differ when the rate
  drifts within the trace;
- **diurnal shape**: 24 hourly weights (mean 1) when the trace spans at least a day; shorter
  traces (the public Azure 2023 and Mooncake traces cover about an hour) cannot give one, and
  the fit says so. ``diurnal_from_rates`` does the same from a rate series (e.g. ServeGen's
  10-minute aggregate rates);
- **prefix-cache hit share** (``cache_hit_share``), for traces with block hashes (Mooncake's
  ``hash_ids``: one id per ``BLOCK_TOKENS``-token block of the prompt, equal ids = equal
  prefixes): requests are replayed in arrival order through one prefix cache of blocks; a
  request's hit tokens are its leading blocks already cached, stopping at the first block that
  is not (prefix semantics), capped at its input length; then all its blocks are cached. The
  share is hit tokens / input tokens over the trace, for an unbounded cache (an upper bound)
  and, given a capacity in blocks, for an LRU cache. Traces without hashes (Azure) cannot give
  one and the fit leaves the field out.

Pure functions over ``gridsim.demand.load_trace`` (and the trace's hash column); no randomness.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from gridsim.demand.traces import TraceFormat, load_trace

FloatArray = npt.NDArray[np.float64]
DAY_S = 86_400.0
HOUR_S = 3_600.0
DEFAULT_WINDOW_S = 10.0
BURSTY_THRESHOLD = 1.2
REPORTED_WINDOWS_S = (1.0, 10.0, 60.0)
QUANTILES = (0.5, 0.9, 0.99)
# Tokens per hash id in Mooncake traces: kvcache-ai/Mooncake's traces hash 512-token blocks
# (len(hash_ids) = ceil(input_length / 512) on every request of its two public traces
# [S:trace-mooncake-2025]; NVIDIA dynamo's Mooncake trace tools use the same default).
BLOCK_TOKENS = 512


@dataclass(frozen=True)
class LengthFit:
    """One token-length column: the trace's figures and the fitted lognormal's."""

    field: str  # "input" | "output"
    mean: float  # the trace's mean (the fitted lognormal keeps it)
    sigma: float  # standard deviation of log(tokens)
    mle_mean: float  # exp(mean(log x) + sigma^2 / 2): the lognormal MLE's own mean
    minimum: int
    maximum: int
    trace_quantiles: tuple[float, ...]  # at QUANTILES
    fitted_quantiles: tuple[float, ...]  # of the fitted lognormal, at QUANTILES

    def lognormal(self) -> dict[str, Any]:
        """The fitted law; a constant when every length is the same (no spread to fit)."""
        if self.sigma < 1e-9:
            return {"dist": "constant", "value": _round(self.mean, 5)}
        return {"dist": "lognormal", "mean": _round(self.mean, 5), "sigma": _round(self.sigma)}


@dataclass(frozen=True)
class CacheEstimate:
    """Prefix-cache hits of one replay of a trace (see ``prefix_cache_hits``)."""

    capacity_blocks: int | None  # None: unbounded
    hit_tokens: int
    input_tokens: int
    hit_requests: int  # requests with at least one leading block cached

    @property
    def share(self) -> float:
        """Hit tokens / input tokens (0 for a trace with no input tokens)."""
        return self.hit_tokens / self.input_tokens if self.input_tokens > 0 else 0.0


@dataclass(frozen=True)
class CacheFit:
    """The prefix-cache hit share of a trace with block hashes: unbounded and, optionally, LRU."""

    block_tokens: int
    distinct_blocks: int  # an LRU cache of this many blocks never evicts: it gives the upper bound
    unbounded: CacheEstimate
    lru: CacheEstimate | None = None

    @property
    def share(self) -> float:
        """The share the fitted class carries: the LRU cache's when one was given."""
        return (self.lru or self.unbounded).share


@dataclass(frozen=True)
class TraceFit:
    """Everything fitted from one trace; ``demand_class`` gives the scenario class."""

    path: str
    format: str
    requests: int
    span_s: float
    rate_per_s: float
    input: LengthFit
    output: LengthFit
    window_s: float
    dispersion: float  # index of dispersion of counts in window_s windows
    dispersion_by_window: dict[float, float]
    gap_cv2: float  # squared coefficient of variation of inter-arrival gaps
    diurnal: list[float] | None
    diurnal_note: str
    notes: list[str] = field(default_factory=list)
    cache: CacheFit | None = None  # None: the trace has no block hashes
    cache_note: str = ""

    @property
    def bursty(self) -> bool:
        return self.dispersion > BURSTY_THRESHOLD

    def arrival(self) -> dict[str, Any]:
        if self.bursty:
            return {"process": "bursty", "dispersion": _round(self.dispersion)}
        return {"process": "poisson"}

    def demand_class(self, name: str | None = None, empirical: bool = False) -> dict[str, Any]:
        """A ``demand.classes`` entry (plain dict, schema field names).

        ``rate_per_s`` is the trace's own rate: in a national scenario replace it with the
        class's ``share`` of national tokens. With ``empirical``, lengths resample the trace
        (its absolute path; scenario paths are relative to the scenario file).
        """
        cls: dict[str, Any] = {"name": name or default_name(self.path)}
        cls["rate_per_s"] = _round(self.rate_per_s)
        if empirical:
            cls["input_tokens"] = {"dist": "empirical", "trace": self.path, "field": "input"}
            cls["output_tokens"] = {"dist": "empirical", "trace": self.path, "field": "output"}
        else:
            cls["input_tokens"] = self.input.lognormal()
            cls["output_tokens"] = self.output.lognormal()
        if self.cache is not None:
            cls["cache_hit_share"] = _round(self.cache.share)
        cls["arrival"] = self.arrival()
        if self.diurnal is not None:
            cls["diurnal"] = [_round(w, 3) for w in self.diurnal]
        return cls


def fit(
    path: str | Path,
    format: TraceFormat = "auto",
    window_s: float = DEFAULT_WINDOW_S,
    cache_blocks: int | None = None,
) -> TraceFit:
    """Fit a trace file (see the module docstring for what and how). ``cache_blocks``: the
    capacity of the LRU prefix cache, in blocks (None: unbounded only)."""
    if not window_s > 0:
        raise ValueError(f"the dispersion window must be > 0 s, got {window_s:g}")
    if cache_blocks is not None and cache_blocks < 1:
        raise ValueError(f"the cache capacity must be at least 1 block, got {cache_blocks}")
    resolved = Path(path).resolve()
    data = load_trace(resolved, format)
    n = len(data)
    if n < 2:
        raise ValueError(f"trace file {resolved} has {n} request(s); at least 2 are needed")
    times = np.asarray(data.arrival_s, dtype=np.float64)
    span = float(times[-1] - times[0])
    if not span > 0:
        raise ValueError(f"trace file {resolved}: every request has the same timestamp")
    notes: list[str] = []
    clamped = int((data.input_tokens < 1).sum() + (data.output_tokens < 1).sum())
    if clamped:
        notes.append(f"{clamped} zero-token lengths counted as 1 token for the log fit")
    ties = int((np.diff(times) == 0).sum())
    step = _timestamp_step(times) if ties > n / 10 else 0.0
    if step > 0:
        notes.append(
            f"{ties} of {n - 1} gaps are zero: timestamps come in steps of {step:.3g} s, so "
            "counts in windows shorter than ~10 steps mostly show that quantisation"
        )
        if window_s < 10 * step:
            wider = float(math.ceil(10 * step))
            notes.append(f"dispersion window widened from {window_s:g} s to {wider:g} s")
            window_s = wider
    by_window = {w: index_of_dispersion(times, w) for w in REPORTED_WINDOWS_S}
    dispersion = by_window.get(window_s)
    if dispersion is None:
        dispersion = index_of_dispersion(times, window_s)
    if window_s * 10 > span:
        notes.append(
            f"the {window_s:g} s window leaves under 10 windows in the {span:g} s span: "
            "the dispersion is poorly estimated"
        )
    gaps = np.diff(times)
    gap_cv2 = float(gaps.var() / gaps.mean() ** 2)
    start_hour = _clock_start_hour(resolved, format) if span >= DAY_S else 0.0
    diurnal, diurnal_note = diurnal_profile(times, start_hour)
    cache, cache_note = fit_cache(resolved, format, cache_blocks)
    return TraceFit(
        path=str(resolved),
        format=_detected(resolved, format),
        requests=n,
        span_s=span,
        rate_per_s=(n - 1) / span,
        input=fit_lengths(data.input_tokens, "input"),
        output=fit_lengths(data.output_tokens, "output"),
        window_s=float(window_s),
        dispersion=dispersion,
        dispersion_by_window=by_window,
        gap_cv2=gap_cv2,
        diurnal=diurnal,
        diurnal_note=diurnal_note,
        notes=notes,
        cache=cache,
        cache_note=cache_note,
    )


def fit_trace(
    path: str | Path,
    format: TraceFormat = "auto",
    name: str | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    cache_blocks: int | None = None,
) -> dict[str, Any]:
    """The fitted ``demand.classes`` entry of a trace, as a plain dict (see ``TraceFit``)."""
    return fit(path, format, window_s, cache_blocks).demand_class(name)


def fit_lengths(values: npt.ArrayLike, field_name: str) -> LengthFit:
    """Lognormal with the sample mean and the standard deviation of log(x) (x >= 1)."""
    x = np.maximum(np.asarray(values, dtype=np.float64), 1.0)
    logs = np.log(x)
    sigma = float(logs.std())
    mean = float(x.mean())
    mu = math.log(mean) - sigma**2 / 2  # the parameterisation LengthSampler draws from
    from scipy import stats

    fitted = tuple(float(math.exp(mu + sigma * stats.norm.ppf(q))) for q in QUANTILES)
    return LengthFit(
        field=field_name,
        mean=mean,
        sigma=sigma,
        mle_mean=float(math.exp(logs.mean() + sigma**2 / 2)),
        minimum=int(x.min()),
        maximum=int(x.max()),
        trace_quantiles=tuple(float(v) for v in np.quantile(x, QUANTILES)),
        fitted_quantiles=fitted,
    )


def fit_cache(
    path: Path, format: TraceFormat = "auto", cache_blocks: int | None = None
) -> tuple[CacheFit | None, str]:
    """The prefix-cache hit share of a trace file and a note; None (and why) without hashes."""
    if _detected(path, format) != "mooncake":
        return None, "the trace has no block hashes (an Azure trace has none)"
    hashes, inputs = read_block_hashes(path)
    if not any(hashes):
        return None, "the trace has no block hashes (no request carries hash_ids)"
    unbounded = prefix_cache_hits(hashes, inputs)
    lru = None if cache_blocks is None else prefix_cache_hits(hashes, inputs, cache_blocks)
    distinct = len({b for blocks in hashes for b in blocks})
    missing = sum(1 for blocks, n in zip(hashes, inputs, strict=True) if n > 0 and not blocks)
    note = f"{missing} requests without hash_ids count as misses" if missing else ""
    return CacheFit(BLOCK_TOKENS, distinct, unbounded, lru), note


def read_block_hashes(path: str | Path) -> tuple[list[list[Hashable]], list[int]]:
    """A Mooncake JSONL trace's ``hash_ids`` (empty where absent) and ``input_length`` per
    request, in arrival order (a stable sort on ``timestamp``, as ``load_trace``)."""
    rows: list[tuple[float, list[Hashable], int]] = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            blocks = row.get("hash_ids") or []
            rows.append((float(row["timestamp"]), list(blocks), int(row["input_length"])))
    rows.sort(key=lambda r: r[0])  # stable: equal timestamps keep file order
    return [r[1] for r in rows], [r[2] for r in rows]


def prefix_cache_hits(
    hash_ids: Sequence[Sequence[Hashable]],
    input_tokens: Sequence[int],
    capacity_blocks: int | None = None,
    block_tokens: int = BLOCK_TOKENS,
) -> CacheEstimate:
    """Replay requests in the given (arrival) order through one prefix cache of blocks.

    A request's hit tokens are ``block_tokens`` x its leading blocks already in the cache,
    counted up to the first block that is not (a block equal to a cached one after a miss does
    not count), capped at its input length; then all its blocks are put in the cache. With
    ``capacity_blocks`` the cache is LRU: hits and insertions make a block the most recently
    used, and the least recently used blocks are evicted past the capacity. None: unbounded.
    """
    if capacity_blocks is not None and capacity_blocks < 1:
        raise ValueError(f"the cache capacity must be at least 1 block, got {capacity_blocks}")
    hit_tokens = hit_requests = total = 0
    lru: OrderedDict[Hashable, None] = OrderedDict()
    seen: set[Hashable] = set()
    cache: OrderedDict[Hashable, None] | set[Hashable] = seen if capacity_blocks is None else lru
    for blocks, n in zip(hash_ids, input_tokens, strict=True):
        total += n
        k = 0
        for block in blocks:
            if block not in cache:
                break
            k += 1
        if k:
            hit_tokens += min(k * block_tokens, n)
            hit_requests += 1
        if capacity_blocks is None:
            seen.update(blocks)
            continue
        for block in blocks:
            if block in lru:
                lru.move_to_end(block)
            else:
                lru[block] = None
                if len(lru) > capacity_blocks:
                    lru.popitem(last=False)
    return CacheEstimate(capacity_blocks, hit_tokens, total, hit_requests)


def index_of_dispersion(arrival_s: npt.ArrayLike, window_s: float) -> float:
    """Variance / mean of arrival counts in consecutive ``window_s`` windows (complete windows
    only, from the first arrival). 1 for a Poisson process; above 1 for bursty arrivals."""
    t = np.asarray(arrival_s, dtype=np.float64)
    t = t - t.min()
    n_windows = math.floor(float(t.max()) / window_s)
    if n_windows < 2:
        return math.nan
    counts = np.bincount((t // window_s).astype(np.int64), minlength=n_windows + 1)[:n_windows]
    mean = counts.mean()
    return float(counts.var() / mean) if mean > 0 else math.nan


def diurnal_profile(
    arrival_s: npt.ArrayLike, start_hour: float = 0.0
) -> tuple[list[float] | None, str]:
    """24 hourly weights (mean 1) of the arrival rate by hour of day, and a note.

    Only complete clock hours count, each hour of day averaged over the days it was seen;
    ``start_hour`` is the clock time (hours after midnight) of the first arrival. None when the
    trace spans less than a day.
    """
    t = np.asarray(arrival_s, dtype=np.float64)
    span = float(t.max() - t.min())
    if span < DAY_S:
        return None, (
            f"not estimable: the trace spans {span / HOUR_S:.2g} h; a diurnal shape needs at "
            "least one day (use diurnal_from_rates on a longer rate series, e.g. ServeGen's)"
        )
    clock = t - t.min() + start_hour * HOUR_S
    first = math.ceil(clock.min() / HOUR_S)
    last = math.floor(clock.max() / HOUR_S)  # hours [first, last) are complete
    hours = np.arange(first, last)
    counts = np.bincount((clock // HOUR_S).astype(np.int64), minlength=last + 1)[first:last]
    weights = _by_hour_of_day(hours, counts.astype(np.float64))
    days = (last - first) / 24
    return weights, f"estimated from {last - first} complete hours ({days:.1f} days)"


def diurnal_from_rates(
    window_start_s: npt.ArrayLike, rate: npt.ArrayLike, start_hour: float = 0.0
) -> list[float]:
    """24 hourly weights (mean 1) from a rate series (e.g. requests/s per 10-min window);
    ``start_hour`` is the clock time of ``window_start_s = 0``."""
    t = np.asarray(window_start_s, dtype=np.float64) + start_hour * HOUR_S
    hours = np.floor(t / HOUR_S).astype(np.int64)
    frame = pd.DataFrame({"hour": hours, "rate": np.asarray(rate, dtype=np.float64)})
    hourly = frame.groupby("hour")["rate"].mean()
    return _by_hour_of_day(hourly.index.to_numpy(), hourly.to_numpy())


def _by_hour_of_day(hours: npt.NDArray[np.int64], values: FloatArray) -> list[float]:
    sums = np.bincount(hours % 24, weights=values, minlength=24)
    seen = np.bincount(hours % 24, minlength=24)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_hour = np.where(seen > 0, sums / np.maximum(seen, 1), np.nan)
    if np.isnan(per_hour).any():
        raise ValueError("some hours of the day are never observed; need a full day")
    mean = per_hour.mean()
    if not mean > 0:
        raise ValueError("no arrivals to shape a diurnal profile")
    return [float(v) for v in per_hour / mean]


# --- presentation ----------------------------------------------------------------------------


def class_yaml(result: TraceFit, name: str | None = None, empirical: bool = False) -> str:
    """The fitted class as a YAML list item to paste under ``demand.classes``, preceded by
    comments with the fit's figures (trace against fitted), checked against the schema."""
    cls = result.demand_class(name, empirical)
    body = yaml.safe_dump([cls], sort_keys=False, default_flow_style=None, width=100)
    check_class(body, cls)
    return "\n".join(f"# {line}" if line else "#" for line in summary_lines(result)) + "\n" + body


def check_class(text: str, expected: dict[str, Any]) -> None:
    """``text`` (a YAML list of one class) validates as a DemandClass and gives ``expected``
    back: what is printed is what was fitted."""
    from gridsim.scenario.schema import DemandClass

    loaded = yaml.safe_load(text)
    if not (isinstance(loaded, list) and len(loaded) == 1 and loaded[0] == expected):
        raise ValueError("internal error: the class YAML does not read back as fitted")
    DemandClass.model_validate(loaded[0])


def summary_lines(result: TraceFit) -> list[str]:
    """Human-readable figures of a fit (used as the YAML's header comments)."""
    r = result
    q = "/".join(f"p{round(100 * x)}" for x in QUANTILES)
    lines = [
        f"gridsim fit-trace {r.path} (format {r.format})",
        f"requests {r.requests:,} over {r.span_s:,.0f} s: {r.rate_per_s:.4g} requests/s "
        "(rate_per_s is the trace's own; in a national scenario give share: instead)",
    ]
    for lf in (r.input, r.output):
        trace_q = "/".join(f"{v:,.0f}" for v in lf.trace_quantiles)
        fit_q = "/".join(f"{v:,.0f}" for v in lf.fitted_quantiles)
        lines.append(
            f"{lf.field} tokens: trace mean {lf.mean:,.1f}, sigma of log {lf.sigma:.3f}; "
            f"{q} trace {trace_q} vs lognormal {fit_q}; range {lf.minimum:,}-{lf.maximum:,}"
        )
        lines.append(
            f"  (lognormal MLE's own mean would be {lf.mle_mean:,.1f}; the fit keeps the trace "
            f"mean) empirical option: {{dist: empirical, trace: {r.path}, field: {lf.field}}}"
        )
    windows = ", ".join(f"{w:g} s: {_fmt(d)}" for w, d in sorted(r.dispersion_by_window.items()))
    kind = f"bursty (> {BURSTY_THRESHOLD:g})" if r.bursty else f"Poisson (<= {BURSTY_THRESHOLD:g})"
    lines.append(
        f"index of dispersion of counts: {windows}; gaps' squared CV {r.gap_cv2:.3g}; "
        f"class uses the {r.window_s:g} s window: {_fmt(r.dispersion)} -> {kind}"
    )
    lines.append(f"diurnal shape: {r.diurnal_note}")
    lines.extend(cache_lines(r))
    lines.extend(f"note: {n}" for n in r.notes)
    return lines


def cache_lines(result: TraceFit) -> list[str]:
    """The prefix-cache hit share and how it was estimated (or why it was not)."""
    c = result.cache
    if c is None:
        return [
            f"prefix-cache hit share: cannot be estimated: {result.cache_note}; "
            "cache_hit_share is left out (the schema's default, 0)"
        ]
    u = c.unbounded
    lines = [
        f"prefix-cache hit share (cache_hit_share): unbounded cache {u.share:.4f} (an upper "
        f"bound; {u.hit_tokens:,} of {u.input_tokens:,} input tokens, {u.hit_requests:,} "
        f"requests with a hit; {c.distinct_blocks:,} distinct blocks)"
    ]
    if c.lru is not None:
        blocks = c.lru.capacity_blocks or 0
        lines.append(
            f"  LRU cache of {blocks:,} blocks ({blocks * c.block_tokens:,} tokens): "
            f"{c.lru.share:.4f} ({c.lru.hit_tokens:,} tokens); the class carries this one"
        )
    else:
        lines.append("  the class carries the unbounded share (give --cache-blocks N for an LRU)")
    lines.append(
        f"  method: requests replayed in arrival order through one prefix cache of "
        f"{c.block_tokens}-token blocks keyed by hash_ids; a request's hit tokens are its "
        "leading blocks already cached, up to its first block not cached (prefix semantics), "
        "capped at its input length; then its blocks are cached (LRU evicts the least "
        "recently used past the capacity); share = hit tokens / input tokens over the trace. "
        "One cache for the whole trace: caches split over instances hit less"
    )
    if result.cache_note:
        lines.append(f"  note: {result.cache_note}")
    return lines


def default_name(path: str | Path) -> str:
    """A valid class id from a file name (letters, digits, _ . -; at most 64 characters)."""
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", Path(path).stem).strip("_.-") or "trace"
    if not stem[0].isalnum():
        stem = "t" + stem
    return stem[:64]


def _timestamp_step(times: FloatArray) -> float:
    """The typical step between distinct timestamps (their quantisation), in seconds."""
    distinct = np.unique(times)
    return float(np.median(np.diff(distinct))) if distinct.size > 2 else 0.0


def _clock_start_hour(path: Path, format: TraceFormat) -> float:
    """Clock time (hours after midnight, as recorded) of the first request of an Azure trace;
    0 for Mooncake traces, whose timestamps are relative."""
    if _detected(path, format) != "azure":
        return 0.0
    stamps = pd.to_datetime(pd.read_csv(path, usecols=["TIMESTAMP"])["TIMESTAMP"], format="ISO8601")
    first = stamps.min()
    return float(first.hour + first.minute / 60 + first.second / 3600)


def _detected(path: Path, format: TraceFormat) -> str:
    if format != "auto":
        return format
    from gridsim.scenario.tracefile import detect_format

    return detect_format(path)


def _round(x: float, digits: int = 4) -> float:
    """Four significant figures: enough for a scenario file, short to read."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits}g}")


def _fmt(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3g}"
