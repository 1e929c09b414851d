"""The service side of crmkpi: schedules, the jobs they run, and the commands that show them.

``schedule`` turns a cron expression and a time zone into occurrences (wall-clock times,
DST-correct); ``jobs`` runs a schedule's steps and records each run in ``job_runs``;
``commands`` is the ``crmkpi jobs`` command group.
"""
