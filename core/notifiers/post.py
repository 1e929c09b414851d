"""POSTing JSON to a webhook, with errors that never quote its URL (the URL is the credential)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import NotifierError
from ..http import RETRY_STATUSES
from ..redact import register


def secret_url(url: str) -> str:
    """Register a webhook URL as a secret, with its path and query: an HTTP library's error quotes those alone."""
    register(url)
    parts = urlsplit(url)
    register(parts.path)
    register(f"{parts.path}?{parts.query}" if parts.query else None)
    return url


def post_json(url: str, body: dict[str, Any], timeout: float, headers: dict[str, str] | None = None) -> None:
    """POST ``body``; a :class:`NotifierError` naming only the host when it is not accepted (a 2xx answer).

    Refused connections and 429 or 5xx answers may be retried; a timeout may not (the request may have
    arrived: another attempt could deliver it twice), nor another refusal (it would be refused again)."""
    import requests  # here, not at the top: every command loads this plugin, few send anything

    host = urlsplit(secret_url(url)).netloc.rpartition("@")[2] or "the webhook"
    try:
        response = requests.post(url, json=body, timeout=timeout, headers=headers or {})
    except requests.ConnectTimeout:
        raise NotifierError(f"{host}: no connection within {timeout:g} s") from None
    except requests.Timeout:
        raise NotifierError(f"{host}: no answer within {timeout:g} s; it may have been delivered, so it is not "
                            "sent again", retry=False) from None
    except requests.ConnectionError as exc:
        reason = type(exc.__context__ or exc).__name__
        raise NotifierError(f"{host}: cannot connect ({reason})") from None
    except requests.RequestException as exc:
        raise NotifierError(f"{host}: {type(exc).__name__}", retry=False) from None
    if not 200 <= response.status_code < 300:
        said = " ".join(response.text.split())[:200]
        raise NotifierError(f"{host} answered HTTP {response.status_code}" + (f": {said}" if said else ""),
                            retry=response.status_code in RETRY_STATUSES)
