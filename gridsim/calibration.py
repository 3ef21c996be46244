"""Calibration of the serving model against published production and benchmark figures.

``gridsim/catalog/data/calibration.csv`` holds one row per published figure (source, model,
accelerator, deployment, workload, the figure converted per card) and a ``split`` column:
``fit`` rows set the efficiency factors, ``holdout`` rows only check them. The split was fixed
before fitting: per source, the row closest to the source's headline configuration is ``fit``;
its other configurations (prompt lengths, batch sizes, TPOT targets, MTP depths) are held out.
One exception, for the fixed time of a forward pass, which only two batch sizes of one
deployment separate from the per-sequence costs: where a source publishes a batch sweep of its
headline deployment ([ANT]: EP16 at batch 8 and 32 a card), the sweep's smallest batch is
``fit`` too.

`fit_efficiency` fits (prefill_mfu, decode_mfu, mem_bw_util, forward_overhead_ms) by least
squares on log(model / published) over the ``fit`` rows only, in three levels each shrunk
towards the one above (a weak prior, so a level with too few rows to pin the shares of peak keeps
the others at the parent's value): global (accelerator ``*``), per accelerator, and per
(accelerator, framework) where an accelerator has rows from more than one framework. The fixed
time of a forward pass is free (no prior) only at a level whose rows identify it (decode rows of
one deployment at two batch sizes, `identifies_overhead`); elsewhere it is the parent's, and the
global level's is 0 (the rooflines alone). ``python -m gridsim.calibration``
rewrites ``gridsim/catalog/data/efficiency.csv``; `calibration_table` adds the model's figure
and the ratio to every row.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from gridsim.catalog import Catalog, builtin_catalog
from gridsim.serving import (
    Efficiency,
    ServingParams,
    efficiency_for,
    loaded_replica,
    serving_model,
    serving_params,
    with_efficiency,
)

FACTORS = ("prefill_mfu", "decode_mfu", "mem_bw_util", "forward_overhead_ms")
# Only anchors the global level (weight below). No fixed overhead at the global level.
PRIOR: Efficiency = (0.4, 0.3, 0.8, 0.0)
PRIOR_WEIGHT = {"global": 0.05, "accelerator": 0.3, "framework": 0.3}
# Physical ranges: MFU up to 0.9 of peak; HBM up to 0.92 of the datasheet bandwidth (FlashMLA
# reaches 3.0 of 3.35 TB/s on H800 = 0.9); overhead 0 to 20 ms a forward pass (fitted in ms on
# a linear scale: it may be 0).
BOUNDS = (
    np.array([*np.log([0.02, 0.02, 0.3]), 0.0]),
    np.array([*np.log([0.9, 0.9, 0.92]), 20.0]),
)
DATA = resources.files("gridsim.catalog") / "data"


def read_calibration(text: str | None = None) -> pd.DataFrame:
    """The calibration rows (packaged file, or ``text`` in the same CSV format)."""
    raw = (DATA / "calibration.csv").read_text("utf-8") if text is None else text
    df = pd.read_csv(io.StringIO(raw), keep_default_na=False, na_values=[""])
    df["framework"] = df["framework"].fillna("")
    bad = set(df["split"]) - {"fit", "holdout"}
    if bad:
        raise ValueError(f"calibration split must be fit or holdout, got {sorted(bad)}")
    return df


def _num(row: pd.Series, name: str, default: float | None = None) -> float | None:
    v = row.get(name)
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return default
    return float(v)


def row_params(row: pd.Series, efficiency: Efficiency | None = None) -> ServingParams:
    """Serving parameters for a row's deployment (calibrated efficiency unless given)."""
    catalog = builtin_catalog()
    acc = catalog.accelerators[row["accelerator"]]
    framework = row["framework"] or None
    p = serving_params(
        acc,
        framework=framework,
        speculative_tokens=int(_num(row, "speculative_tokens", 0.0) or 0),
        acceptance_rate=_num(row, "acceptance_rate", 0.0) or 0.0,
        tpot_target_s=_num(row, "tpot_target_s", 0.05) or 0.05,
    )
    context = _num(row, "context_tokens")
    if context is None:
        prompt, output = _num(row, "input_tokens", 0.0) or 0.0, _num(row, "output_tokens", 0.0)
        context = prompt + (output or 0.0) / 2
    p = replace(
        p,
        kv_bytes_per_element=_num(row, "kv_bytes_per_element", 2.0) or 2.0,
        avg_context_tokens=max(context, 1.0),
    )
    return with_efficiency(p, efficiency) if efficiency is not None else p


def model_value(
    row: pd.Series, efficiency: Efficiency | None = None, catalog: Catalog | None = None
) -> float:
    """gridsim's figure for a calibration row's configuration, per card, in the row's metric."""
    cat = catalog or builtin_catalog()
    acc = cat.accelerators[row["accelerator"]]
    model = cat.models[row["model"]]
    bpp = _num(row, "weight_bytes_per_param")
    if bpp is not None:
        model = model.model_copy(update={"bytes_per_param": bpp})
    p = row_params(row, efficiency)
    n = int(row["cards_per_replica"])
    sm = serving_model(acc, model, p, cards=n)
    mode = row["mode"]
    prompt = _num(row, "input_tokens", 0.0) or 0.0
    output = _num(row, "output_tokens", 0.0) or 0.0
    hit = _num(row, "cache_hit_share", 0.0) or 0.0
    if mode == "prefill":
        # Input tokens counted as published: cache hits included, computed tokens (1 - h) x P.
        seconds = float(sm.prefill_time_s((1.0 - hit) * prompt, hit * prompt))
        return prompt / seconds / n
    if mode == "decode":
        batch = _num(row, "batch_per_card")
        context = p.avg_context_tokens
        if batch is not None:
            b = batch * n
            return b / sm.tpot_at(b, context) / n
        slots, _ = sm.decode_slots(context)
        return slots / sm.tpot_at(slots, context) / n
    if mode == "colocated":
        lr = loaded_replica(sm, prompt, output, cache_hit_share=hit, colocated=True)
        hold = (1.0 - hit) * prompt * lr.prefill_s_per_token + output * lr.tpot_s
        return lr.slots * output / hold / n
    raise ValueError(f"{row['id']}: unknown mode {mode!r}")


def calibration_table(efficiency: dict[tuple[str, str], Efficiency] | None = None) -> pd.DataFrame:
    """calibration.csv plus ``model_value`` (gridsim's figure for the row) and ``ratio`` =
    model_value / value, with the packaged efficiency (or ``efficiency`` per (acc, framework))."""
    df = read_calibration()
    values = []
    for _, row in df.iterrows():
        eff = None
        if efficiency is not None:
            eff = _lookup(efficiency, row["accelerator"], row["framework"] or "")
        values.append(model_value(row, eff))
    df["model_value"] = values
    df["ratio"] = df["model_value"] / df["value"]
    return df


def _lookup(
    table: dict[tuple[str, str], Efficiency], accelerator: str, framework: str
) -> Efficiency:
    for key in ((accelerator, framework), (accelerator, ""), ("*", "")):
        if key in table:
            return table[key]
    return efficiency_for("*")


def _to_x(eff: Efficiency) -> np.ndarray[Any, Any]:
    """Fit coordinates: log shares of peak, overhead in ms."""
    return np.array([*np.log(eff[:3]), eff[3] * 1e3])


def _from_x(x: np.ndarray[Any, Any]) -> Efficiency:
    return (float(np.exp(x[0])), float(np.exp(x[1])), float(np.exp(x[2])), float(x[3]) / 1e3)


def identifies_overhead(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` separate the fixed time of a forward pass from the per-sequence costs:
    decode rows of one deployment (model, cards per replica, MTP depth) at two batch sizes."""
    decode = rows[(rows["mode"] == "decode") & rows["batch_per_card"].notna()]
    keys = ["model", "cards_per_replica", "speculative_tokens"]
    return bool((decode.groupby(keys, dropna=False)["batch_per_card"].nunique() >= 2).any())


def _solve(
    rows: pd.DataFrame, prior: Efficiency, weight: float, fit_overhead: bool = False
) -> Efficiency:
    """Least squares on log(model / published) over ``rows`` + weight x log(share / prior) for
    the shares of peak. The overhead is free (no prior) when ``fit_overhead``, else the
    prior's."""
    x0 = _to_x(prior)
    n = 4 if fit_overhead else 3

    def full(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return x if fit_overhead else np.append(x, x0[3])

    def residuals(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        eff = _from_x(full(x))
        res = [math.log(model_value(r, eff) / float(r["value"])) for _, r in rows.iterrows()]
        return np.concatenate([np.asarray(res), weight * (x[:3] - x0[:3])])

    bounds = (BOUNDS[0][:n], BOUNDS[1][:n])
    start = np.clip(x0[:n], *bounds)
    sol = least_squares(residuals, start, bounds=bounds, diff_step=1e-4, xtol=1e-12, ftol=1e-12)
    return _from_x(full(sol.x))


def fit_efficiency(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fit the efficiency table on the ``fit`` rows of ``table`` (default: calibration.csv).

    Returns the efficiency.csv frame: accelerator, framework, prefill_mfu, decode_mfu,
    mem_bw_util, fitted_on, note. Holdout rows are never read.
    """
    df = read_calibration() if table is None else table
    fit = df[df["split"] == "fit"].reset_index(drop=True)
    out: list[dict[str, Any]] = []

    def emit(acc: str, fw: str, eff: Efficiency, rows: pd.DataFrame, note: str) -> None:
        stored = (*eff[:3], eff[3] * 1e3)  # the overhead is stored in ms
        out.append(
            {
                "accelerator": acc,
                "framework": fw,
                **{k: round(v, 8) for k, v in zip(FACTORS, stored, strict=True)},
                "fitted_on": " ".join(rows["id"]),
                "note": note,
            }
        )

    # The overhead is a serving stack's: fitted where an accelerator's (framework's) rows
    # identify it, else inherited (the global level keeps the prior's 0: rooflines alone).
    glob = _solve(fit, PRIOR, PRIOR_WEIGHT["global"])
    emit("*", "", glob, fit, "global default: all fit rows (accelerators without calibration)")
    for acc in sorted(set(fit["accelerator"])):
        rows = fit[fit["accelerator"] == acc]
        acc_eff = _solve(rows, glob, PRIOR_WEIGHT["accelerator"], identifies_overhead(rows))
        frameworks = sorted(set(df[df["accelerator"] == acc]["framework"]))
        emit(
            acc,
            "",
            acc_eff,
            rows,
            f"{acc} default; frameworks in its rows: {', '.join(frameworks)}",
        )
        if len(frameworks) > 1:
            for fw in frameworks:
                sub = rows[rows["framework"] == fw]
                if len(sub):
                    eff = _solve(sub, acc_eff, PRIOR_WEIGHT["framework"], identifies_overhead(sub))
                    emit(acc, fw, eff, sub, f"{acc} with {fw}, shrunk towards the {acc} default")
    return pd.DataFrame(out)


def write_efficiency(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.8f")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gridsim.calibration",
        description="Refit efficiency.csv from calibration.csv (fit rows only) and print ratios.",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(str(DATA / "efficiency.csv")),
        help="where to write the efficiency table (default: the packaged efficiency.csv)",
    )
    ap.add_argument("--check", action="store_true", help="print the table only, do not refit")
    args = ap.parse_args(argv)
    if not args.check:
        frame = fit_efficiency()
        write_efficiency(frame, args.out)
        print(frame.to_string(index=False))
        from gridsim.serving import efficiency_table

        efficiency_table.cache_clear()
    table = calibration_table()
    cols = ["id", "split", "value", "model_value", "ratio"]
    with pd.option_context("display.width", 200):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
