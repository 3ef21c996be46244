"""Human numbers: every expected string below is written by hand from the value, not copied from
the code's output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridsim.numbers import human, human_count, human_duration_s, human_money_cny, human_percent


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (3.651e12, "", "3.65 T"),  # the requests card the issue found clipped
        (3_290_405_828_098_746, "", "3.29 P"),  # the token count the issue quoted
        (2.13e8, "CNY", "213 M CNY"),
        (36.54e9, "tokens", "36.5 G tokens"),
        (1e16, "", "10.0 P"),
        (999.96, "", "1.00 k"),  # rounds up into the next prefix, never "1000"
        (999_960.0, "", "1.00 M"),
        (999.4, "", "999"),
        (1234.0, "", "1.23 k"),
        (42, "", "42"),  # an int is a count: whole
        (2.0, "", "2.00"),  # a float: three significant figures, whatever its value
        (np.int64(640), "", "640"),
        (0.941, "", "0.941"),
        (0, "", "0"),
        (0.0, "CNY", "0 CNY"),
        (-3.651e12, "", "-3.65 T"),
        (-2.13e8, "CNY", "-213 M CNY"),
        (-0.5, "", "-0.500"),
        (2.5e6, "kWh", "2.50 GWh"),  # an SI unit takes the prefix glued on
        (1195.6, "MW", "1.20 GW"),
        (0.9406, "%", "94.1 %"),
        (14.4, "s", "14.4 s"),
        (None, "", "—"),
        (None, "CNY", "—"),
        (math.nan, "", "—"),
        (math.nan, "%", "—"),
        (math.inf, "", "∞"),
    ],
)
def test_human(value: float | None, unit: str, expected: str) -> None:
    assert human(value, unit) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.05, "50 ms"),
        (0.0123, "12.3 ms"),
        (0.9996, "1.00 s"),  # 999.6 ms rounds to a second, not "1000 ms"
        (14.4, "14.4 s"),
        (59.99, "1.0 min"),  # not "60.0 s"
        (90.0, "1.5 min"),
        (3599.9, "1.0 h"),  # not "60.0 min"
        (7200.0, "2.0 h"),
        (3 * 86400.0, "3.0 d"),
        (730 * 86400.0, "730.0 d"),  # a two-year horizon still reads in days
        (1095 * 86400.0, "3.0 y"),
        (-0.05, "-50 ms"),
        (0, "0 s"),
        (None, "—"),
    ],
)
def test_human_duration_s(seconds: float | None, expected: str) -> None:
    assert human_duration_s(seconds) == expected
    assert human(seconds, "s") == expected


def test_counts_money_and_percentages() -> None:
    assert human_count(412.7) == "413"  # a scaled estimate is still a whole count
    assert human_count(3_651_154_517_800) == "3.65 T"
    assert human_count(999.6) == "1.00 k"
    assert human_count(-12) == "-12"
    assert human_count(None) == "—"
    assert human_money_cny(2.13e8) == "213 M CNY"
    assert human_money_cny(0.0412) == "0.0412 CNY"
    assert human_percent(0.9406) == "94.1 %"
    assert human_percent(0.9406, digits=2) == "94.06 %"
    assert human_percent(1) == "100.0 %"
    assert human_percent(-0.125) == "-12.5 %"
    assert human_percent(None) == "—"


def test_numpy_scalars_read_like_python_numbers() -> None:
    assert human(np.int64(5000)) == "5.00 k"
    assert human(np.float32(0.25), "%") == "25.0 %"
    assert human_count(np.int64(7)) == "7"


@pytest.mark.parametrize("bad", ["3", b"3", True, [1.0], {"x": 1}])
def test_what_is_not_a_number_is_refused_clearly(bad: object) -> None:
    with pytest.raises(
        TypeError, match=r"cannot format .* as a number; pass an int, a float or None"
    ):
        human(bad)
