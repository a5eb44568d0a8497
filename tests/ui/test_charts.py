"""Charts drawn on the server: the numbers a person reads off them, and what assistive technology hears."""

from __future__ import annotations

import re

import pytest

from idstitch.web.charts import Series, bar_chart, column_chart, nice_ticks, period_label


@pytest.mark.parametrize(
    "top, ticks",
    [
        pytest.param(0, [0, 1], id="empty"),
        pytest.param(3, [0, 1, 2, 3], id="small"),
        pytest.param(46, [0, 20, 40, 60], id="tens"),
        pytest.param(1234, [0, 500, 1000, 1500], id="thousands"),
    ],
)
def test_the_axis_uses_round_numbers_covering_the_largest_bar(top: int, ticks: list[int]):
    assert nice_ticks(top) == ticks


def test_periods_are_labelled_for_people():
    assert period_label("2026-11-03", "day") == "Nov 3"
    assert period_label("2026-11-01", "month") == "Nov 2026"
    assert period_label("", None) == "total"


def test_a_stacked_column_chart_has_one_bar_per_value_with_its_number():
    svg = column_chart("c", "Sign-ups per week by plan", ["Nov 2", "Nov 9"],
                       [Series("pro", (3, 0), "#111111"), Series("free", (5, 2), "#222222")])
    assert svg.startswith('<svg class="chart" id="c"')
    assert 'role="img"' in svg and '<title id="c-title">Sign-ups per week by plan</title>' in svg
    assert re.findall(r"<title>([^<]+)</title></rect>", svg) == ["Nov 2 · pro: 3", "Nov 2 · free: 5", "Nov 9 · free: 2"]
    assert "Nov 2 to Nov 9; pro: 3, free: 7." in svg


def test_labels_are_escaped():
    svg = bar_chart("b", "<plans>", [("<script>", 1, "#000000")])
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
