"""The dashboard's login: the API token, typed once into a form, kept in a cookie.

A browser cannot send a bearer header on a link, so the login form sets the token as an
``HttpOnly`` cookie (``SameSite=Strict``: a page of another site cannot make the browser use it)
and a page accepts either the cookie or the bearer header. Without a configured token the
dashboard is open, as the API is; ``crmkpi serve`` refuses a non-loopback address then.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

COOKIE = "crmkpi_token"
#: A login form is a token and a path: anything longer is not one.
MAX_FORM_BYTES = 4096


class LoginRequired(Exception):
    """A page asked for without a valid token: answered with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def signed_in(request: Request, token: str | None) -> bool:
    """Whether the request carries the token (cookie or bearer header); always, when there is none."""
    if token is None:
        return True
    given = request.cookies.get(COOKIE)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if given is None and scheme.lower() == "bearer":
        given = credentials
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def require(token: str | None):
    """A dependency that lets a page through only when :func:`signed_in`."""
    async def check(request: Request) -> None:
        if not signed_in(request, token):
            query = f"?{request.url.query}" if request.url.query else ""
            raise LoginRequired(request.url.path + query)
    return check


def to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(exc.next_path, safe='')}", status_code=303)


def safe_next(path: str | None) -> str:
    """Where to go after logging in: a path of this site only (``//evil.example`` is another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


async def login_form(request: Request) -> tuple[str, str]:
    """The token and the next path posted by the login form (``application/x-www-form-urlencoded``)."""
    body = await request.body()
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
    return (fields.get("token") or [""])[0], safe_next((fields.get("next") or [""])[0])


def set_login(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/")


def clear_login(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
