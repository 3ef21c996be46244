"""``gridsim serving``: what a model on an accelerator yields in each serving mode, side by side,
and the throughput-latency curve (tokens/s per card against the TPOT target).

Registered by ``gridsim.cli._register_extensions``. The figures come from the serving modes of
``gridsim.service`` (``mode_figures``, the numbers the simulator's pools run on) for the typical
request; ``--detail`` prints the single co-located deployment's figures (energy and cost per 1M
tokens) that the command printed before the modes table.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pandas as pd

    from gridsim.catalog.types import Accelerator, LLMModel
    from gridsim.scenario.schema import Deployment
    from gridsim.serving import ServingParams

MODES = ("colocated", "disaggregated")
MODE_LABEL = {"colocated": "co-located", "disaggregated": "disaggregated"}
# DeepSeek's published on-disk KV cache hit rate of its API: 56.3 % of input tokens over 24 h
# (342B of 608B; open-infra-index, Day 6 inference system overview).
DEEPSEEK_CACHE_HIT_SHARE = 0.563
DEFAULT_TPOT_MS = 50.0  # ServingParams.tpot_target_s: 20 tok/s per user
# TPOT targets of the curve (ms): 25 points from 10 to 150.
CURVE_TPOT_MS = tuple(10.0 + 140.0 * k / 24 for k in range(25))
CURVE_FORMATS = ("png", "svg", "pdf")
CREATOR = "gridsim serving"


def register(app: typer.Typer) -> None:
    """Add the ``serving`` command to the gridsim CLI."""
    app.command("serving")(serving_command)


# --- the figures ---------------------------------------------------------------------------


def mode_rows(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    *,
    input_tokens: float,
    output_tokens: float,
    cache_hit_shares: Sequence[float] = (0.0, DEEPSEEK_CACHE_HIT_SHARE),
    tpot_target_s: float = DEFAULT_TPOT_MS / 1000,
    count: int | None = None,
    modes: Sequence[str] = MODES,
) -> list[dict[str, Any]]:
    """One row per (mode, cache-hit share): ``mode_figures`` of the pool for the typical
    request, per card and per server; with ``count``, the totals of a pool of that many cards:
    the whole pool replicas that fit (each station's replicas rounded up, as the simulator
    deploys them), each at the mode's request rate. ``deployment.mode`` is replaced by each
    of ``modes``."""
    from gridsim.service import Workload, deploy, mode_figures, pool_replicas

    rows = []
    for mode in modes:
        dep = deployment.model_copy(update={"mode": mode})
        for share in cache_hit_shares:
            workload = Workload(float(input_tokens), float(output_tokens), float(share))
            fig = mode_figures(accelerator, model, dep, workload, tpot_target_s=tpot_target_s)
            deployed = deploy(accelerator, model, dep, workload, tpot_target_s=tpot_target_s)
            cards = {"prefill": 0.0, "decode": 0.0}
            station_cards = []
            for st in deployed.stations:
                n = st.serving.accelerators_per_replica if st.serving is not None else 0
                station_cards.append((st.replicas_per_pool_replica, n))
                if st.stage in cards:
                    cards[st.stage] += st.replicas_per_pool_replica * n
            per_card = float(fig["requests_per_s_per_card"])
            cards_per_pool = float(fig["cards_per_pool_replica"])
            tpot_s, per_server = float(fig["tpot_s"]), accelerator.per_server
            row: dict[str, Any] = {
                "mode": mode,
                "cache_hit_share": float(share),
                "cards_per_pool_replica": cards_per_pool,
                "prefill_cards_per_decode_card": (
                    cards["prefill"] / cards["decode"] if cards["decode"] > 0 else None
                ),
                "stations": str(fig["stations"]),
                "requests_per_s_per_card": per_card,
                "input_tokens_per_s_per_card": float(fig["input_tokens_per_s_per_card"]),
                "output_tokens_per_s_per_card": float(fig["output_tokens_per_s_per_card"]),
                "cards_per_node": per_server,
                "input_tokens_per_s_per_node": float(fig["input_tokens_per_s_per_card"])
                * per_server,
                "output_tokens_per_s_per_node": float(fig["output_tokens_per_s_per_card"])
                * per_server,
                "ttft_ms": float(fig["ttft_s"]) * 1000,
                "tpot_ms": tpot_s * 1000,
                "tpot_target_ms": tpot_target_s * 1000,
                "meets_tpot": tpot_s <= tpot_target_s * (1 + 1e-9),
            }
            if count is not None:

                def used(r: int, parts: list[tuple[float, int]] = station_cards) -> int:
                    return sum(pool_replicas(ratio, r) * n for ratio, n in parts)

                r = int(count // cards_per_pool) if cards_per_pool > 0 else 0
                while r > 0 and used(r) > count:
                    r -= 1
                rate = r * per_card * cards_per_pool  # requests/s of r pool replicas
                row |= {
                    "pool_cards": count,
                    "pool_replicas": r,
                    "pool_cards_used": used(r),
                    "pool_cards_needed_per_replica": used(1),
                    "pool_requests_per_s": rate,
                    "pool_input_tokens_per_s": rate * input_tokens,
                    "pool_output_tokens_per_s": rate * output_tokens,
                }
            rows.append(row)
    return rows


def curve_rows(
    accelerator: Accelerator,
    model: LLMModel,
    deployment: Deployment,
    *,
    input_tokens: float,
    output_tokens: float,
    cache_hit_shares: Sequence[float] = (0.0, DEEPSEEK_CACHE_HIT_SHARE),
    tpot_ms: Sequence[float] = CURVE_TPOT_MS,
    modes: Sequence[str] = MODES,
) -> pd.DataFrame:
    """The throughput-latency curve ``--curve`` draws: ``mode_rows`` at each TPOT target
    (``tpot_target_ms``), one row per (target, mode, cache-hit share). ``meets_tpot`` is
    False where even one sequence per replica decodes slower than the target. Without
    ``cards_per_replica`` the replica is the one deployed at the default TPOT target."""
    import pandas as pd

    from gridsim.serving import serving_model

    if deployment.cards_per_replica is None:
        # One deployment along the curve: the replica a scenario deploys at the default
        # target (left free, the replica size would be chosen again at each target).
        cards = serving_model(accelerator, model).accelerators_per_replica
        deployment = deployment.model_copy(update={"cards_per_replica": cards})
    rows = []
    for target in tpot_ms:
        rows += mode_rows(
            accelerator,
            model,
            deployment,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_hit_shares=cache_hit_shares,
            tpot_target_s=float(target) / 1000,
            modes=modes,
        )
    return pd.DataFrame(rows)


def published_points(model_id: str, accelerator_id: str) -> pd.DataFrame | None:
    """Published calibration figures for this model and accelerator that have a TPOT target
    (``gridsim.calibration.calibration_table``), or None when there are none."""
    try:
        from gridsim.calibration import calibration_table
    except ImportError:
        return None
    table = calibration_table()
    needed = {"model", "accelerator", "tpot_target_s", "metric", "value"}
    if not needed <= set(table.columns):
        return None
    rows = table[(table["model"] == model_id) & (table["accelerator"] == accelerator_id)]
    rows = rows[rows["tpot_target_s"].notna()]
    return rows if len(rows) else None


def plot_curve(
    frame: pd.DataFrame, path: Path, title: str, published: pd.DataFrame | None = None
) -> None:
    """Two panels, output and input tokens/s per card against the TPOT target: one line per
    mode (colour) and cache-hit share (solid: none, dashed: with hits); targets no replica
    meets are left out; published figures as markers (filled: fit rows, hollow: held out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_out, ax_in = fig.subplots(1, 2, sharex=True)
    colours = {"colocated": "tab:blue", "disaggregated": "tab:orange"}
    shares = sorted(frame["cache_hit_share"].unique())
    for (mode, share_key), part in frame.groupby(["mode", "cache_hit_share"], sort=False):
        share = float(str(share_key))
        part = part.sort_values("tpot_target_ms")
        ok = part["meets_tpot"].astype(bool)
        style = "-" if share == shares[0] else "--"
        label = f"{MODE_LABEL.get(str(mode), mode)}, cache hits {share:.1%}"
        for ax, column in (
            (ax_out, "output_tokens_per_s_per_card"),
            (ax_in, "input_tokens_per_s_per_card"),
        ):
            ax.plot(
                part["tpot_target_ms"],
                part[column].where(ok),
                style,
                color=colours.get(str(mode)),
                marker=".",
                label=label,
            )
    if published is not None:
        for _, row in published.iterrows():
            ax = ax_in if str(row["metric"]).startswith("input") else ax_out
            ax.plot(
                float(row["tpot_target_s"]) * 1000,
                float(row["value"]),
                "D",
                color="black",
                markerfacecolor="black" if row.get("split") == "fit" else "none",
                label=f"published: {row.get('id', '')} ({row.get('mode', '')} cards)",
            )
    ax_out.set_ylabel("output tokens/s per card")
    ax_in.set_ylabel("input tokens/s per card")
    for ax in (ax_out, ax_in):
        ax.set_xlabel("TPOT target (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax_out.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    write_figure(fig, path)


# --- output files --------------------------------------------------------------------------


def check_figure_path(path: Path, force: bool) -> None:
    """Refuse a figure path before any work: an unknown format, no such folder, a folder,
    or (without ``force``) any existing file, whoever wrote it."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in CURVE_FORMATS:
        raise ValueError(
            f"--curve {path}: unknown format {suffix!r}; end the name in "
            + ", ".join(f".{s}" for s in CURVE_FORMATS)
        )
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"--curve {path}: not a file in an existing folder")
    if (path.exists() or path.is_symlink()) and not force:
        raise ValueError(
            f"--curve {path} already exists and was not replaced; choose another name, or "
            "pass --force to replace it"
        )


def write_figure(fig: Any, path: Path) -> None:
    """Save beside ``path`` and move into place: a failed save leaves any existing file
    whole, and a file that appeared meanwhile is replaced only when the caller allowed it
    (``check_figure_path`` ran with ``force``)."""
    suffix = path.suffix.lower().lstrip(".")
    tmp = path.with_name(f".{path.name}.gridsim-tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format=suffix, dpi=150, metadata={"Creator": CREATOR})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the command ---------------------------------------------------------------------------


def serving_command(
    model: Annotated[str, typer.Option("--model", help="Catalogue model id, e.g. deepseek-v3")],
    accelerator: Annotated[
        str, typer.Option("--accelerator", help="Catalogue accelerator id, e.g. h800")
    ],
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, help="Cards of the pool: adds the pool's totals"),
    ] = None,
    tpot_ms: Annotated[
        float | None,
        typer.Option("--tpot-ms", help="Time-per-output-token target, ms (default 50)"),
    ] = None,
    input_tokens: Annotated[
        int, typer.Option("--input-tokens", min=1, help="Prompt tokens of the typical request")
    ] = 2000,
    output_tokens: Annotated[
        int, typer.Option("--output-tokens", min=1, help="Output tokens of the typical request")
    ] = 500,
    cache_hit_share: Annotated[
        float,
        typer.Option(
            "--cache-hit-share",
            help="Share of prompt tokens that hit the prefix (KV) cache in the 'with cache "
            "hits' rows; default 0.563, DeepSeek's published on-disk KV cache hit rate for "
            "its API (56.3 %, 24 h production statistics)",
        ),
    ] = DEEPSEEK_CACHE_HIT_SHARE,
    cards_per_replica: Annotated[
        int | None,
        typer.Option(
            "--cards-per-replica",
            min=1,
            help="Cards of a replica (decode replica when disaggregated); default: the "
            "smallest useful group",
        ),
    ] = None,
    prefill_cards_per_replica: Annotated[
        int | None,
        typer.Option(
            "--prefill-cards-per-replica", min=1, help="Cards of a prefill replica (disaggregated)"
        ),
    ] = None,
    prefill_ratio: Annotated[
        float | None,
        typer.Option(
            "--prefill-ratio",
            help="Prefill cards per decode card (disaggregated); default: prefill as busy as "
            "decode",
        ),
    ] = None,
    mtp_tokens: Annotated[
        int,
        typer.Option(
            "--mtp-tokens",
            min=0,
            max=8,
            help="Draft tokens per decode step (multi-token prediction / speculative decoding)",
        ),
    ] = 0,
    mtp_acceptance: Annotated[
        float | None,
        typer.Option(
            "--mtp-acceptance",
            help="Probability each draft token is accepted (DeepSeek-V3 MTP: 0.85-0.9)",
        ),
    ] = None,
    kv_transfer_gb_per_s: Annotated[
        float | None,
        typer.Option(
            "--kv-transfer-gb-per-s",
            help="KV transfer bandwidth per prefill card, GB/s (disaggregated; default 50)",
        ),
    ] = None,
    framework: Annotated[
        str | None,
        typer.Option(
            "--framework",
            help="Serving framework whose calibrated efficiency applies, e.g. sglang, trtllm",
        ),
    ] = None,
    curve: Annotated[
        Path | None,
        typer.Option(
            "--curve",
            help="Draw tokens/s per card against the TPOT target (10-150 ms) to this "
            ".png, .svg or .pdf",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --curve file")
    ] = False,
    detail: Annotated[
        bool,
        typer.Option(
            "--detail",
            help="Instead of the modes table, one co-located deployment of --count cards: "
            "replicas, slots, tokens/s, TTFT, energy and cost per 1M tokens",
        ),
    ] = False,
    price_cny_per_kwh: Annotated[float, typer.Option(help="Electricity price (--detail)")] = 0.4,
    pue: Annotated[float, typer.Option(help="Power usage effectiveness (--detail)")] = 1.3,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: the table's rows (units in the keys)")
    ] = False,
) -> None:
    """What a model on an accelerator yields in each serving mode: co-located and
    disaggregated, without and with prefix-cache hits, per card, per server and (--count)
    for the pool; --curve draws tokens/s per card against the TPOT target."""
    from gridsim.console import err, guard

    def inputs() -> tuple[Accelerator, LLMModel, Deployment, float]:
        from gridsim.catalog import builtin_catalog

        for name, value in (
            ("--tpot-ms", tpot_ms),
            ("--cache-hit-share", cache_hit_share),
            ("--prefill-ratio", prefill_ratio),
            ("--mtp-acceptance", mtp_acceptance),
            ("--kv-transfer-gb-per-s", kv_transfer_gb_per_s),
            ("--price-cny-per-kwh", price_cny_per_kwh),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value}: give a finite number >= 0")
        if tpot_ms is not None and tpot_ms <= 0:
            raise ValueError(f"--tpot-ms {tpot_ms}: give a target above 0 ms")
        if not cache_hit_share <= 1:
            raise ValueError(f"--cache-hit-share {cache_hit_share}: give a share from 0 to 1")
        if not (math.isfinite(pue) and 1 <= pue <= 3):
            raise ValueError(f"--pue {pue}: give a number from 1 to 3")
        for name, value in (
            ("--prefill-ratio", prefill_ratio),
            ("--kv-transfer-gb-per-s", kv_transfer_gb_per_s),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{name} {value}: give a number above 0")
        if mtp_acceptance is not None and mtp_acceptance > 1:
            raise ValueError(f"--mtp-acceptance {mtp_acceptance}: give a probability <= 1")
        if mtp_tokens and mtp_acceptance is None:
            raise ValueError(
                f"--mtp-tokens {mtp_tokens} needs --mtp-acceptance (DeepSeek-V3: 0.85-0.9)"
            )
        if not mtp_tokens and mtp_acceptance:
            raise ValueError("--mtp-acceptance needs --mtp-tokens 1 or more")
        if detail and count is None:
            raise ValueError("--detail needs --count: the cards of the deployment")
        if detail and curve is not None:
            raise ValueError("--detail and --curve do not go together; drop one")
        if curve is not None:
            check_figure_path(curve, force)
        cat = builtin_catalog()
        if model not in cat.models:
            raise ValueError(
                f"unknown model {model!r}; known: {', '.join(cat.models)} (gridsim catalog models)"
            )
        if accelerator not in cat.accelerators:
            raise ValueError(
                f"unknown accelerator {accelerator!r}; known: {', '.join(cat.accelerators)} "
                "(gridsim catalog accelerators)"
            )
        acc, llm = cat.accelerators[accelerator], cat.models[model]
        dep = _deployment()
        target_s = (tpot_ms if tpot_ms is not None else DEFAULT_TPOT_MS) / 1000
        _check_fits(acc, llm, dep, target_s)
        return acc, llm, dep, target_s

    def _deployment() -> Deployment:
        from pydantic import ValidationError

        from gridsim.scenario.schema import Deployment

        try:
            return Deployment(
                cards_per_replica=cards_per_replica,
                prefill_cards_per_replica=prefill_cards_per_replica,
                prefill_ratio=prefill_ratio,
                speculative_tokens=mtp_tokens,
                acceptance_rate=mtp_acceptance or 0.0,
                kv_transfer_gb_per_s=kv_transfer_gb_per_s,
                framework=framework,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "deployment"
            option = {
                "cards_per_replica": "--cards-per-replica",
                "prefill_cards_per_replica": "--prefill-cards-per-replica",
                "prefill_ratio": "--prefill-ratio",
                "speculative_tokens": "--mtp-tokens",
                "acceptance_rate": "--mtp-acceptance",
                "kv_transfer_gb_per_s": "--kv-transfer-gb-per-s",
                "framework": "--framework",
            }.get(where, where)
            raise ValueError(f"{option}: {first['msg']}") from None

    acc, llm, dep, target_s = guard(inputs)
    _note_framework(acc.id, framework, err)
    if detail:
        assert count is not None
        n = count
        tokens = (input_tokens, output_tokens)
        figures = guard(lambda: _detail(acc, llm, dep, target_s, n, tokens, price_cny_per_kwh, pue))
        _print_detail(figures, as_json, title=f"{count} x {accelerator} serving {model}")
        return
    rows = guard(
        lambda: mode_rows(
            acc,
            llm,
            dep,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_hit_shares=(0.0, cache_hit_share),
            tpot_target_s=target_s,
            count=count,
        )
    )
    if count is not None and not any(r["pool_replicas"] for r in rows):
        least = min(int(r["pool_cards_needed_per_replica"]) for r in rows)
        err.print(
            f"error: --count {count}: one replica of {model} on {accelerator} needs at least "
            f"{least} cards in every mode; give --count {least} or more"
            + (", or a smaller --cards-per-replica" if cards_per_replica else ""),
            markup=False,
            highlight=False,
        )
        raise typer.Exit(2)
    if as_json:
        for r in rows:
            r.update(model=model, accelerator=accelerator)
            r.update(input_tokens=input_tokens, output_tokens=output_tokens)
        sys.stdout.write(json.dumps(_json_safe(rows), indent=2, allow_nan=False) + "\n")
    else:
        _print_rows(rows, model, accelerator, input_tokens, output_tokens, target_s, count)
    if curve is not None:
        frame = guard(
            lambda: curve_rows(
                acc,
                llm,
                dep,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_hit_shares=(0.0, cache_hit_share),
            )
        )
        title = (
            f"{model} on {accelerator}: {input_tokens} in + {output_tokens} out tokens per "
            f"request{_deployment_text(dep)}"
        )
        path = curve
        guard(lambda: plot_curve(frame, path, title, published_points(model, accelerator)))
        err.print(f"curve saved to {curve}", markup=False, highlight=False)


def _check_fits(acc: Accelerator, llm: LLMModel, dep: Deployment, target_s: float) -> None:
    """A replica of the cards asked holds the model, or a message naming the option and the
    smallest replica that would."""
    from gridsim.serving import replica_size, serving_model, serving_params

    params = serving_params(
        acc,
        framework=dep.framework,
        speculative_tokens=dep.speculative_tokens,
        acceptance_rate=dep.acceptance_rate,
        tpot_target_s=target_s,
    )
    for option, cards in (
        ("--cards-per-replica", dep.cards_per_replica),
        ("--prefill-cards-per-replica", dep.prefill_cards_per_replica),
    ):
        try:
            serving_model(acc, llm, params, cards=cards)
        except ValueError as exc:
            if cards is None:
                raise
            try:
                least = f"{replica_size(acc, llm, params)} or more"
            except ValueError:
                least = "more"
            raise ValueError(
                f"{option} {cards}: {exc}; give {option} {least}, or leave it out for the "
                "smallest useful replica"
            ) from None


def _note_framework(accelerator_id: str, framework: str | None, err: Any) -> None:
    from gridsim.serving import efficiency_table

    if framework and (accelerator_id, framework) not in efficiency_table():
        err.print(
            f"note: no calibrated efficiency for --framework {framework} on {accelerator_id}; "
            "the accelerator's own applies",
            markup=False,
            highlight=False,
        )


def _params(
    acc: Accelerator, dep: Deployment, target_s: float, input_tokens: int, output_tokens: int
) -> ServingParams:
    from gridsim.service import deployment_params

    p = deployment_params(acc, dep, target_s)
    return replace(
        p,
        typical_prompt_tokens=input_tokens,
        typical_output_tokens=output_tokens,
        avg_context_tokens=input_tokens + output_tokens / 2,
    )


def _detail(
    acc: Accelerator,
    llm: LLMModel,
    dep: Deployment,
    target_s: float,
    count: int,
    tokens: tuple[int, int],
    price_cny_per_kwh: float,
    pue: float,
) -> dict[str, Any]:
    """The figures the command printed before the modes table: ``count`` cards of co-located
    replicas (``--cards-per-replica`` or the smallest useful), calibrated efficiency, for the
    typical request (input, output tokens)."""
    from gridsim.serving import serving_model

    params = _params(acc, dep, target_s, *tokens)
    sm = serving_model(acc, llm, params, cards=dep.cards_per_replica)
    return sm.deployment(count, price_cny_per_kwh=price_cny_per_kwh, pue=pue)


def _deployment_text(dep: Deployment) -> str:
    parts = []
    if dep.cards_per_replica:
        parts.append(f"{dep.cards_per_replica}-card replicas")
    if dep.prefill_cards_per_replica:
        parts.append(f"{dep.prefill_cards_per_replica}-card prefill")
    if dep.speculative_tokens:
        parts.append(f"MTP {dep.speculative_tokens} @ {dep.acceptance_rate:g}")
    if dep.framework:
        parts.append(dep.framework)
    return f" ({', '.join(parts)})" if parts else ""


def _json_safe(data: Any) -> Any:
    """Non-finite figures as null: JSON has no NaN."""
    if isinstance(data, list):
        return [_json_safe(x) for x in data]
    if isinstance(data, dict):
        return {k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def _print_rows(
    rows: list[dict[str, Any]],
    model: str,
    accelerator: str,
    input_tokens: int,
    output_tokens: int,
    target_s: float,
    count: int | None,
) -> None:
    from rich.table import Table

    from gridsim.console import out

    node = rows[0]["cards_per_node"] if rows else 8
    columns = [
        ("mode", "mode"),
        ("cache\nhits", "cache_hit_share"),
        ("cards per\npool\nreplica", "cards_per_pool_replica"),
        ("prefill\ncards per\ndecode card", "prefill_cards_per_decode_card"),
        ("req/s\nper card", "requests_per_s_per_card"),
        ("in tok/s\nper card", "input_tokens_per_s_per_card"),
        ("out tok/s\nper card", "output_tokens_per_s_per_card"),
        (f"in tok/s\nper {node}-card\nnode", "input_tokens_per_s_per_node"),
        (f"out tok/s\nper {node}-card\nnode", "output_tokens_per_s_per_node"),
        ("TTFT\nms", "ttft_ms"),
        ("TPOT\nms", "tpot_ms"),
    ]
    if count is not None:
        columns += [
            (f"pool\nreplicas\nin {count}\ncards", "pool_replicas"),
            ("pool\ncards\nused", "pool_cards_used"),
            ("pool\nreq/s", "pool_requests_per_s"),
            ("pool\nin tok/s", "pool_input_tokens_per_s"),
            ("pool\nout tok/s", "pool_output_tokens_per_s"),
        ]
    columns.append(("stations per pool replica", "stations"))
    table = Table(
        title=f"{model} on {accelerator}: {input_tokens} input + {output_tokens} output tokens "
        f"per request, TPOT target {target_s * 1000:g} ms",
        header_style="bold",
    )
    for header, key in columns:
        if key == "stations":
            table.add_column(header, overflow="fold", min_width=24)
        elif key == "mode":
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, no_wrap=True, justify="right")
    for r in rows:
        cells = [
            MODE_LABEL.get(r["mode"], r["mode"]) if key == "mode" else _fmt(r[key])
            for _, key in columns
        ]
        table.add_row(*cells)
    out.print(table)
    notes = [
        "per card: every card of the pool (prefill and decode); TTFT and TPOT without queueing",
    ]
    for r in rows:
        label = f"{MODE_LABEL.get(r['mode'], r['mode'])}, cache hits {r['cache_hit_share']:g}"
        if not r["meets_tpot"]:
            notes.append(
                f"{label}: TPOT {r['tpot_ms']:.3g} ms misses the {r['tpot_target_ms']:g} ms "
                "target even at one sequence per replica"
            )
        if count is not None and not r["pool_replicas"]:
            notes.append(
                f"{label}: one pool replica needs {r['pool_cards_needed_per_replica']} cards; "
                f"{count} hold none"
            )
    for note in dict.fromkeys(notes):
        out.print(f"  {note}", markup=False, highlight=False)


def _print_detail(figures: dict[str, Any], as_json: bool, title: str) -> None:
    from rich.table import Table

    from gridsim.console import out

    if as_json:
        sys.stdout.write(json.dumps(_json_safe(figures), indent=2, allow_nan=False) + "\n")
        return
    table = Table(title=title, header_style="bold")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for key, value in figures.items():
        if isinstance(value, float) and math.isfinite(value):  # as the command always printed
            text = f"{value:.6g}" if abs(value) < 1000 else f"{value:,.0f}"
        else:
            text = _fmt(value)
        table.add_row(key, text)
    out.print(table)
