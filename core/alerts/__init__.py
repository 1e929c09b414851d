"""Alerts (docs/alerts.md): rules on metric results, evaluated per segment cell, with a state per rule × segment.

``rules`` (the config's ``alerts:`` section), ``conditions`` (pure verdicts: threshold, change, target,
anomaly, the volume gate), ``windows`` (what each rule computes, one engine run per metric, params, grain and
segment), ``state`` (the ``alert_states`` table and the ok → firing → ok transitions), ``evaluate`` (all of it,
sending through the notification deliveries), ``commands`` (``crmkpi alerts``).
"""
