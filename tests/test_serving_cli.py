"""``gridsim serving`` (gridsim.serving_cli): serving modes side by side, and the
throughput-latency curve."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridsim.catalog import builtin_catalog
from gridsim.cli import app
from gridsim.scenario.schema import Deployment
from gridsim.service import Workload, mode_figures
from gridsim.serving_cli import DEEPSEEK_CACHE_HIT_SHARE, curve_rows

# DeepSeek's production layout: EP144 decode, EP32 prefill, one MTP draft.
DS = [
    "--model", "deepseek-v3", "--accelerator", "h800", "--count", "144", "--tpot-ms", "50",
    "--cards-per-replica", "144", "--prefill-cards-per-replica", "32",
    "--mtp-tokens", "1", "--mtp-acceptance", "0.85",
]  # fmt: skip
SMALL = ["--model", "qwen3-32b", "--accelerator", "h20", "--count", "8"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["serving", *[str(a) for a in args]])
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not escaped, f"traceback: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result.exit_code, result.output


def rows(*args: str) -> list[dict[str, object]]:
    code, output = invoke(*args, "--json")
    assert code == 0, output
    data = json.loads(output)
    assert isinstance(data, list)
    return data


def by_key(data: list[dict[str, object]]) -> dict[tuple[object, object], dict[str, object]]:
    return {(r["mode"], r["cache_hit_share"]): r for r in data}


def test_the_table_has_a_row_per_mode_and_cache_hit_share() -> None:
    code, output = invoke(*DS)
    assert code == 0, output
    lines = output.splitlines()
    assert sum(line.startswith("│ co-located") for line in lines) == 2, output
    assert sum(line.startswith("│ disaggregated") for line in lines) == 2, output
    data = rows(*DS)
    assert sorted(by_key(data)) == [
        ("colocated", 0.0),
        ("colocated", DEEPSEEK_CACHE_HIT_SHARE),
        ("disaggregated", 0.0),
        ("disaggregated", DEEPSEEK_CACHE_HIT_SHARE),
    ]
    for r in data:
        assert r["output_tokens_per_s_per_node"] == pytest.approx(
            8 * float(r["output_tokens_per_s_per_card"])  # type: ignore[arg-type]
        )


def test_cache_hits_need_fewer_prefill_cards_and_serve_more_requests() -> None:
    table = by_key(rows(*DS))
    cold, warm = table["disaggregated", 0.0], table["disaggregated", DEEPSEEK_CACHE_HIT_SHARE]
    assert warm["prefill_cards_per_decode_card"] < cold["prefill_cards_per_decode_card"]  # type: ignore[operator]
    for mode in ("colocated", "disaggregated"):
        assert (
            table[mode, DEEPSEEK_CACHE_HIT_SHARE]["requests_per_s_per_card"]
            > table[mode, 0.0]["requests_per_s_per_card"]  # type: ignore[operator]
        )
    assert table["colocated", 0.0]["prefill_cards_per_decode_card"] is None


def test_json_output_tokens_are_the_modes_figures() -> None:
    cat = builtin_catalog()
    acc, model = cat.accelerators["h800"], cat.models["deepseek-v3"]
    table = by_key(rows(*DS))
    for mode in ("colocated", "disaggregated"):
        for share in (0.0, DEEPSEEK_CACHE_HIT_SHARE):
            dep = Deployment(
                mode=mode,
                cards_per_replica=144,
                prefill_cards_per_replica=32,
                speculative_tokens=1,
                acceptance_rate=0.85,
            )
            want = mode_figures(acc, model, dep, Workload(2000, 500, share), tpot_target_s=0.05)
            got = table[mode, share]["output_tokens_per_s_per_card"]
            assert got == pytest.approx(want["output_tokens_per_s_per_card"], rel=1e-12)


def test_pool_totals_count_whole_replicas_that_fit() -> None:
    table = by_key(rows(*DS))
    co = table["colocated", 0.0]
    assert co["pool_replicas"] == 1 and co["pool_cards_used"] == 144
    assert co["pool_output_tokens_per_s"] == pytest.approx(
        144 * float(co["output_tokens_per_s_per_card"])  # type: ignore[arg-type]
    )
    # EP144 decode plus its prefill replicas do not fit in 144 cards: no pool replica.
    dis = table["disaggregated", 0.0]
    assert dis["pool_replicas"] == 0 and dis["pool_output_tokens_per_s"] == 0
    assert int(dis["pool_cards_needed_per_replica"]) > 144  # type: ignore[call-overload]


def test_a_tighter_tpot_target_never_serves_more() -> None:
    cat = builtin_catalog()
    for acc, model, dep in (
        ("h800", "deepseek-v3", Deployment(cards_per_replica=144, prefill_cards_per_replica=32)),
        ("h20", "qwen3-32b", Deployment(cards_per_replica=1, prefill_cards_per_replica=1)),
        ("h100", "llama-3.3-70b", Deployment(cards_per_replica=2, prefill_cards_per_replica=2)),
    ):
        frame = curve_rows(
            cat.accelerators[acc], cat.models[model], dep, input_tokens=2000, output_tokens=500
        )
        assert len(frame) == 25 * 4
        for key, line in frame.groupby(["mode", "cache_hit_share"]):
            values = line.sort_values("tpot_target_ms")["output_tokens_per_s_per_card"].tolist()
            for tight, loose in pairwise(values):
                assert tight <= loose * (1 + 1e-9), (acc, model, key, values)


def test_a_tighter_tpot_target_never_serves_more_with_the_default_replica() -> None:
    """Left unset, the replica is the one deployed at the default target all along the curve
    (re-chosen at each target, llama-3.3-70b on H100 took 4 cards at 10 ms and 2 at 15.8 ms,
    with fewer tokens/s per card: the curve stepped down)."""
    cat = builtin_catalog()
    frame = curve_rows(
        cat.accelerators["h100"],
        cat.models["llama-3.3-70b"],
        Deployment(),
        input_tokens=2000,
        output_tokens=500,
        modes=("colocated",),
        cache_hit_shares=(0.0,),
    )
    values = frame.sort_values("tpot_target_ms")["output_tokens_per_s_per_card"].tolist()
    assert all(a <= b * (1 + 1e-9) for a, b in pairwise(values))


def test_the_curve_is_written_as_a_png_and_never_over_a_file(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    code, output = invoke(*SMALL, "--cards-per-replica", "1", "--curve", path)
    assert code == 0, output
    assert path.read_bytes()[:8] == PNG_MAGIC
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my own figure")
    code, output = invoke(*SMALL, "--curve", mine)
    assert code == 2 and "already exists" in output and "--force" in output, output
    assert mine.read_bytes() == b"my own figure"
    code, output = invoke(*SMALL, "--curve", mine, "--force")
    assert code == 0, output
    assert mine.read_bytes()[:8] == PNG_MAGIC
    code, output = invoke(*SMALL, "--curve", tmp_path / "curve.xyz")
    assert code == 2 and "unknown format 'xyz'" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "mine.png"]


def test_bad_input_says_what_to_fix_and_exits_2() -> None:
    code, output = invoke("--model", "gpt-9", "--accelerator", "h800")
    assert code == 2 and "unknown model 'gpt-9'" in output and "deepseek-v3" in output
    code, output = invoke("--model", "deepseek-v3", "--accelerator", "tpu9")
    assert code == 2 and "unknown accelerator 'tpu9'" in output and "h800" in output
    code, output = invoke(
        "--model", "deepseek-v3", "--accelerator", "h800", "--cards-per-replica", "8"
    )
    assert code == 2 and "does not fit on 8 x h800" in output and "--cards-per-replica 16" in output
    code, output = invoke("--model", "deepseek-v3", "--accelerator", "h800", "--count", "8")
    assert code == 2 and "--count 8" in output and "--count 16 or more" in output
    code, output = invoke(*SMALL, "--mtp-tokens", "1")
    assert code == 2 and "--mtp-acceptance" in output
    code, output = invoke(*SMALL, "--cache-hit-share", "1.5")
    assert code == 2 and "--cache-hit-share" in output


def test_detail_prints_the_single_deployment_figures() -> None:
    code, output = invoke(*SMALL, "--detail", "--json")
    assert code == 0, output
    figures = json.loads(output)
    assert figures["accelerators"] == 8 and figures["replicas"] >= 1
    assert {"cost_cny_per_m_tokens", "energy_kwh_per_m_tokens", "ttft_s"} <= set(figures)
    code, output = invoke("--model", "qwen3-32b", "--accelerator", "h20", "--detail")
    assert code == 2 and "--detail needs --count" in output
