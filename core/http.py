"""What every HTTP connector shares: one retry policy for transient failures."""

from __future__ import annotations

from urllib3.util.retry import Retry

#: Statuses worth retrying: rate limited, and the server or a proxy failing for now.
RETRY_STATUSES = (429, 500, 502, 503, 504)


class CappedRetry(Retry):
    """Honours ``Retry-After`` up to ``backoff_max``: a daily-limit 429 may ask for hours."""

    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.backoff_max)


def retry_policy(retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0) -> Retry:
    """Retry transient failures with exponential backoff, honouring ``Retry-After``.

    POST is included: the CRM APIs use it for reads (HubSpot search and batch read,
    Salesforce Bulk jobs), and urllib3's default leaves it out. No wait is longer than
    ``max_backoff``, whatever ``Retry-After`` says. A final failed response is returned,
    not raised, so the client library turns it into its own error.
    """
    return CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}),
        backoff_factor=backoff,
        backoff_max=max_backoff,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
