"""The config's alerts: section: each mistake is one line, with a did-you-mean where one helps."""

from __future__ import annotations

import pytest

from conftest import KpiProject

CHANNELS = "channels:\n  sales: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"


@pytest.mark.parametrize(("alerts", "error"), [
    ("  r: {metric: win_rat, threshold: {below: 0.3}}",
     "alerts.r.metric: unknown metric 'win_rat'; did you mean 'win_rate'? (see `crmkpi metrics list`)"),
    ("  r: {metric: win_rate, threshold: {below: 0.3}, channels: [slaes]}",
     "alerts.r.channels: unknown channel 'slaes'; did you mean 'sales'? (configured: sales)"),
    ("  r: {metric: win_rate, anomaly: {periods: 4}}",
     "alerts.r.anomaly.periods: 4 is too few for a robust band: 6 or more"),
    ("  r: {metric: win_rate, threshold: {below: 0.3}, change: {against: previous, worse_by: 20%}}",
     "alerts.r: give exactly one condition of threshold, change, target, anomaly (got threshold and change)"),
    ("  r: {metric: win_rate}",
     "alerts.r: give exactly one condition of threshold, change, target, anomaly (got none)"),
    ("  r: {metric: win_rate, threshhold: {below: 0.3}}",
     "alerts.r.threshhold: unknown field; did you mean 'threshold'?"),
    ("  r: {metric: win_rate, change: {against: last, worse_by: 20%}}",
     "alerts.r.change.against: input should be 'previous' or 'year_ago'"),
    ("  r: {metric: win_rate, change: {against: previous, worse_by: twenty}}",
     "alerts.r.change.worse_by: input should be a valid number, unable to parse string as a number"),
    ("  r: {metric: win_rate, threshold: {}}", "alerts.r.threshold: give above and/or below, e.g. {below: 0.3}"),
    ("  r: {metric: win_rate, threshold: {below: 0.3}, repeat_every: daily}",
     "alerts.r: 'daily' is not a duration: write e.g. 30m, 12h, 1d or 2w"),
    ("  r: {metric: win_rate, target: changed}", "alerts.r.target: input should be 'status_change'"),
    ("  r: {metric: win_rate, threshold: {below: 0.3}, grain: hour}",
     "alerts.r.grain: input should be 'day', 'week', 'month', 'quarter' or 'year'"),
    ("  r: {metric: win_rate, threshold: {below: 0.3}, params: {by: x}}",
     "alerts.r.params: param by: 'x' is not one of count, amount"),
])
def test_a_wrong_rule_is_one_line(kpi: KpiProject, alerts: str, error: str):
    kpi.configure(CHANNELS + "alerts:\n" + alerts + "\n")
    assert kpi.fails("validate") == error


@pytest.mark.parametrize(("schedule", "error"), [
    ("    metrics: [win_rate]\n    alerts: [win-rate-lo]\n",
     "schedules.s.alerts: unknown alert rule 'win-rate-lo'; did you mean 'win-rate-low'? (configured: win-rate-low)"),
    ("    metrics: [win_rate]\n    on_failure: [ops]\n",
     "schedules.s.on_failure: unknown channel 'ops' (configured: sales)"),
])
def test_a_schedules_alerts_and_on_failure_name_what_exists(kpi: KpiProject, schedule: str, error: str):
    kpi.configure(CHANNELS + "alerts:\n  win-rate-low: {metric: win_rate, threshold: {below: 0.3}}\n"
                  "schedules:\n  s:\n    cron: '0 6 * * *'\n" + schedule)
    assert kpi.fails("validate") == error


def test_a_schedule_of_alerts_only_is_something_to_do(kpi: KpiProject):
    kpi.configure("alerts:\n  low: {metric: win_rate, threshold: {below: 0.3}}\n"
                  "schedules:\n  s: {cron: '0 6 * * *', alerts: [low]}\n")
    result = kpi.invoke("validate")
    assert result.exit_code == 0, result.output
