"""Presentation of KPI results for people: card models, server-rendered SVG charts and HTML pages.

``crmkpi report`` writes a self-contained HTML file from these pieces, and the dashboard of
``crmkpi serve`` (:mod:`crmkpi.service.web`) builds its pages from them. The layers are kept
apart so that each can be reused alone:

- :mod:`.build` runs the engine for a report (the period with its comparisons and
  targets, a trend series, an optional breakdown, of one segment when filtered) and assembles a :class:`.cards.Report`;
- :mod:`.cards` turns engine results into cards: formatted value, direction-aware
  changes, target status and progress, trend points with a target line;
- :mod:`.svg` draws sparklines and line charts as inline SVG (no script, no fetch);
- :mod:`.markup` builds escaped HTML; :mod:`.page` lays a report out as one HTML file.
"""
