"""Trace files a scenario names: Azure CSV and Mooncake JSONL, read and checked.

A trace is held as three read-only arrays sorted by arrival (stable, so equal timestamps keep
file order): seconds since the first request, input tokens and output tokens. Reading lives in
the scenario layer because validation reads every file a scenario names, so that a missing,
malformed or nonsensical trace is reported by ``gridsim validate`` with its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

MAX_TRACE_BYTES = 4 * 2**30  # a trace is read whole into memory


class TraceFileError(ValueError):
    """A trace file that cannot be replayed: what is wrong, naming the file."""


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
    if not file.exists():
        raise FileNotFoundError(f"trace file {path} not found")
    if not file.is_file():
        raise TraceFileError(f"trace file {path} is not a regular file")
    if file.stat().st_size > MAX_TRACE_BYTES:
        raise TraceFileError(f"trace file {path} is over {MAX_TRACE_BYTES // 2**30} GiB")
    fmt = detect_format(file) if format == "auto" else format
    try:
        return _parse(file, fmt, path)
    except TraceFileError:
        raise
    except (ValueError, UnicodeError, OverflowError) as exc:  # pandas' and pyarrow's parsers
        raise TraceFileError(f"trace file {path} is not a valid {fmt} trace: {exc}") from None


def _parse(file: Path, fmt: str, path: str) -> TraceData:
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
    if not np.isfinite(data.arrival_s).all():
        raise TraceFileError(f"trace file {path} has timestamps that are not finite numbers")
    for name, column in (("input", data.input_tokens), ("output", data.output_tokens)):
        if (column < 0).any():
            row = int(order[np.flatnonzero(column < 0)[0]])
            raise TraceFileError(
                f"trace file {path} has a negative {name} token count (data row {row + 1})"
            )
    for array in (data.arrival_s, data.input_tokens, data.output_tokens):
        array.flags.writeable = False
    return data


def detect_format(file: Path) -> Literal["azure", "mooncake"]:
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
        raise TraceFileError(f"trace file {path} has no requests")
    if missing:
        raise TraceFileError(
            f"trace file {path} lacks (or has blanks in) columns {missing}; "
            f"expected {list(columns)} (set arrival.format to azure or mooncake "
            "if auto-detection guessed wrong)"
        )
