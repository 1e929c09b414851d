"""Bulk API 2.0 query jobs: create a queryAll job, wait for it, read its CSV result pages.

simple-salesforce's bulk2 handler keeps the session id it was created with and reads
every page in one generator, so a resumed sync could not continue a job. These calls go
through :meth:`SalesforceClient.rest`, which re-logs in when the session expires, and
take the job id and locator from the caller, who checkpoints them.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Callable, Iterator

import requests

from crmkpi.errors import ConnectorError

from .client import SalesforceClient

DONE = "JobComplete"
FAILED = ("Failed", "Aborted")


def start_job(client: SalesforceClient, soql: str) -> str:
    """A new queryAll job (deleted records included); returns its id."""
    body = {"operation": "queryAll", "query": soql, "columnDelimiter": "COMMA", "lineEnding": "LF"}
    return client.rest("POST", "jobs/query", "a Bulk 2.0 job", json=body).json()["id"]


def job_state(client: SalesforceClient, job_id: str) -> str | None:
    """The job's state, or None when Salesforce no longer knows it (deleted or expired)."""
    response = client.rest("GET", f"jobs/query/{job_id}", "a Bulk 2.0 job status", allow=(404,))
    return None if response.status_code == 404 else response.json()["state"]


def wait_for(client: SalesforceClient, job_id: str,
             report: Callable[[str], None] = lambda message: None) -> None:
    """Poll until the job is done; ``report`` hears its state and progress after each poll."""
    while True:
        info = client.rest("GET", f"jobs/query/{job_id}", "a Bulk 2.0 job status").json()
        report(f"Bulk 2.0 job {job_id} {info['state']}, "
               f"{int(info.get('numberRecordsProcessed') or 0):,} records processed")
        if info["state"] == DONE:
            return
        if info["state"] in FAILED:
            reason = info.get("errorMessage") or "no reason given"
            raise ConnectorError(f"Bulk 2.0 job {job_id} ended {info['state']}: {reason}")
        client.pause()


def result_pages(client: SalesforceClient, job_id: str, locator: str | None,
                 page_size: int) -> Iterator[tuple[Iterator[dict[str, str]], str | None]]:
    """(rows of one result page, locator of the next page or None), starting at ``locator``.

    A page is at most ``page_size`` records. Its rows are parsed as the body arrives:
    a whole page held as bytes and text would cost about a kilobyte per record.
    """
    while True:
        params: dict[str, Any] = {"maxRecords": page_size}
        if locator:
            params["locator"] = locator
        response = client.rest("GET", f"jobs/query/{job_id}/results", "Bulk 2.0 results", params=params,
                               headers={"Accept": "text/csv"}, stream=True)
        following = response.headers.get("Sforce-Locator")
        following = None if following in (None, "", "null") else following
        try:
            yield csv.DictReader(_lines(response)), following
        finally:
            response.close()
        if following is None:
            return
        locator = following


def _lines(response: requests.Response) -> Iterator[str]:
    """The body's text lines as they arrive, without the NUL bytes Bulk results may hold."""
    response.raw.decode_content = True  # gzip, if the server compressed it
    response.raw.auto_close = False  # else it closes itself at the end, under the text wrapper's feet
    for line in io.TextIOWrapper(response.raw, encoding="utf-8", newline=""):
        yield line.replace("\x00", "")


def delete_job(client: SalesforceClient, job_id: str) -> None:
    """Remove a finished job's results from the org (they count against its storage for days)."""
    client.rest("DELETE", f"jobs/query/{job_id}", "deleting a Bulk 2.0 job")
