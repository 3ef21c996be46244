"""Benchmark: the token market at flow fidelity, and how its time grows with the models.

Run: ``python benchmarks/bench_market.py [--days 365] [--models 5,10,30] [--repeat 1]``.

Each measurement is ``scenarios/token-market.yaml`` (31 provinces, five plans in three tiers,
the baseline's fleet, 15-minute ticks) with its ``N`` most used models, as
``scenarios/tools/make_token_market.py`` writes it for ``documents(top=N)``: the class mixes
keep those models (and each class its own first model), pools are those of the kept models,
the fleet split is recomputed for them. It runs ``--days`` simulated days through
``gridsim.run`` (the path users take) in a process of its own, and prints the wall and CPU
seconds of the engine's run, of the whole call, the peak RSS, and the engine classes and
pools, so that the time per (class x pool) can be compared across N: growth no worse than
linear in classes x pools means that ratio does not rise with N.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scenarios" / "tools"))

from harness import Figures, Rounds, parse, phases, timed_run  # noqa: E402


def market_once(models: int, days: float) -> Figures:
    import make_token_market

    import gridsim as gs
    from gridsim.grid import build_grid

    text = make_token_market.documents(top=models)[make_token_market.OUT]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "token-market.yaml"
        # the file extends baseline.yaml: point it at the repository's
        base = (ROOT / "scenarios" / "baseline.yaml").as_posix()
        path.write_text(text.replace("extends: baseline.yaml", f"extends: {base}"), "utf-8")
        sets = [f"horizon.duration={days}d", "outputs.figures=false"]
        sc = gs.load_scenario(path, sets=sets)
        grid = build_grid(sc)
        _result, figures = timed_run(sc)
    n_models = len({c.model for c in grid.classes if c.model is not None})
    figures.update(
        models=float(n_models), classes=float(len(grid.classes)), pools=float(len(grid.pools))
    )
    return figures


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=float, default=365.0, help="simulated days")
    parser.add_argument(
        "--models", default="5,10,30", help="most used models kept, comma-separated"
    )


def main() -> None:
    args = parse(__doc__, {"market": market_once}, options)
    if args is None:
        return
    counts = [int(n) for n in args.models.split(",")]
    rounds = Rounds(__file__, args.repeat)
    for _ in rounds:
        for n in counts:
            rounds.measure(f"top{n}", "market", models=n, days=args.days)
    print(f"token market, {args.days:g} days at 15-minute ticks, flow fidelity")
    print("| models | engine classes | pools | engine wall (CPU) | per class x pool | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows: list[dict[str, Any]] = []
    for n in counts:
        m = rounds.median(f"top{n}")
        cp = m["classes"] * m["pools"]
        rows.append(m)
        print(
            f"| {m['models']:.0f} | {m['classes']:.0f} | {m['pools']:.0f} | "
            f"{m['engine_s']:.1f} s ({m['engine_cpu_s']:.1f} s) | "
            f"{1e3 * m['engine_s'] / cp:.2f} ms | {m['peak_rss_mb']:.0f} MB |"
        )
    for n, m in zip(counts, rows, strict=True):
        print(f"top {n}: engine wall {rounds.spread(f'top{n}', 'engine_s')}; {phases(m)}")
    rounds.close()


if __name__ == "__main__":
    main()
