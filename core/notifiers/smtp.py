"""``type: email``: the message as an email over SMTP, an HTML body with a plain-text alternative."""

from __future__ import annotations

import html
import socket
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ..errors import NotifierError
from ..notify import Message, NotifierType
from ..redact import register

if TYPE_CHECKING:
    from email.message import EmailMessage


class EmailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str = Field(description="the SMTP server")
    port: int | None = Field(None, ge=1, le=65535, description="default: 465 with security: ssl, else 587")
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls: upgrade the connection (port 587); ssl: TLS from the start (port 465); "
                                "none: plain text, for a relay on this host or network only")
    username: str | None = Field(None, description="login; none: send without logging in")
    password: SecretStr | None = Field(None, description="with username; a secret: write ${VAR}")
    sender: str = Field(alias="from", description="the From address, e.g. 'crmkpi <kpi@example.com>'")
    to: list[str] = Field(min_length=1, description="the recipients")
    subject_prefix: str = Field("[crmkpi] ", description="put before the message's title in the subject")
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the server, each step")

    @model_validator(mode="after")
    def _login_whole(self) -> EmailSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


def email(message: Message, settings: EmailSettings) -> EmailMessage:
    """The email: a plain-text part and an HTML alternative (the message's own HTML, or its text and facts)."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    mail = EmailMessage()
    mail["Subject"] = " ".join(f"{settings.subject_prefix}{message.title}".split())
    mail["From"] = settings.sender
    mail["To"] = ", ".join(settings.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain="crmkpi")
    if message.id:
        mail["X-Crmkpi-Delivery"] = message.id
    facts = message.facts() + ([("link", message.link)] if message.link else [])
    mail.set_content("\n".join([message.text, "", *(f"{label}: {text}" for label, text in facts)]).rstrip() + "\n")
    mail.add_alternative(message.html or _html(message, facts), subtype="html")
    return mail


def _html(message: Message, facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th align=\"left\">{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
                   for label, text in facts)
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in message.text.split("\n\n"))
    return (f"<html><body><h2>{html.escape(message.title)}</h2>{paragraphs}"
            + (f"<table>{rows}</table>" if rows else "") + "</body></html>\n")


def send(message: Message, settings: EmailSettings) -> None:
    """Send it; a refused login or recipient is no transient failure (not retried), a server away is."""
    import smtplib  # here, not at the top: every command loads this plugin, few send mail
    import ssl

    password = settings.password.get_secret_value() if settings.password else None
    register(password)
    port = settings.port or (465 if settings.security == "ssl" else 587)
    where = f"{settings.host}:{port}"
    try:
        if settings.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, port, timeout=settings.timeout,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(settings.host, port, timeout=settings.timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise NotifierError(f"{where}: cannot connect ({_reason(exc)})") from None
    try:
        with client:
            if settings.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.username and password:
                client.login(settings.username, password)
            refused = client.send_message(email(message, settings))
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifierError(f"{where}: login refused ({exc.smtp_code})", retry=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise NotifierError(f"{where}: every recipient refused: {', '.join(exc.recipients)}", retry=False) from None
    except smtplib.SMTPResponseException as exc:
        said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        # 4xx: the server asks to try again later; 5xx: it will refuse again
        raise NotifierError(f"{where}: {exc.smtp_code} {' '.join(said.split())}",
                            retry=400 <= exc.smtp_code < 500) from None
    except socket.timeout:
        raise NotifierError(f"{where}: no answer within {settings.timeout:g} s; it may have been sent, so it is not "
                            "sent again", retry=False) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise NotifierError(f"{where}: {_reason(exc)}", retry=False) from None
    if refused:
        raise NotifierError(f"{where}: sent, but refused for {', '.join(sorted(refused))}", retry=False)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


NOTIFIER = NotifierType("email", "Sends the message by email over SMTP (HTML with a plain-text alternative)",
                        EmailSettings, send)
