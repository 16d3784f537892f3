"""`GET {prefix}/divide?a=&b=`: a / b, or a problem (PRODUCT.md §2 Tools)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support import assert_problem

PROPERTY_SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def divide(client, **params):
    return client.get("/api/divide", query_string=params)


def test_ten_divided_by_two_is_five(client):
    response = client.get("/api/divide?a=10&b=2")
    assert response.status_code == 200
    assert response.json == {"result": 5.0}
    assert response.get_data(as_text=True) == '{"result":5.0}'


def test_dividing_by_zero_is_422_naming_b(client):
    body = assert_problem(client.get("/api/divide?a=10&b=0"), 422, "b")
    assert "zero" in body["detail"]
    for zero in ("0.0", "-0", "0e10", "5e-400"):  # the last one rounds to zero
        assert_problem(divide(client, a="1", b=zero), 422, "b")


def test_a_non_numeric_parameter_is_400_naming_it(client):
    body = assert_problem(client.get("/api/divide?a=x&b=2"), 400, "a")
    assert body["errors"][0]["message"] == "must be a decimal number such as 10, -2.5 or 1e3"
    assert_problem(client.get("/api/divide?a=1&b=two"), 400, "b")


def test_missing_parameters_are_400_naming_each(client):
    assert_problem(client.get("/api/divide?b=2"), 400, "a")
    assert_problem(client.get("/api/divide"), 400, "a", "b")
    assert_problem(client.get("/api/divide?a=&b="), 400, "a", "b")


def test_an_unknown_parameter_is_400(client):
    assert_problem(client.get("/api/divide?a=1&b=2&c=3"), 400, "c")


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", "Infinity", "1_000", " 1", "1 ", "0x10", "1e", "\u0661"]
)
def test_nan_infinity_and_other_spellings_are_400(client, value):
    assert_problem(divide(client, a=value, b="1"), 400, "a")


@pytest.mark.parametrize("value", ["1e309", "-1e400", "9" * 400])
def test_a_number_beyond_the_double_range_is_400(client, value):
    body = assert_problem(divide(client, a="1", b=value), 400, "b")
    assert "out of range" in body["errors"][0]["message"]


def test_a_quotient_that_overflows_is_422_not_a_non_json_number(client):
    body = assert_problem(client.get("/api/divide?a=1e308&b=1e-10"), 422)
    assert "too large" in body["detail"]
    assert_problem(client.get("/api/divide?a=-1e308&b=0.5"), 422)


def test_tiny_quotients_and_negative_zero_are_plain_json_numbers(client):
    assert divide(client, a="1e-320", b="1e10").json == {"result": 0.0}
    assert divide(client, a="0", b="-3").get_data(as_text=True) == '{"result":-0.0}'
    assert divide(client, a="-7.5", b="2.5").json == {"result": -3.0}
    assert divide(client, a="+.5", b="1.").json == {"result": 0.5}


def _expect(client, a: str, b: str) -> None:
    """The answer for any two strings: a quotient that round-trips, 400, or 422."""
    response = divide(client, a=a, b=b)
    bad = [name for name, value in (("a", a), ("b", b)) if not _finite_decimal(value)]
    if bad:
        assert_problem(response, 400, *bad)
        return
    numerator, denominator = float(a), float(b)
    if denominator == 0:
        assert_problem(response, 422, "b")
    elif not math.isfinite(numerator / denominator):
        assert_problem(response, 422)
    else:
        assert response.status_code == 200, response.json
        assert response.json["result"] == numerator / denominator


def _finite_decimal(value: str) -> bool:
    return bool(DECIMAL.fullmatch(value)) and math.isfinite(float(value))


@PROPERTY_SETTINGS
@given(a=st.floats(allow_nan=False, allow_infinity=False), b=st.floats(allow_nan=False))
@example(a=10.0, b=2.0)
@example(a=1.7976931348623157e308, b=0.5)
@example(a=5e-324, b=-1e308)
def test_any_two_doubles_divide_exactly_as_python_does(client, a, b):
    _expect(client, repr(a), repr(b))


@PROPERTY_SETTINGS
@given(
    a=st.integers(min_value=-(10**400), max_value=10**400),
    b=st.integers(min_value=-(10**400), max_value=10**400),
)
@example(a=10, b=0)
@example(a=10**308, b=1)
def test_any_integers_however_large(client, a, b):
    _expect(client, str(a), str(b))


@PROPERTY_SETTINGS
@given(a=st.text(max_size=40), b=st.sampled_from(["1", "0", "x", "-2.5e3"]))
@example(a="x", b="1")
def test_any_text_is_a_quotient_400_or_422_never_a_500(client, a, b):
    _expect(client, a, b)
