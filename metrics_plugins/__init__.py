"""The built-in KPI catalog, registered through entry points like any third-party plugin."""
