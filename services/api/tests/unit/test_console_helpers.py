"""The console's pure rules: the per-session CSRF token, the origin check, the cookie's attributes,
the security headers, and the machine list's paging and SQL filter."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import Response

from dpm_api.console import listing, security

SESSION = "dpms_" + "a" * 43
OTHER = "dpms_" + "b" * 43


def test_the_csrf_token_is_per_session_and_checked_exactly() -> None:
    token = security.csrf_token(SESSION)
    assert token == security.csrf_token(SESSION)  # stable for the session: every form of it
    assert token != security.csrf_token(OTHER)
    assert SESSION not in token  # it reveals nothing of the session token
    assert security.csrf_ok(SESSION, token)
    for wrong in (None, "", security.csrf_token(OTHER), token[:-1], token + "0"):
        assert not security.csrf_ok(SESSION, wrong)


def test_the_login_forms_double_submit() -> None:
    nonce = security.login_nonce()
    assert len(nonce) >= 40 and nonce != security.login_nonce()
    assert security.nonce_ok(nonce, nonce)
    for cookie, field in ((None, nonce), (nonce, None), ("", ""), (nonce, security.login_nonce())):
        assert not security.nonce_ok(cookie, field)


def test_a_form_must_come_from_our_origin() -> None:
    ours = "http://dpm.lab:8080"
    assert security.same_origin({"sec-fetch-site": "same-origin"}, ours)
    for site in ("same-site", "cross-site", "none"):  # a sibling host or a typed URL is not our page
        assert not security.same_origin({"sec-fetch-site": site, "origin": ours}, ours)
    assert security.same_origin({"origin": ours}, ours)
    for origin in ("http://evil.example", "null", "https://dpm.lab:8080", "http://dpm.lab"):
        assert not security.same_origin({"origin": origin}, ours)
    assert not security.same_origin({}, ours)  # neither header: refused


def test_the_session_cookie_is_httponly_strict_and_secure_over_https() -> None:
    for secure in (False, True):
        response = Response()
        security.set_cookie(response, security.SESSION_COOKIE, SESSION, secure=secure, max_age=timedelta(hours=12))
        parts = {p.strip().lower() for p in response.headers["set-cookie"].split(";")}
        assert {"httponly", "samesite=strict", "path=/console", "max-age=43200"} <= parts
        assert ("secure" in parts) is secure
    response = Response()
    security.clear_cookie(response, security.SESSION_COOKIE, secure=False)
    assert "max-age=0" in response.headers["set-cookie"].lower()


def test_the_headers_forbid_framing_inline_code_and_sniffing() -> None:
    csp = dict(part.strip().split(" ", 1) for part in security.CSP.split(";"))
    assert csp == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self'",
        "connect-src": "'self'",  # the pages' EventSource and fragment fetches, our origin only
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }
    assert security.HEADERS["X-Content-Type-Options"] == "nosniff"
    assert security.HEADERS["Referrer-Policy"] == "same-origin"  # no-referrer would make Origin "null"
    assert security.HEADERS["Cache-Control"] == "no-store"


def _facts(page: listing.Page) -> tuple[object, ...]:
    return page.pages, page.offset, page.previous, page.next, page.first_row, page.last_row


def test_pages() -> None:
    assert _facts(listing.Page(1, 50, 0)) == (1, 0, None, None, 0, 0)
    assert _facts(listing.Page(2, 50, 101)) == (3, 50, 1, 3, 51, 100)
    assert listing.Page(3, 50, 101).last_row == 101 and listing.Page(3, 50, 101).next is None
    assert listing.clamp(9, 50, 101) == listing.Page(3, 50, 101)  # past the end: the last page
    assert listing.clamp(9, 50, 0) == listing.Page(1, 50, 0)


@given(st.text(max_size=12))
def test_any_page_parameter_is_a_page_number(raw: str) -> None:
    number = listing.page_number(raw)
    assert number >= 1
    if raw.strip().isascii() and raw.strip().isdigit() and 1 <= int(raw) <= 1_000_000:
        assert number == int(raw)


@given(st.integers(0, 10_000), st.integers(1, 500))
def test_paging_covers_every_row_once(total: int, number: int) -> None:
    page = listing.clamp(number, listing.PAGE_SIZE, total)
    assert 1 <= page.number <= page.pages
    assert 0 <= page.offset <= max(0, total - 1)
    if total:
        assert page.last_row - page.first_row + 1 == min(page.size, total - page.offset)


def test_the_filter_is_parameterised_sql() -> None:
    assert listing.where(None, None) == ("", ())
    assert listing.where("  ", "") == ("", ())
    clause, params = listing.where("lab_1%", None)
    assert clause == " WHERE (name ILIKE %s OR ip LIKE %s)"
    assert params == ("%lab\\_1\\%%", "lab\\_1\\%%")  # LIKE's wildcards are matched literally
    clause, params = listing.where("52-54-00-AA-00-07", "lab a")
    assert clause == " WHERE (name ILIKE %s OR ip LIKE %s OR macs @> ARRAY[%s]::text[]) AND group_name = %s"
    assert params[2:] == ("52:54:00:aa:00:07", "lab a")  # a MAC in any spelling, as stored
    clause, params = listing.where("ff:ff:ff:ff:ff:ff", None)  # broadcast: no machine's MAC
    assert "macs" not in clause
    assert listing.where("x" * 1000, None)[1][0] == "%" + "x" * listing.MAX_QUERY + "%"
    assert "'" not in listing.where("'; DROP TABLE api.machines; --", None)[0]
