"""Write ``scenarios/token-market.yaml`` and ``scenarios/token-market-dedicated.yaml``.

Run from the repository root: ``python scenarios/tools/make_token_market.py`` (``--check``
only compares: exit 1 if a file differs; ``tests/test_token_market.py`` runs it). The scenario
is generated because its capacity is arithmetic on the catalogue and the fleet: 32 models on
the baseline's nodes, each pool's ``fleet_share`` its node's share of the accelerator's
serving cards (the baseline's PFLOPS weights) times the share of those cards the March 2026
demand's card-seconds need for the pool's models (DERIVED, as baseline.yaml's split). Writing
that by hand for 80 pools would go stale the day a model's serving figures change.

Two passes: the scenario with provisional shares gives, from the grid's service table, each
engine class's requests/s at the start and its card-seconds per request at each pool; the
shares then follow those card-seconds.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "scenarios" / "token-market.yaml"
OUT_DEDICATED = ROOT / "scenarios" / "token-market-dedicated.yaml"

# --- models --------------------------------------------------------------------------------
# Share of each class's tokens by model at the start: ASSUMPTION (no public split of China's
# token calls by model). Weights are normalised per class. Two catalogue models are left out:
# Qwen3-Max and Hunyuan-TurboS are closed and their catalogue architectures are ASSUMPTIONS under
# which the serving model finds them 12x (Qwen3-Max, 128 cards and 99 slots a replica) and 150x
# (Hunyuan-TurboS, 128 layers: one sequence a replica within the 50 ms TPOT target) dearer per
# request than DeepSeek-V3 on H20 (`gridsim serving --model qwen3-max --accelerator h20`): with
# any share of demand they would take most of the fleet on an unsourced guess.
CHAT_MIX: dict[str, float] = {
    "deepseek-v3": 12,
    "deepseek-v3.1": 6,
    "deepseek-v3.2-exp": 2,  # launched at the start: see LAUNCH
    "deepseek-r1": 5,
    "doubao-seed-1.6": 14,
    "qwen3-235b-a22b": 6,
    "kimi-k2.5": 5,
    "kimi-k2": 1,
    "kimi-k2-0905": 1,
    "kimi-k2-thinking": 2,
    "glm-4.6": 3,
    "glm-4.5": 1,
    "minimax-m2": 2,
    "minimax-m1": 0.5,  # BF16 weights: 64 H20 a replica; hosted at one H20 hub only
    "ernie-4.5-300b-a47b": 3,
    "qwen3-coder-480b-a35b": 1,
    # small models, pooled
    "glm-4.5-air": 2,
    "qwen3-next-80b-a3b": 1,
    "hunyuan-a13b": 1,
    "seed-oss-36b": 1,
    "deepseek-r1-distill-qwen-32b": 1,
    "qwq-32b": 1,
    "baichuan-m2": 0.5,
    "qwen3-32b": 3,
    "qwen3-30b-a3b": 3,
    "qwen3-coder-30b-a3b": 0.5,
    "ernie-4.5-21b-a3b": 1,
    "qwen3-14b": 2,
    "qwen3-8b": 3,
    "qwen3-4b": 1,
}
CODING_MIX = {
    "qwen3-coder-480b-a35b": 3,
    "glm-4.6": 3,
    "kimi-k2-0905": 2,
    "deepseek-v3.1": 2,
    "minimax-m2": 1,
    "qwen3-coder-30b-a3b": 1,
}
AGENT_MIX = {
    "kimi-k2.5": 4,
    "kimi-k2-thinking": 2,
    "deepseek-v3.1": 3,
    "glm-4.6": 2,
    "minimax-m2": 2,
    "doubao-seed-1.6": 2,
    "qwen3-235b-a22b": 1,
}
BATCH_MIX = {
    "qwen3-235b-a22b": 3,
    "deepseek-v3": 3,
    "qwen3-30b-a3b": 2,
    "ernie-4.5-300b-a47b": 1,
    "glm-4.5-air": 1,
    "qwen3-8b": 1,
}
# Small models share pooled cards at every LLM node; big ones have pools of their own.
SMALL = [m for m in CHAT_MIX if list(CHAT_MIX).index(m) >= list(CHAT_MIX).index("glm-4.5-air")]
BIG = [m for m in CHAT_MIX if m not in SMALL]
# DeepSeek-V3.2-Exp takes 15 % of chat from V3 and V3.1 over two weeks from day 2 (ASSUMPTION:
# the take-up of a cheaper successor).
LAUNCH = {
    "kind": "model_launch",
    "at": "2d",
    "model": "deepseek-v3.2-exp",
    "share": 0.15,
    "over": "14d",
    "classes": ["chat"],
    "replaces": ["deepseek-v3", "deepseek-v3.1"],
}

# --- nodes ---------------------------------------------------------------------------------
# (node id, accelerator, PFLOPS weight, big models with a pool there). PFLOPS weights are the
# baseline's (baseline.yaml gives each figure's source); which big models a hub hosts is an
# ASSUMPTION: each vendor's models near its home region, the most used everywhere.
EVERYWHERE = ["deepseek-v3", "doubao-seed-1.6"]
NODES: list[tuple[str, str, float, list[str]]] = [
    (
        "zhangjiakou",
        "h20",
        141_840,
        [
            "deepseek-v3.1",
            "deepseek-r1",
            "kimi-k2.5",
            "glm-4.6",
            "ernie-4.5-300b-a47b",
            "qwen3-235b-a22b",
        ],
    ),
    (
        "yrd_demo_zone",
        "h20",
        110_000,
        [
            "deepseek-v3.1",
            "qwen3-235b-a22b",
            "kimi-k2.5",
            "kimi-k2-thinking",
            "minimax-m2",
            "minimax-m1",
            "qwen3-coder-480b-a35b",
            "deepseek-v3.2-exp",
        ],
    ),
    ("shaoguan", "h20", 40_000, ["deepseek-r1", "kimi-k2-0905", "glm-4.6", "deepseek-v3.2-exp"]),
    ("wuhu", "ascend-910b", 30_000, ["qwen3-235b-a22b", "kimi-k2"]),
    ("tianfu", "ascend-910b", 30_000, ["deepseek-r1"]),
    ("chongqing_cluster", "ascend-910b", 20_000, ["deepseek-v3.1"]),
    ("guian", "ascend-910b", 60_000, ["qwen3-235b-a22b", "glm-4.5"]),
    (
        "horinger",
        "ascend-910b",
        109_300,
        [
            "deepseek-v3.1",
            "kimi-k2.5",
            "qwen3-coder-480b-a35b",
            "ernie-4.5-300b-a47b",
            "deepseek-v3.2-exp",
        ],
    ),
    ("qingyang", "ascend-910b", 73_600, ["kimi-k2-thinking", "glm-4.6", "minimax-m2"]),
    (
        "zhongwei",
        "ascend-910b",
        130_000,
        ["deepseek-v3.1", "deepseek-r1", "kimi-k2.5", "qwen3-235b-a22b", "deepseek-v3.2-exp"],
    ),
]
# The other ai_centre nodes of the baseline: a pooled pool and DeepSeek-V3 each.
CENTRES: list[tuple[str, float]] = [
    ("ct_lingang", 10_000),
    ("cm_hohhot", 6_700),
    ("qingyang_suihong", 50_000),
    ("zhengzhou_airport", 10_000),
    ("beijing_ascend", 1_000),
    ("pengcheng_2", 1_000),
]

# --- the market ----------------------------------------------------------------------------
PLANS: list[dict[str, Any]] = [
    {
        "id": "consumer_free",
        "name": "Consumer chat apps (free)",
        "billing": "free",
        # ASSUMPTION: 500 M monthly users of free chat apps (Doubao, DeepSeek, Yuanbao, Qwen,
        # Kimi) using 1.5 M tokens a month on average, heavy-tailed; apps throttle past about
        # 10 M tokens a month (ASSUMPTION)
        "subscribers": 500e6,
        "usage": {"dist": "lognormal", "mean": 1.5e6, "sigma": 1.5},
        "quota": 10e6,
        "classes": {"chat": 1.0},
    },
    {
        "id": "api_payg",
        "name": "API pay-as-you-go",
        "billing": "per_token",
        # ASSUMPTION: 1.5 M developer and enterprise API accounts, very heavy-tailed (sigma 2.5:
        # a few accounts carry most tokens), paying the models' list prices
        # (gridsim catalog models; [S:bailian-prices])
        "subscribers": 1.5e6,
        "usage": {"dist": "lognormal", "mean": 1.5e9, "sigma": 2.5},
        "elasticity": -0.6,  # ASSUMPTION: demand for tokens is price-inelastic in the short run
        "classes": {"chat": 0.45, "agent": 0.35, "batch": 0.20},
    },
    {
        "id": "coding_plan",
        "name": "Coding plan (quota per 5 hours)",
        "billing": "monthly",
        # 20 CNY a month: Z.ai's Coding Plan is 3-15 USD a month [S:zai-coding-plan-price],
        # the Lite end at 7.0 CNY/USD, rounded (ASSUMPTION); about 120 prompts every 5 hours
        # [S:glm-coding-plan], then wait for the next window (throttled). ASSUMPTION: 3 M
        # subscribers, 40 active windows a month, 50 prompts a window on average; a prompt
        # here is one coding-class request.
        "fee_cny": 20.0,
        "subscribers": 3e6,
        "unit": "requests",
        "period": "5h",
        "periods_per_month": 40,
        "usage": {"dist": "lognormal", "mean": 50, "sigma": 1.0},
        "quota": 120,
        "classes": {"coding": 1.0},
    },
    {
        "id": "telecom_package",
        "name": "Carrier token package",
        "billing": "monthly",
        # Carriers sell tokens like mobile data: Shanghai Telecom prices about 250,000 Kimi-K2.5
        # input tokens at 1 CNY [S:kimi-k25-telecom-price]. ASSUMPTION: a 10 CNY package of
        # 2.5 M tokens a month (that rate), overage billed at the same 4 CNY per million;
        # 20 M subscribers using 1.5 M tokens a month on average
        "fee_cny": 10.0,
        "subscribers": 20e6,
        "usage": {"dist": "lognormal", "mean": 1.5e6, "sigma": 1.2},
        "quota": 2.5e6,
        "over_quota": "bill",
        "overage_cny_per_m_tokens": 4.0,
        "classes": {"chat": 0.7, "agent": 0.3},
    },
    {
        "id": "enterprise_reserved",
        "name": "Enterprise reserved throughput",
        "billing": "reserved",
        # 10,000 CNY a month per reserved instance, Bailian's lightweight dedicated instance
        # [S:bailian-billing]. ASSUMPTION: 30,000 contracts, each reserving 1,000 tokens/s
        # (2.6 B tokens a month), using 60 % of it on average
        "fee_cny": 10_000.0,
        "subscribers": 30_000,
        "usage": {"dist": "lognormal", "mean": 1.58e9, "sigma": 0.5},
        "quota": 2.63e9,
        "classes": {"agent": 0.5, "batch": 0.5},
    },
]


# The models a variant keeps (None: all): benchmarks/bench_market.py times the scenario with
# the 5, 10 and 30 most used models (``documents(top=N)``).
KEEP: set[str] | None = None


def _kept(models: list[str] | dict[str, float]) -> list[str]:
    return [m for m in models if KEEP is None or m in KEEP]


def top_models(n: int) -> set[str]:
    """The ``n`` models with the most chat weight, and each class's own first model (so every
    class keeps one)."""
    ranked = sorted(CHAT_MIX, key=lambda m: (-CHAT_MIX[m], list(CHAT_MIX).index(m)))
    keep = set(ranked[:n])
    for mix in (CODING_MIX, AGENT_MIX, BATCH_MIX):
        if not keep & set(mix):
            keep.add(max(mix, key=lambda m: mix[m]))
    return keep


PLAN_NOTES = {
    "consumer_free": "free chat apps; ASSUMPTION: 500 M monthly users, 1.5 M tokens a month on "
    "average (lognormal, sigma 1.5), throttled past 10 M.",
    "api_payg": "the models' list prices ([S:bailian-prices]; `gridsim catalog models`); "
    "ASSUMPTION: 1.5 M developer and enterprise accounts, 1.5 B tokens a month on average, "
    "very heavy-tailed (sigma 2.5), price elasticity -0.6.",
    "coding_plan": "20 CNY a month, the Lite end of Z.ai's 3-15 USD [S:zai-coding-plan-price] "
    "at 7.0 CNY/USD (rounded); about 120 prompts per 5 hours, then wait for the next window "
    "[S:glm-coding-plan]; ASSUMPTION: 3 M subscribers, 40 active windows a month, 50 prompts "
    "a window on average (a prompt is one coding-class request).",
    "telecom_package": "sold like mobile data: Shanghai Telecom prices about 250,000 Kimi-K2.5 "
    "input tokens at 1 CNY [S:kimi-k25-telecom-price]; ASSUMPTION: 10 CNY a month for 2.5 M "
    "tokens (that rate), overage billed at 4 CNY per million, 20 M subscribers using 1.5 M "
    "tokens a month on average.",
    "enterprise_reserved": "10,000 CNY a month per reserved instance, Bailian's lightweight "
    "dedicated instance [S:bailian-billing]; ASSUMPTION: 30,000 contracts of 1,000 tokens/s "
    "(2.63 B tokens a month), 60 % used on average.",
}


def _mix(weights: dict[str, float]) -> dict[str, float]:
    weights = {m: w for m, w in weights.items() if KEEP is None or m in KEEP}
    total = sum(weights.values())
    out = {m: round(w / total, 6) for m, w in weights.items()}
    # the rounding leftover on the largest, so the shares add up to 1 exactly
    big = max(out, key=lambda m: out[m])
    out[big] = round(out[big] + 1.0 - sum(out.values()), 6)
    return out


def _classes() -> list[dict[str, Any]]:
    """The baseline's classes with model mixes and no shares (the plans fill them)."""
    base = yaml.safe_load((ROOT / "scenarios" / "baseline.yaml").read_text("utf-8"))
    out = []
    mixes = {"chat": CHAT_MIX, "coding": CODING_MIX, "agent": AGENT_MIX, "batch": BATCH_MIX}
    for cls in base["demand"]["classes"]:
        cls = dict(cls)
        if cls["name"] in mixes:
            cls.pop("share", None)
            cls.pop("model", None)
            cls["models"] = _mix(mixes[cls["name"]])
        out.append(cls)
    return out


def _pools(shares: dict[tuple[str, str], float], dedicated: bool) -> list[dict[str, Any]]:
    nodes = []
    base = yaml.safe_load((ROOT / "scenarios" / "baseline.yaml").read_text("utf-8"))
    by_id = {n["id"]: n for n in base["nodes"]}
    for node_id, _acc, _w, _big in _llm_nodes():
        node = {k: v for k, v in by_id[node_id].items() if k != "pools"}
        pools = []
        for (nid, pool_id), share in shares.items():
            if nid != node_id or pool_id.startswith("small:"):
                continue
            acc = by_id[node_id]["pools"][0]["accelerator"]
            if pool_id == "small":
                if dedicated or not _kept(SMALL):
                    continue
                pools.append(
                    {
                        "id": "small",
                        "models": _kept(SMALL),
                        "accelerator": acc,
                        "fleet_share": share,
                        "deployment": {"cards_per_replica": 8},
                    }
                )
            else:
                pools.append(
                    {"id": pool_id, "model": pool_id, "accelerator": acc, "fleet_share": share}
                )
        if dedicated:
            for (nid, pool_id), share in shares.items():
                if nid == node_id and pool_id.startswith("small:"):
                    model = pool_id.split(":", 1)[1]
                    acc = by_id[node_id]["pools"][0]["accelerator"]
                    pools.append(
                        {"id": model, "model": model, "accelerator": acc, "fleet_share": share}
                    )
        node["pools"] = pools
        nodes.append(node)
    # the supercomputers: their HPC pools as in the baseline (their small AI partitions left out)
    for node in base["nodes"]:
        if node["kind"] == "supercomputer":
            nodes.append({**node, "pools": [p for p in node["pools"] if "slots" in p]})
    return nodes


def _llm_nodes() -> list[tuple[str, str, float, list[str]]]:
    centres = [(nid, "ascend-910b", w, _kept(["deepseek-v3"])) for nid, w in CENTRES]
    hubs = [(nid, acc, w, _kept([*EVERYWHERE, *big])) for nid, acc, w, big in NODES]
    return [*hubs, *centres]


def _document(shares: dict[tuple[str, str], float], dedicated: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "token-market",
        "extends": "baseline.yaml",
        "description": (
            f"The baseline's grid and fleet selling {len(_kept(CHAT_MIX))} models through five "
            "token packages: "
            "free consumer apps, API pay-as-you-go, coding plans with a quota per 5 hours, a "
            "carrier's monthly token package with billed overage, and enterprise reserved "
            "throughput. Small models share pooled cards at every node; big ones have pools of "
            "their own. Which plan mix and which pooling give the best margin at the SLO?"
        ),
        "horizon": {"duration": "14d"},
        "demand": {"tokens_per_day": None, "classes": _classes()},
        "market": {"plans": PLANS},
        "nodes": _pools(shares, dedicated),
        "events": _launches(),
        "uncertainty": None,
        "overrides": {
            "price_cut": {
                "events": [
                    *_launches(),
                    {"kind": "price_change", "at": "7d", "plan": "api_payg", "price_factor": 0.8},
                ]
            },
            "coding_boom": {"market.plans[coding_plan].subscribers": 9e6},
            "free_capped": {"market.plans[consumer_free].quota": 3e6},
        },
    }
    if dedicated:
        doc = {
            "name": "token-market-dedicated",
            "extends": "token-market.yaml",
            "description": (
                "token-market.yaml with every small model on cards of its own (the same cards "
                "per node as the pooled pools, split by each model's card-seconds): pooled "
                "against dedicated serving at the same fleet."
            ),
            "nodes": doc["nodes"],
        }
    return doc


def _launches() -> list[dict[str, Any]]:
    models = [LAUNCH["model"], *LAUNCH["replaces"]]
    return [LAUNCH] if KEEP is None or all(m in KEEP for m in models) else []


def _provisional() -> dict[tuple[str, str], float]:
    """Equal shares within each accelerator: only the grid's service table is read from it."""
    keys: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for nid, acc, _w, big in _llm_nodes():
        for m in big:
            keys[acc].append((nid, m))
        if _kept(SMALL):
            keys[acc].append((nid, "small"))
        for m in _kept(SMALL):
            keys[acc].append((nid, f"small:{m}"))
    return {k: 0.5 / len(v) for v in keys.values() for k in v}


def _card_seconds(shares: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Per (accelerator, model): the card-seconds a second of the start's demand needs on it,
    at the pools of the provisional scenario (dedicated pools for every model)."""
    import gridsim as gs
    from gridsim.grid import build_grid

    # every model on pools of its own (dedicated), so each gives its own cards per slot
    doc = _document(shares, False)
    doc.update(name="provisional", extends=str(ROOT / "scenarios" / "baseline.yaml"))
    doc["nodes"] = _pools(shares, True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "provisional.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")
        grid = build_grid(gs.load_scenario(path))
    rates = grid.demand.mean_rates(np.array([0.0, 86400.0]))[0].sum(axis=0)  # (C,) req/s
    out: dict[tuple[str, str], float] = defaultdict(float)
    for c, cls in enumerate(grid.classes):
        if cls.kind == "job" or rates[c] <= 0:
            continue
        for acc in ("h20", "ascend-910b"):
            pools = [
                p
                for p, s in enumerate(grid.pools)
                if grid.serves[c, p] and s.accelerator == acc and s.slots > 0
            ]
            if not pools:
                continue
            spec = grid.pools[pools[0]]
            assert spec.serving is not None
            cards_per_slot = spec.serving.accelerators_per_replica / spec.slots_per_replica
            out[(acc, str(cls.model))] += (
                rates[c] * grid.service.mean_s(c, pools[0]) * cards_per_slot
            )
    return out


def shares_from_work(work: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Each pool's fleet_share: for each accelerator, a model's cards follow its card-seconds
    there, times the share of its hosts' PFLOPS weight on that accelerator (its demand goes to
    the nodes that host it); within the model, its host nodes share by PFLOPS weight."""
    nodes = _llm_nodes()
    hosts: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    for nid, acc, w, big in nodes:
        for m in [*big, *_kept(SMALL)]:
            hosts[m].append((nid, acc, w))
    need: dict[tuple[str, str], float] = {}  # (accelerator, model) -> card-seconds there
    for m, where in hosts.items():
        total_w = sum(w for _, _, w in where)
        for acc in ("h20", "ascend-910b"):
            on = sum(w for _, a, w in where if a == acc) / total_w
            if on > 0:
                need[(acc, m)] = work.get((acc, m), 0.0) * on
    out: dict[tuple[str, str], float] = defaultdict(float)
    for acc in ("h20", "ascend-910b"):
        total = sum(v for (a, _), v in need.items() if a == acc)
        for (a, m), v in need.items():
            if a != acc:
                continue
            where = [(nid, w) for nid, aa, w in hosts[m] if aa == acc]
            w_total = sum(w for _, w in where)
            for nid, w in where:
                key = (nid, "small" if m in SMALL else m)
                out[key] += v / total * w / w_total
                if m in SMALL:
                    out[(nid, f"small:{m}")] += v / total * w / w_total
    # rounded down, so that the shares of one accelerator never add up past 1
    floored = {k: math.floor(float(v) * 1e9) / 1e9 for k, v in out.items()}
    return {k: v for k, v in floored.items() if v > 0}


def documents(top: int | None = None) -> dict[Path, str]:
    """The two files' text; ``top``: only the ``top`` most used models (benchmarks)."""
    global KEEP
    KEEP = top_models(top) if top is not None else None
    try:
        work = _card_seconds(_provisional())
        shares = shares_from_work(work)
        pooled = {k: v for k, v in shares.items() if not k[1].startswith("small:")}
        out = {}
        for path, doc in (
            (OUT, _document(pooled, False)),
            (OUT_DEDICATED, _document(shares, True)),
        ):
            out[path] = _text(doc)
        return out
    finally:
        KEEP = None


HEADER = """\
# GENERATED by scenarios/tools/make_token_market.py: edit that script, not this file
# (tests/test_token_market.py checks that the two agree).
#
#   gridsim run scenarios/token-market.yaml                      # two weeks, 30 models, 5 plans
#   gridsim run scenarios/token-market.yaml --scenario price_cut  # API prices -20 % from day 7
#   gridsim run scenarios/token-market-dedicated.yaml            # small models on their own cards
#   gridsim compare results/token-market/<run> results/token-market-dedicated/<run>
#
# The question: which plan mix and which pooling give the best margin at the SLO? The report's
# "Token market" section gives revenue, cost and margin per plan and per model, quota use and
# breakage, and SLA attainment and shed requests per tier (reserved > paid > free: under
# overload the free tier is shed first).
#
# Capacity: the baseline's fleet (gridsim/catalog/data/fleet.csv) and node weights. Each
# pool's fleet_share is its node's PFLOPS share of the accelerator times the share of that
# accelerator's serving cards the start's demand needs for the pool's models (card-seconds from
# the calibrated serving model: DERIVED by the generating script). Small models share 8-card
# pooled replicas (gridsim/pooling.py); big ones have pools of their own at the hubs listed in
# the script (ASSUMPTION).
#
# Plans (prices and quotas: sources in SOURCES.md; the rest ASSUMPTION, as the script says):
"""


def _text(doc: dict[str, Any]) -> str:
    notes = []
    for plan in PLANS:
        text = f"{plan['id']}: {PLAN_NOTES[plan['id']]}"
        lines = textwrap.wrap(text, 94, subsequent_indent="  ", break_on_hyphens=False)
        notes.extend(f"#   {line}" for line in lines)
    body = yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
    if doc.get("market") is None:
        return HEADER.split("#\n# The question")[0] + "\n" + body
    return HEADER + "\n".join(notes) + "\n" + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a diff")
    args = parser.parse_args()
    status = 0
    for path, text in documents().items():
        old = path.read_text("utf-8") if path.exists() else ""
        if args.check:
            if old != text:
                sys.stdout.writelines(
                    difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(path))
                )
                status = 1
        else:
            path.write_text(text, "utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
