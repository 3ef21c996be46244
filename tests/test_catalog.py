"""Packaged catalogues: provenance, units, required entries, loader errors, overrides."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gridsim.catalog import (
    CATALOG_KINDS,
    Accelerator,
    Catalog,
    CatalogError,
    builtin_catalog,
    declared_units,
    figures,
    load_entries,
)

KINDS = sorted(CATALOG_KINDS)
HEADER = "id,attribute,value,unit,source,note\n"


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return builtin_catalog()


def _numeric_fields(kind: str) -> list[str]:
    return [f for f, u in declared_units(CATALOG_KINDS[kind]).items() if u != "-"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_has_source_and_unit(kind: str) -> None:
    table = figures(kind)
    assert list(table.columns) == ["id", "attribute", "value", "unit", "source", "note"]
    assert len(table) > 0
    assert (table["source"].str.strip() != "").all()
    assert (table["unit"].str.strip() != "").all()
    assert (table["value"].str.strip() != "").all()


@pytest.mark.parametrize("kind", KINDS)
def test_assumptions_and_derivations_say_why(kind: str) -> None:
    src = figures(kind)["source"]
    for prefix in ("ASSUMPTION", "DERIVED"):
        flagged = src[src.str.startswith(prefix)]
        assert flagged.str.match(rf"^{prefix}: \S").all()


@pytest.mark.parametrize("kind", KINDS)
def test_every_numeric_figure_comes_from_a_row_with_its_unit(cat: Catalog, kind: str) -> None:
    units = declared_units(CATALOG_KINDS[kind])
    rows = figures(kind).set_index(["id", "attribute"])["unit"]
    for entry in cat.get(kind).values():
        for field in _numeric_fields(kind):
            if getattr(entry, field) is None:
                continue
            # Defaults would carry no source, so each set figure must be a row in the data.
            assert (entry.id, field) in rows.index, f"{kind}/{entry.id}.{field} has no row"
            assert rows[entry.id, field] == units[field]


def test_required_accelerators_and_models(cat: Catalog) -> None:
    accs = {"h100", "h800", "h20", "a100", "ascend-910b", "ascend-910c"}
    models = {
        "kimi-k2.5",
        "kimi-k2",
        "deepseek-v3",
        "deepseek-r1",
        "qwen3-235b-a22b",
        "qwen3-32b",
        "glm-4.5",
        "glm-4.5-air",
    }
    assert accs <= set(cat.accelerators)
    assert models <= set(cat.models)


def test_required_sites(cat: Catalog) -> None:
    by_kind = cat.table("sites").groupby("kind").size()
    assert by_kind["province"] == 31
    assert by_kind["cluster"] == 10
    assert by_kind["supercomputer"] >= 12
    assert by_kind["ai_centre"] >= 1
    clusters = {
        "zhangjiakou",
        "yrd_demo_zone",
        "wuhu",
        "shaoguan",
        "tianfu",
        "chongqing_cluster",
        "guian",
        "horinger",
        "qingyang",
        "zhongwei",
    }
    assert clusters == {i for i, s in cat.sites.items() if s.kind == "cluster"}
    for pid in ("guangdong", "jiangsu", "inner_mongolia", "tibet", "xinjiang", "beijing"):
        assert cat.sites[pid].kind == "province"


def test_sites_reference_provinces_and_hubs(cat: Catalog) -> None:
    sites = cat.table("sites")
    provinces = set(sites.index[sites["kind"] == "province"])
    assert set(sites["province"]) <= provinces
    hubs = {"bth", "yrd", "gba", "chengyu", "guizhou", "inner_mongolia", "gansu", "ningxia"}
    clusters = sites[sites["kind"] == "cluster"]
    assert set(clusters["hub"]) == hubs
    assert set(clusters["hub_role"]) == {"east", "west"}
    assert clusters["pue_target"].between(1.0, 1.3).all()
    assert set(sites["hub"]) - {""} <= hubs


def test_province_totals(cat: Catalog) -> None:
    prov = cat.table("sites").query("kind == 'province'")
    population = prov["population_10k"].sum() * 1e4
    gdp_cny = prov["gdp_100m_cny"].sum() * 1e8
    assert population == pytest.approx(1.41e9, rel=0.02)
    assert gdp_cny == pytest.approx(125e12, rel=0.03)
    assert prov["carbon_g_per_kwh"].notna().all()
    assert prov["carbon_g_per_kwh"].between(50, 1000).all()


def test_model_figures_are_consistent(cat: Catalog) -> None:
    models = cat.table("models")
    assert (models["active_params_b"] <= models["total_params_b"]).all()
    assert (models["price_cache_hit_cny_per_m"] <= models["price_in_cny_per_m"]).all()
    assert (models["price_in_cny_per_m"] <= models["price_out_cny_per_m"]).all()
    # MLA models cache one 576-wide latent per layer at BF16.
    assert models.loc["deepseek-v3", "kv_bytes_per_token"] == (512 + 64) * 61 * 2


def test_table_is_wide_and_indexed(cat: Catalog) -> None:
    table = cat.table("accelerators")
    assert isinstance(table, pd.DataFrame)
    assert table.index.name == "id"
    assert {"peak_tflops", "price_cny", "name"} <= set(table.columns)
    assert table.loc["h100", "tdp_w"] == 700


def test_builtin_catalog_is_cached_and_read_only(cat: Catalog) -> None:
    assert builtin_catalog() is cat
    with pytest.raises(TypeError):
        cat.accelerators["x"] = cat.accelerators["h100"]  # type: ignore[index]


def test_extended_overrides_and_adds(cat: Catalog) -> None:
    h100 = cat.accelerators["h100"]
    cheaper = h100.model_copy(update={"price_cny": 1.0})
    new = h100.model_copy(update={"id": "h100-test"})
    ext = cat.extended("accelerators", [cheaper, new])
    assert ext.get("accelerators")["h100"].price_cny == 1.0  # type: ignore[attr-defined]
    assert "h100-test" in ext.accelerators
    assert cat.accelerators["h100"].price_cny == h100.price_cny
    assert ext.models is cat.models or dict(ext.models) == dict(cat.models)
    with pytest.raises(CatalogError):
        cat.extended("models", [h100])


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "acc.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


GOOD = """\
x1,name,Test card,-,test,
x1,peak_tflops,100,TFLOPS,test,
x1,hbm_gb,64,GB,test,
x1,hbm_bandwidth_tb_per_s,1.5,TB/s,test,
x1,tdp_w,300,W,test,
x1,price_cny,1000,CNY,test,
x1,per_server,8,count,test,
"""


def test_loader_reads_a_good_file(tmp_path: Path) -> None:
    entries = load_entries(_write(tmp_path, GOOD), "accelerators")
    card = entries["x1"]
    assert isinstance(card, Accelerator)
    assert card.per_server == 8 and isinstance(card.per_server, int)
    assert card.hbm_bandwidth_tb_per_s == 1.5


def test_unit_mismatch_raises(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("300,W", "0.3,kW"))
    with pytest.raises(CatalogError, match=r"acc\.csv:6: id='x1' attribute='tdp_w'.*unit 'kW'"):
        load_entries(path, "accelerators")


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("x1,colour,red,-,test,\n", "unknown attribute"),
        ("x1,tdp_w,300,W,,\n", "needs a source"),
        ("x2,tdp_w,hot,W,test,\n", "bad value"),
        ("x2,per_server,8.5,count,test,\n", "bad value"),
        ("x1,tdp_w,300,W,test,\n", "duplicate"),
        ("x1,source,somewhere,-,test,\n", "unknown attribute"),
    ],
)
def test_loader_rejects_bad_rows(tmp_path: Path, body: str, pattern: str) -> None:
    with pytest.raises(CatalogError, match=pattern):
        load_entries(_write(tmp_path, GOOD + body), "accelerators")


def test_loader_rejects_invalid_entry_and_header(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="validation"):
        load_entries(_write(tmp_path, GOOD.replace("x1,tdp_w,300", "x1,tdp_w,-5")), "accelerators")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,attr,value\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="header"):
        load_entries(bad, "accelerators")
    with pytest.raises(CatalogError, match="unknown catalogue kind"):
        load_entries(bad, "gpus")


# --- Issue 15: the 30+ model catalogue ----------------------------------------------------

# Every attribute the serving and market code reads from a model; each must be a sourced row.
MODEL_ATTRIBUTES = (
    "name",
    "org",
    "architecture",
    "total_params_b",
    "active_params_b",
    "layers",
    "kv_bytes_per_token",
    "context_tokens",
    "bytes_per_param",
    "price_in_cny_per_m",
    "price_cache_hit_cny_per_m",
    "price_out_cny_per_m",
)


def test_catalogue_has_thirty_plus_models_from_many_orgs(cat: Catalog) -> None:
    models = cat.table("models")
    assert len(models) >= 30
    # The national picture is many vendors, not one: each of these must sell at least one model.
    orgs = {"DeepSeek", "Alibaba", "Moonshot", "Zhipu", "MiniMax", "Baidu", "Tencent", "ByteDance"}
    assert orgs <= set(models["org"])
    issue15 = {
        "deepseek-v3.1",
        "deepseek-v3.2-exp",
        "qwen3-4b",
        "qwen3-14b",
        "qwen3-30b-a3b",
        "qwen3-coder-480b-a35b",
        "qwen3-max",
        "qwen3-next-80b-a3b",
        "glm-4.6",
        "minimax-m1",
        "minimax-m2",
        "ernie-4.5-300b-a47b",
        "ernie-4.5-21b-a3b",
        "hunyuan-a13b",
        "hunyuan-turbos",
        "doubao-seed-1.6",
    }
    assert issue15 <= set(models.index)


def test_every_model_has_every_attribute_with_a_source() -> None:
    table = figures("models")
    got = table.groupby("id")["attribute"].apply(frozenset)
    for model_id, attributes in got.items():
        missing = set(MODEL_ATTRIBUTES) - attributes
        assert not missing, f"{model_id} lacks rows for {sorted(missing)}"
    assert (table["source"].str.strip().str.len() > 0).all()


def test_moe_is_sparse_and_dense_is_whole(cat: Catalog) -> None:
    models = cat.table("models")
    moe = models[models["architecture"] == "moe"]
    dense = models[models["architecture"] == "dense"]
    assert len(moe) > 0 and len(dense) > 0
    # A MoE model activates a strict subset of its experts; a dense one uses every weight.
    assert (moe["active_params_b"] < moe["total_params_b"]).all()
    assert (dense["active_params_b"] == dense["total_params_b"]).all()


@pytest.mark.parametrize(
    ("model_id", "layers", "kv_heads", "head_dim"),
    [
        # Numbers copied from the public configs, not from the catalogue:
        # Qwen3-14B: num_hidden_layers 40, num_key_value_heads 8, head_dim 128.
        ("qwen3-14b", 40, 8, 128),
        # Qwen3-Coder-480B-A35B-Instruct: 62 layers, 8 KV heads (num-query-groups), kv-channels 128.
        ("qwen3-coder-480b-a35b", 62, 8, 128),
        # MiniMax-M2: 62 layers, 8 KV heads, head_dim 128 (all layers full softmax attention).
        ("minimax-m2", 62, 8, 128),
        # ERNIE-4.5-21B-A3B: 28 layers, 4 KV heads, hidden 2560 / 20 heads = 128.
        ("ernie-4.5-21b-a3b", 28, 4, 128),
    ],
)
def test_standard_attention_kv_bytes_match_the_config(
    cat: Catalog, model_id: str, layers: int, kv_heads: int, head_dim: int
) -> None:
    # K and V (x2), one BF16 element each (x2 bytes), per KV head per layer.
    assert cat.models[model_id].kv_bytes_per_token == layers * kv_heads * head_dim * 2 * 2
    assert cat.models[model_id].layers == layers


def test_hybrid_attention_caches_only_its_softmax_layers(cat: Catalog) -> None:
    # Qwen3-Next: full attention every 4th of 48 layers, 2 KV heads of 256; the Gated DeltaNet
    # layers keep a fixed state per request, so per-token KV is a quarter of a full stack's.
    assert cat.models["qwen3-next-80b-a3b"].kv_bytes_per_token == (48 // 4) * 2 * 256 * 2 * 2
    # MiniMax-M1: softmax attention every 8th of 80 layers, 8 KV heads of 128.
    assert cat.models["minimax-m1"].kv_bytes_per_token == (80 // 8) * 8 * 128 * 2 * 2


def test_prices_are_ordered(cat: Catalog) -> None:
    models = cat.table("models")
    assert (models["price_cache_hit_cny_per_m"] <= models["price_in_cny_per_m"]).all()
    assert (models["price_in_cny_per_m"] > 0).all()
    # A figure copied to the wrong column would break these hand-checked list prices (CNY/1e6):
    # Bailian lists DeepSeek-V3.2-Exp at 2 in / 3 out and Qwen3-Coder-480B at 6 in / 24 out.
    assert models.loc["deepseek-v3.2-exp", "price_in_cny_per_m"] == 2.0
    assert models.loc["deepseek-v3.2-exp", "price_out_cny_per_m"] == 3.0
    assert models.loc["qwen3-coder-480b-a35b", "price_out_cny_per_m"] == 24.0


def test_closed_models_say_their_architecture_is_assumed() -> None:
    table = figures("models").set_index(["id", "attribute"])["source"]
    for model_id in ("qwen3-max", "hunyuan-turbos", "doubao-seed-1.6"):
        for attr in ("total_params_b", "active_params_b", "layers", "kv_bytes_per_token"):
            source = table[model_id, attr]
            # No public config: the row must be flagged and give a range, never pose as a fact.
            assert source.startswith("ASSUMPTION: "), (model_id, attr)
            assert "range" in source, (model_id, attr)
