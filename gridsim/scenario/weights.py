"""Regions' raw demand weights: read from the scenario and its catalogue, checked when the
scenario is validated (so a missing figure is reported with its place) and normalised by the
demand model (``gridsim.demand.region_weights``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridsim.catalog import Catalog
    from gridsim.scenario.schema import Scenario


def raw_region_weights(scenario: Scenario, catalog: Catalog) -> list[float]:
    """One weight per region, in ``scenario.regions`` order, with a positive total.

    ``gdp`` and ``population`` read the region's catalogue site (``region.site`` or its id);
    ``given`` reads ``region.share``; ``equal`` is 1 each. ValueError says what is missing.
    """
    how = scenario.demand.region_weights
    regions = scenario.regions
    if how == "equal":
        raw = [1.0] * len(regions)
    elif how == "given":
        missing = [r.id for r in regions if r.share is None]
        if missing:
            raise ValueError(f"given needs a share on every region; missing on {missing}")
        raw = [float(r.share or 0.0) for r in regions]
    else:
        field = "gdp_100m_cny" if how == "gdp" else "population_10k"
        raw, missing = [], []
        for region in regions:
            site = catalog.sites.get(region.site or region.id)
            value = getattr(site, field) if site is not None else None
            if value is None:
                missing.append(region.id)
            raw.append(float(value or 0.0))
        if missing:
            raise ValueError(
                f"{how} needs {field} from each region's catalogue site; "
                f"none for {missing}. Give site: <province id>, or use equal or given weights"
            )
    if not sum(raw) > 0:
        raise ValueError(f"region weights ({how}) add up to 0; give some region a positive weight")
    return raw
