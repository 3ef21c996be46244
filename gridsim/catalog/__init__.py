"""Packaged catalogues: accelerators, LLM models and sites, each figure with unit and source."""

from gridsim.catalog.loader import (
    Catalog,
    CatalogError,
    builtin_catalog,
    declared_units,
    figures,
    load_entries,
    parse_entries,
)
from gridsim.catalog.types import CATALOG_KINDS, Accelerator, Entry, LLMModel, Site, SiteKind

__all__ = [
    "CATALOG_KINDS",
    "Accelerator",
    "Catalog",
    "CatalogError",
    "Entry",
    "LLMModel",
    "Site",
    "SiteKind",
    "builtin_catalog",
    "declared_units",
    "figures",
    "load_entries",
    "parse_entries",
]
