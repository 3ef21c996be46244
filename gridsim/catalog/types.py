"""Typed catalogue entries: accelerators, LLM models and sites.

Every numeric field declares its unit in ``json_schema_extra`` (key ``unit``); the packaged
CSV files (long format: ``id, attribute, value, unit, source``) must state the same unit for
each figure, and the loader checks that they do. Scenario files can add or override entries
with the same field names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict


def unit(u: str, description: str = "") -> JsonDict:
    """Field metadata: the unit a figure is stated in (and, optionally, what it means)."""
    return {"unit": u, "description": description} if description else {"unit": u}


class Entry(BaseModel):
    """Common base: frozen, strict about unknown keys, with an id and provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", description="lower-case identifier")
    name: str = ""
    source: str = Field(default="", description="where the figures come from")


class Accelerator(Entry):
    """An AI accelerator card (one device)."""

    vendor: str = ""
    peak_tflops: float = Field(gt=0, json_schema_extra=unit("TFLOPS", "dense BF16/FP16 peak"))
    hbm_gb: float = Field(gt=0, json_schema_extra=unit("GB"))
    hbm_bandwidth_tb_per_s: float = Field(gt=0, json_schema_extra=unit("TB/s"))
    tdp_w: float = Field(gt=0, json_schema_extra=unit("W"))
    idle_power_fraction: float = Field(
        default=0.3, ge=0, le=1, json_schema_extra=unit("1", "idle power as a share of TDP")
    )
    price_cny: float = Field(ge=0, json_schema_extra=unit("CNY", "price of one card"))
    per_server: int = Field(default=8, gt=0, json_schema_extra=unit("count"))
    interconnect_gb_per_s: float = Field(
        default=400.0, gt=0, json_schema_extra=unit("GB/s", "scale-up link bandwidth per card")
    )


class LLMModel(Entry):
    """A large language model as a serving workload."""

    org: str = ""
    architecture: Literal["dense", "moe"] = "moe"
    total_params_b: float = Field(gt=0, json_schema_extra=unit("1e9 params"))
    active_params_b: float = Field(gt=0, json_schema_extra=unit("1e9 params"))
    layers: int = Field(gt=0, json_schema_extra=unit("count"))
    kv_bytes_per_token: float = Field(
        gt=0,
        json_schema_extra=unit("bytes", "KV cache per token, all layers, at serving precision"),
    )
    bytes_per_param: float = Field(
        default=1.0, gt=0, json_schema_extra=unit("bytes", "weight precision at serving")
    )
    context_tokens: int = Field(gt=0, json_schema_extra=unit("tokens"))
    price_in_cny_per_m: float = Field(ge=0, json_schema_extra=unit("CNY/1e6 tokens"))
    price_cache_hit_cny_per_m: float = Field(ge=0, json_schema_extra=unit("CNY/1e6 tokens"))
    price_out_cny_per_m: float = Field(ge=0, json_schema_extra=unit("CNY/1e6 tokens"))


SiteKind = Literal["cluster", "supercomputer", "ai_centre", "province"]


class Site(Entry):
    """A place: a national cluster, a supercomputing or AI centre, or a province (capital)."""

    kind: SiteKind
    lat: float = Field(ge=-90, le=90, json_schema_extra=unit("deg"))
    lon: float = Field(ge=-180, le=180, json_schema_extra=unit("deg"))
    province: str = Field(default="", description="province id the site lies in")
    hub: str = Field(default="", description="national hub id, if the site belongs to one")
    hub_role: Literal["", "east", "west"] = ""
    population_10k: float | None = Field(default=None, ge=0, json_schema_extra=unit("1e4 persons"))
    gdp_100m_cny: float | None = Field(default=None, ge=0, json_schema_extra=unit("1e8 CNY"))
    carbon_g_per_kwh: float | None = Field(default=None, ge=0, json_schema_extra=unit("gCO2/kWh"))
    price_cny_per_kwh: float | None = Field(default=None, ge=0, json_schema_extra=unit("CNY/kWh"))
    pue_target: float | None = Field(default=None, ge=1, json_schema_extra=unit("1"))


CATALOG_KINDS: dict[str, type[Entry]] = {
    "accelerators": Accelerator,
    "models": LLMModel,
    "sites": Site,
}
