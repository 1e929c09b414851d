"""The dashboard ``crmkpi serve`` shows at ``/``: server-rendered pages of KPI cards, charts and tables.

- :mod:`.routes`: the pages' URLs and their query, kept answers, one-line errors;
- :mod:`.views`: what a page shows, computed by the engine (the same runs as ``crmkpi report``);
- :mod:`.pages`: the HTML, built from :mod:`crmkpi.present`'s cards and SVG charts;
- :mod:`.auth`: the login form that keeps the API token in a cookie.
"""
