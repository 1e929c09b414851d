"""Settings of a ``type: hubspot`` connector."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from crmkpi.connector import StartDate
from crmkpi.http import HttpSettings

from .objects import OBJECTS

#: The HubSpot objects a connector can sync; ``leads`` is the HubSpot leads object.
ObjectName = Literal["owners", "pipelines", "companies", "contacts", "deals", "deal_stage_history", "tickets",
                     "leads"]


class ObjectOptions(BaseModel):
    """Per-object choices: whether to sync it, extra properties, and column overrides."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="sync this object")
    properties: list[str] = Field(default_factory=list,
                                  description="more HubSpot properties to request (unmapped ones land in `extra`)")
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="normalized column -> HubSpot property, overriding the default")


class LeadOptions(BaseModel):
    """Where the ``leads`` table comes from."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["lifecycle", "object", "off"] = Field(
        "lifecycle", description="lifecycle: contacts that ever reached the lead stage; object: HubSpot's "
                                 "leads object; off: no leads")
    became_lead_property: str = Field("hs_lifecyclestage_lead_date",
                                      description="contact date property: when it became a lead (created_at)")
    converted_property: str = Field("hs_lifecyclestage_customer_date",
                                    description="contact date property: when the lead converted (converted_at)")


class HubSpotSettings(HttpSettings):
    model_config = ConfigDict(extra="forbid")

    access_token: SecretStr | None = Field(None, description="private-app access token (or use OAuth below)")
    client_id: str | None = Field(None, description="OAuth app client id")
    client_secret: SecretStr | None = Field(None, description="OAuth app client secret")
    refresh_token: SecretStr | None = Field(None, description="OAuth refresh token of the installed app")
    host: str = Field("https://api.hubapi.com", description="API base URL (a proxy or a test server)")
    start_date: StartDate = Field(
        description="first sync reads records modified since this date, or `all` for everything")
    lookback_minutes: float = Field(10, ge=0, description="each incremental search re-reads this much before "
                                                          "the cursor, for records HubSpot indexes late")
    window_days: float = Field(30, gt=0, description="length of one search window")
    requests_per_second: float = Field(9, gt=0, description="budget of list, batch and other calls")
    search_requests_per_second: float = Field(4, gt=0, description="budget of search calls (HubSpot: 5/s)")
    leads: LeadOptions = Field(default_factory=LeadOptions, description="how leads are found")
    objects: dict[ObjectName, ObjectOptions] = Field(default_factory=dict, description="per-object options")

    @field_validator("host")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or len(value.split("://", 1)[1].strip("/")) == 0:
            raise ValueError(f"expected an http(s) URL such as https://api.hubapi.com, got {value!r}")
        return value.rstrip("/")

    @field_validator("objects")
    @classmethod
    def _known_columns(cls, objects: dict[str, ObjectOptions]) -> dict[str, ObjectOptions]:
        for name, options in objects.items():
            spec = OBJECTS.get(name)
            if spec is None and options.columns:
                raise ValueError(f"{name}: its columns are fixed, `columns:` is not supported")
        return objects

    @model_validator(mode="after")
    def _one_auth(self) -> HubSpotSettings:
        oauth = [self.client_id, self.client_secret, self.refresh_token]
        if self.access_token is not None and any(oauth):
            raise ValueError("give either access_token or client_id/client_secret/refresh_token, not both")
        if self.access_token is None:
            if not any(oauth):
                raise ValueError("missing credentials: set access_token (private app) or client_id, "
                                 "client_secret and refresh_token (OAuth)")
            missing = [n for n, v in zip(("client_id", "client_secret", "refresh_token"), oauth) if not v]
            if missing:
                raise ValueError(f"OAuth needs {', '.join(missing)} too")
        elif not self.access_token.get_secret_value().strip():
            raise ValueError("access_token is empty")
        return self

    def options(self, name: str) -> ObjectOptions:
        return self.objects.get(name, ObjectOptions())
