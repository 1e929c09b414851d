"""Settings of a ``type: salesforce`` connector: how to log in, what to read, how hard to push."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from crmkpi.connector import StartDate
from crmkpi.http import HttpSettings
from crmkpi.models import ENTITIES

AuthMode = Literal["password", "jwt", "client_credentials", "session"]

#: The settings each login mode needs (besides the optional login endpoint).
AUTH_NEEDS: dict[str, tuple[str, ...]] = {
    "password": ("username", "password", "security_token"),
    "jwt": ("username", "consumer_key", "private_key_file"),
    "client_credentials": ("consumer_key", "consumer_secret"),
    "session": ("instance_url", "access_token"),
}


class ObjectOptions(BaseModel):
    """How one sObject maps onto a normalized table (built-in objects have defaults)."""

    model_config = ConfigDict(extra="forbid")

    table: str | None = Field(None, description="normalized table; required for objects without defaults "
                                                "(e.g. Subscription__c -> subscriptions)")
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="normalized column -> field (Field__c, or Relationship.Field); "
                                                "merged over the defaults")
    values: dict[str, dict[str, Any]] = Field(default_factory=dict, description="column -> {field value: value}")
    constants: dict[str, Any] = Field(default_factory=dict, description="column -> value for every row")
    enabled: bool = Field(True, description="false: do not sync this object")

    @field_validator("table")
    @classmethod
    def _known_table(cls, table: str | None) -> str | None:
        if table is not None and table not in ENTITIES:
            raise ValueError(f"unknown table {table!r} (tables: {', '.join(ENTITIES)})")
        return table


class SalesforceSettings(HttpSettings):
    """A Salesforce org read through the REST and Bulk 2.0 APIs."""

    model_config = ConfigDict(extra="forbid")

    auth: AuthMode | None = Field(None, description="password (+ security token), jwt (bearer flow), "
                                                    "client_credentials, or session (an existing instance_url + "
                                                    "access_token); default: from the credentials given")
    username: str | None = Field(None, description="password and jwt logins")
    password: SecretStr | None = Field(None, description="password login")
    security_token: SecretStr | None = Field(None, description="password login: the user's security token")
    consumer_key: str | None = Field(None, description="jwt and client_credentials: the connected app's key")
    consumer_secret: SecretStr | None = Field(None, description="client_credentials: the connected app's secret")
    private_key_file: str | None = Field(None, description="jwt: PEM private key (relative to the config file)")
    access_token: SecretStr | None = Field(None, description="session: an OAuth access token (session id)")
    instance_url: str | None = Field(None, description="session: https://yourorg.my.salesforce.com")
    domain: str | None = Field(None, description="login host: login, test (sandbox) or a My Domain such as "
                                                 "acme.my (-> https://acme.my.salesforce.com)")
    login_url: str | None = Field(None, description="full login endpoint, overrides domain "
                                                    "(default https://login.salesforce.com)")
    jwt_audience: str | None = Field(None, description="jwt: the assertion's aud; default https://test.salesforce.com "
                                                       "for sandboxes, else https://login.salesforce.com")
    api_version: str = Field("59.0", pattern=r"^\d+\.\d$", description="REST API version, e.g. 59.0")
    start_date: StartDate = Field(
        description="first sync reads records changed since this date (ISO 8601, UTC if no offset), "
                    "or 'all' for everything; required so that nothing is silently left out. Users, "
                    "stages, and the accounts and contacts synced records point at arrive from before it too")
    lookback_seconds: int = Field(600, ge=0, description="re-read this much before the stored cursor, for "
                                                         "records whose timestamp lags their commit")
    bulk_threshold: int = Field(10000, ge=1, description="use Bulk API 2.0 when a delta has this many records")
    bulk_page_size: int = Field(50000, ge=1, description="records per Bulk 2.0 result page (maxRecords)")
    bulk_poll_seconds: float = Field(2.0, ge=0, description="wait between Bulk job status checks")
    max_api_calls: int | None = Field(None, ge=1, description="stop the run after this many API requests")
    max_daily_api_share: float | None = Field(
        None, gt=0, le=1, description="stop once the org's daily API usage (Sforce-Limit-Info) reaches this "
                                      "share of its limit, e.g. 0.8")
    timeout: float = Field(120.0, gt=0, description="seconds to wait for one response (Bulk result pages are "
                                                    "large)")
    objects: dict[str, ObjectOptions] = Field(default_factory=dict,
                                              description="per sObject: mapping overrides, custom objects, "
                                                          "enabled: false")

    @model_validator(mode="after")
    def _auth_complete(self) -> SalesforceSettings:
        if self.auth is None:
            self.auth = _implied_auth(self)
        missing = [name for name in AUTH_NEEDS[self.auth] if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(f"auth {self.auth!r} needs {', '.join(missing)}")
        if self.auth == "client_credentials" and not self.login_url and self.domain in (None, "login", "test"):
            raise ValueError("auth 'client_credentials' needs your My Domain as domain (e.g. acme.my) or login_url")
        return self

    def audience(self) -> str:
        """The JWT bearer assertion's ``aud``: Salesforce expects its login server, not a My Domain."""
        if self.jwt_audience:
            return self.jwt_audience
        host = urlsplit(self.login_endpoint()).hostname or ""
        if host == "test.salesforce.com" or ".sandbox." in host or host.endswith(".cs.salesforce.com"):
            return "https://test.salesforce.com"
        if host.endswith(".salesforce.com"):
            return "https://login.salesforce.com"
        return self.login_endpoint()  # a community site or a test server: itself

    def login_endpoint(self) -> str:
        """Base URL that password, JWT and client-credentials logins post to."""
        if self.login_url:
            return self.login_url.rstrip("/")
        return f"https://{self.domain or 'login'}.salesforce.com"


def _implied_auth(settings: SalesforceSettings) -> AuthMode:
    """The login mode the given credentials point to, so ``auth:`` is only needed to disambiguate."""
    if settings.access_token is not None:
        return "session"
    if settings.private_key_file:
        return "jwt"
    if settings.password is not None:
        return "password"
    if settings.consumer_secret is not None:
        return "client_credentials"
    raise ValueError("missing credentials: give instance_url and access_token, or username, password and "
                     "security_token (or see auth: for jwt and client_credentials)")
