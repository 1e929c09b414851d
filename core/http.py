"""What every HTTP connector shares: one retry policy for transient failures, and its settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from urllib3.util.retry import Retry

from .errors import ConfigError

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


class HttpSettings(BaseModel):
    """The settings every HTTP connector takes; a connector's settings model extends it."""

    retries: int = Field(5, ge=0, description="retries of 429 and 5xx responses and connection errors")
    backoff: float = Field(1.0, ge=0, description="first retry delay in seconds, doubling on each retry")
    max_backoff: float = Field(60.0, ge=0, description="longest wait between retries (Retry-After included), "
                                                       "in seconds")
    timeout: float = Field(60.0, gt=0, description="seconds to wait for one response")
    ca_bundle: str | None = Field(None, description="PEM file of the CAs to verify TLS with (relative to the "
                                                    "config file); default: see the connector's guide")

    def retry(self) -> Retry:
        return retry_policy(self.retries, self.backoff, self.max_backoff)

    def ca_file(self, base_dir: Path) -> Path | None:
        """The configured CA bundle, relative to the config file's folder; a missing file is a ConfigError."""
        if not self.ca_bundle:
            return None
        path = base_dir / self.ca_bundle
        if not path.is_file():
            raise ConfigError(f"ca_bundle: CA bundle file not found: {path}")
        return path
