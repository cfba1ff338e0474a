"""The web console: server-rendered pages (Jinja2, autoescaped) under ``/console``, served by the api
beside its REST routes. Its own session cookie, never a bearer header, authenticates a page; every
request's rights come only from that cookie's session (the original shared one session across tabs,
seed catalog §4.1 W-06), and no value reaches a page unescaped (W-07)."""
