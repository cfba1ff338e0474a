"""Pure rules of the console's session cookie, CSRF check and response headers -- no I/O, so the unit
tests pin them down exactly.

The CSRF token is derived from the session token (an HMAC keyed by it): one per session, nothing
stored, and unguessable by a page that cannot read the HttpOnly cookie. A state-changing form must
also come from our own origin, by the browser's Sec-Fetch-Site or, failing that, its Origin header."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta

from starlette.responses import Response

SESSION_COOKIE = "dpm_session"
LOGIN_COOKIE = "dpm_login"  # the login form's own CSRF token (double submit): there is no session yet
COOKIE_PATH = "/console"  # the REST API never reads cookies; the console's are not sent to it
_CSRF_LABEL = b"dpm-console-csrf-v1"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on our own form posts
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def csrf_token(session_token: str) -> str:
    """The session's CSRF token: an HMAC of a fixed label keyed by the session token."""
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, submitted: str | None) -> bool:
    """Whether a form carried this session's token (compared in constant time)."""
    return bool(submitted) and hmac.compare_digest(csrf_token(session_token), submitted or "")


def login_nonce() -> str:
    return secrets.token_urlsafe(32)


def nonce_ok(cookie: str | None, submitted: str | None) -> bool:
    """The login form's double submit: the cookie we set and the field we rendered must agree."""
    return bool(cookie) and bool(submitted) and hmac.compare_digest(cookie or "", submitted or "")


def same_origin(headers: Mapping[str, str], origin: str) -> bool:
    """A state-changing request comes from our own pages: Sec-Fetch-Site says so where the browser
    sends it; otherwise the Origin header must be ours. A request with neither is refused too (every
    browser of the last years sends one of them on a form post)."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    sent = headers.get("origin")
    return sent is not None and sent == origin


def set_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: timedelta | None) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, Secure over https, sent to /console only."""
    seconds = int(max_age.total_seconds()) if max_age is not None else None
    response.set_cookie(name, value, max_age=seconds, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict")


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict")
