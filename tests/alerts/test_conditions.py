"""The pure verdicts of crmkpi.alerts.conditions, with real numbers."""

from __future__ import annotations

import pytest

from crmkpi.alerts.conditions import Verdict, anomaly, change, gate, robust_band, target_status, threshold

HISTORY = [10.0, 12.0, 11.0, 13.0, 12.0, 11.0]  # median 11.5; deviations 1.5 .5 .5 1.5 .5 .5 → MAD 0.5


def test_threshold_fires_strictly_beyond_a_bound():
    assert threshold(0.25, None, 0.3) == Verdict("firing", "0.25 is below 0.3", 0.25)
    assert threshold(0.3, None, 0.3).state == "ok"
    assert threshold(120.0, 100.0, None) == Verdict("firing", "120 is above 100", 120.0)
    assert threshold(50.0, 100.0, 10.0) == Verdict("ok", "50 is ≤ 100 and ≥ 10", 50.0)
    assert threshold(5.0, 100.0, 10.0).state == "firing"


@pytest.mark.parametrize(("value", "before", "direction", "state"), [
    (0.36, 0.48, "higher", "firing"),   # -25% of a higher-is-better metric
    (0.432, 0.48, "higher", "ok"),      # -10%
    (0.60, 0.48, "higher", "ok"),       # better
    (60.0, 48.0, "lower", "firing"),    # +25% of a lower-is-better metric (a longer cycle) is worse
    (36.0, 48.0, "lower", "ok"),        # -25% of it is better
    (0.384, 0.48, "higher", "firing"),  # exactly -20%: "by 20% or more"
])
def test_change_is_judged_in_the_metrics_direction(value, before, direction, state):
    assert change(value, before, "the previous period (2025-11)", 0.2, direction).state == state


def test_change_says_how_much_worse():
    verdict = change(60.0, 48.0, "a year ago (2024-12)", 0.2, "lower")
    assert verdict.reason == "60 vs 48 a year ago (2024-12) (+25.0%; lower is better): worse by 25.0%, at least 20.0%"


def test_change_without_a_comparable_value_is_not_evaluated():
    assert change(5.0, None, "the previous period (2025-11)", 0.2, "higher") == \
        Verdict("not_evaluated", "no value for the previous period (2025-11) to compare with", 5.0)
    assert change(5.0, 0.0, "the previous period (2025-11)", 0.2, "higher").reason == \
        "the previous period (2025-11) was 0: no relative change"


def test_robust_band_is_the_median_plus_minus_scaled_mads():
    band = robust_band(HISTORY, 3.0)
    assert (band.median, band.mad) == (11.5, 0.5)
    assert band.low == pytest.approx(11.5 - 3 * 1.4826 * 0.5)
    assert band.high == pytest.approx(11.5 + 2.2239)


def test_anomaly_fires_outside_the_band_and_not_inside():
    assert anomaly([*HISTORY, 14.0], 6, 3.0).state == "firing"  # above 13.7239
    assert anomaly([*HISTORY, 9.0], 6, 3.0).state == "firing"   # below 9.2761
    ok = anomaly([*HISTORY, 13.5], 6, 3.0)
    assert ok.state == "ok" and ok.reason == ("13.5 vs the band 9.2761..13.7239 (median 11.5, MAD 0.5 of 6 periods): "
                                              "inside")


def test_anomaly_band_comes_from_the_trailing_periods_only():
    """An outlier before the trailing window does not widen the band; the latest is not part of it."""
    assert anomaly([1000.0, *HISTORY, 14.0], 6, 3.0).state == "firing"


def test_anomaly_with_too_few_values_says_why():
    verdict = anomaly([None, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0], 6, 3.0)
    assert verdict == Verdict("not_evaluated", "too few periods: 5 of the 6 before the latest have a value (6 needed)",
                              9.0)
    assert anomaly([*HISTORY, None], 6, 3.0).reason == "no value for the latest period"


def test_a_flat_history_has_no_band_unless_min_spread_gives_one():
    flat = [5.0] * 6
    verdict = anomaly([*flat, 6.0], 6, 3.0)
    assert verdict.state == "not_evaluated"
    assert verdict.reason == ("no spread: the MAD of the 6 values before is 0 (median 5); set anomaly.min_spread to "
                              "alert on a move")
    assert anomaly([*flat, 6.0], 6, 3.0, min_spread=0.5).state == "firing"
    assert anomaly([*flat, 5.4], 6, 3.0, min_spread=0.5).state == "ok"
    # MAD 0 with some spread (more than half the values equal): the floor decides too
    assert anomaly([5.0, 5.0, 5.0, 5.0, 9.0, 1.0, 5.0], 6, 3.0).state == "not_evaluated"


def test_gate_stops_errors_nulls_and_low_volume():
    assert gate({"value": 0.5, "denominator": 12.0, "error": None}, 30) == \
        Verdict("not_evaluated", "volume 12 below min_volume 30", 0.5)
    assert gate({"value": 0.5, "denominator": 30.0, "error": None}, 30) is None
    assert gate({"value": 0.5, "denominator": None, "error": None}, None) is None
    assert gate({"value": None, "note": "no closed deals", "error": None}, None).reason == "no value (no closed deals)"
    assert gate({"value": None, "error": "no fx rate for EUR"}, 30).reason == "metric error: no fx rate for EUR"


def test_target_status_fires_while_not_on_track():
    target = {"value": 0.45, "period": "2025", "status": "at_risk"}
    assert target_status(0.44, target) == Verdict("firing", "0.44 against the target 0.45 (2025): at_risk", 0.44)
    assert target_status(0.5, {**target, "status": "on_track"}).state == "ok"
    assert target_status(0.5, {**target, "status": "achieved"}).state == "ok"
    assert target_status(0.5, {**target, "status": "missed"}).state == "firing"
    assert target_status(0.5, None).reason == "no target for this cell and period"
