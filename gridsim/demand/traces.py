"""LLM serving traces: reading Azure CSV and Mooncake JSONL files, and replaying them in time.

A trace is held as three read-only arrays sorted by arrival (stable, so equal timestamps keep
file order): seconds since the first request, input tokens and output tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.scenario.schema import TraceArrivals

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
TraceFormat = Literal["auto", "azure", "mooncake"]

_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_MOONCAKE = ("timestamp", "input_length", "output_length")


@dataclass(frozen=True)
class TraceData:
    """One trace's columns as read-only arrays, sorted by arrival."""

    arrival_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def read_trace(path: str | Path, format: TraceFormat = "auto") -> pd.DataFrame:
    """A trace as a table: arrival_s (float, from the first request), input_tokens, output_tokens.

    ``azure``: CSV with TIMESTAMP (date-time), ContextTokens, GeneratedTokens. ``mooncake``: JSON
    lines with timestamp (ms), input_length, output_length. ``auto`` goes by the file suffix
    (``.csv`` or ``.jsonl``/``.json``), else by the first character. Files are cached by path.
    """
    data = load_trace(path, format)
    return pd.DataFrame(
        {
            "arrival_s": data.arrival_s.copy(),
            "input_tokens": data.input_tokens.copy(),
            "output_tokens": data.output_tokens.copy(),
        }
    )


def load_trace(path: str | Path, format: TraceFormat = "auto") -> TraceData:
    """The cached, read-only arrays behind ``read_trace``."""
    return _load(str(Path(path).resolve()), format)


@lru_cache(maxsize=32)
def _load(path: str, format: TraceFormat) -> TraceData:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"trace file {path} not found")
    fmt = _detect(file) if format == "auto" else format
    if fmt == "azure":
        frame = pd.read_csv(file)
        _require(frame, _AZURE, path)
        stamps = pd.to_datetime(frame["TIMESTAMP"], format="ISO8601")
        ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        # Integer nanoseconds first, so the differences are exact before the float conversion.
        offset_s = (ns - ns.min()).astype(np.float64) * 1e-9
        inputs, outputs = frame["ContextTokens"], frame["GeneratedTokens"]
    else:
        import pyarrow as pa
        import pyarrow.json as pa_json

        # Only the three columns we use: the prefix hashes are large and unused here.
        schema = pa.schema(
            [
                ("timestamp", pa.float64()),
                ("input_length", pa.int64()),
                ("output_length", pa.int64()),
            ]
        )
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        frame = pa_json.read_json(file, parse_options=options).to_pandas()
        _require(frame, _MOONCAKE, path)
        ms = frame["timestamp"].to_numpy(dtype=np.float64)
        offset_s = (ms - ms.min()) * 1e-3
        inputs, outputs = frame["input_length"], frame["output_length"]
    order = np.argsort(offset_s, kind="stable")
    data = TraceData(
        arrival_s=offset_s[order],
        input_tokens=inputs.to_numpy(dtype=np.int64)[order],
        output_tokens=outputs.to_numpy(dtype=np.int64)[order],
    )
    for array in (data.arrival_s, data.input_tokens, data.output_tokens):
        array.flags.writeable = False
    return data


def _detect(file: Path) -> Literal["azure", "mooncake"]:
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return "azure"
    if suffix in (".jsonl", ".json"):
        return "mooncake"
    with file.open("rb") as handle:
        head = handle.read(64).lstrip()
    return "mooncake" if head.startswith(b"{") else "azure"


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: str) -> None:
    # A JSON reader given a schema fills absent fields with nulls, so test for those too.
    missing = [c for c in columns if c not in frame.columns or frame[c].isna().any()]
    if len(frame) == 0:
        raise ValueError(f"trace file {path} has no requests")
    if missing:
        raise ValueError(
            f"trace file {path} lacks (or has blanks in) columns {missing}; "
            f"expected {list(columns)} (set arrival.format to azure or mooncake "
            "if auto-detection guessed wrong)"
        )


@dataclass(frozen=True)
class TraceReplay:
    """A trace's arrivals on the simulation clock: times x time_scale, optionally looped.

    One pass lasts ``pass_s = (span + mean gap) x time_scale``; looping repeats the trace with
    that period, so the gap from the last request of one pass to the first of the next is the
    trace's mean gap. Request ``j`` of pass ``k`` has global index ``k x n + j`` and time
    ``time_s[j] + k x pass_s``. Without looping there is only pass 0.
    """

    time_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    pass_s: float
    loop: bool

    @classmethod
    def from_spec(cls, spec: TraceArrivals) -> TraceReplay:
        data = load_trace(spec.path, spec.format)
        time_s = data.arrival_s * spec.time_scale
        n = len(data)
        span = float(time_s[-1])
        # A one-request (or all-simultaneous) trace has no mean gap: one scaled second a pass.
        pass_s = span * n / (n - 1) if n > 1 and span > 0 else spec.time_scale
        return cls(time_s, data.input_tokens, data.output_tokens, pass_s, spec.loop)

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second over one pass."""
        return len(self) / self.pass_s

    def __len__(self) -> int:
        return int(self.time_s.size)

    def window(self, t_start: float, t_end: float) -> tuple[IntArray, FloatArray]:
        """Global indices and times of the requests in ``[t_start, t_end)``, in order."""
        n = len(self)
        passes = range(1)
        if self.loop:
            # One pass either side as a guard against rounding in floor().
            first = max(0, math.floor(t_start / self.pass_s) - 1)
            passes = range(first, math.floor(t_end / self.pass_s) + 2)
        index: list[IntArray] = []
        times: list[FloatArray] = []
        for k in passes:
            shifted = self.time_s + k * self.pass_s if k else self.time_s
            j0, j1 = np.searchsorted(shifted, [t_start, t_end], side="left")
            if j1 > j0:
                index.append(np.arange(k * n + j0, k * n + j1, dtype=np.int64))
                times.append(shifted[j0:j1])
        if not index:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return np.concatenate(index), np.concatenate(times)

    @cached_property
    def _cum_tokens(self) -> tuple[FloatArray, FloatArray]:
        cum_in = np.concatenate([[0], np.cumsum(self.input_tokens)]).astype(np.float64)
        cum_out = np.concatenate([[0], np.cumsum(self.output_tokens)]).astype(np.float64)
        return cum_in, cum_out

    def cumulative(self, t_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Requests, input tokens and output tokens arriving in ``[0, t)``, for each t."""
        t = np.asarray(t_s, dtype=np.float64)
        cum_in, cum_out = self._cum_tokens
        passes = np.zeros(t.shape)
        within = t
        if self.loop:
            passes = np.floor(np.maximum(t, 0.0) / self.pass_s)
            within = t - passes * self.pass_s
        j = np.searchsorted(self.time_s, within, side="left")
        n = len(self)
        return (
            passes * n + j,
            passes * cum_in[-1] + cum_in[j],
            passes * cum_out[-1] + cum_out[j],
        )
