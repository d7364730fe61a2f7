"""A bearer token for `embstore serve`: required on any address but loopback, optional there.

API clients send ``Authorization: Bearer <token>``; a request without it (or with another
token) gets 401 and the app's JSON error (``{"error": "unauthorized", "message": ...}``).
Browsers sign in once at ``/login``, which sets a cookie holding an HMAC of the token (never
the token itself; HttpOnly, SameSite=Strict, kept 30 days), so the explorer, /docs and the
API calls the pages make need nothing more. ``/api/health``, ``/login``, ``/logout`` and the
static assets (CSS, JavaScript: no data) stay open.

The gate is a plain ASGI middleware: one header scan per request, no FastAPI dependency.
The token travels in clear over plain HTTP: put TLS in front of a server others reach.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from urllib.parse import parse_qs, quote, urlsplit

COOKIE = "embstore_session"
COOKIE_DAYS = 30
OPEN_PATHS = frozenset({"/api/health", "/login", "/logout", "/favicon.ico"})
OPEN_PREFIXES = ("/static/", "/static-offline-docs/")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN_ENV = "EMBSTORE_TOKEN"
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def check_token(token: str) -> str:
    """A token the server accepts: at least MIN_TOKEN_LENGTH printable ASCII characters, no spaces."""
    from embstore.errors import ConfigError

    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"the token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without "
                          "spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def session_value(token: str) -> str:
    """What the login cookie holds: an HMAC of the token, so the cookie does not reveal it."""
    return hmac.new(token.encode(), b"embstore explorer session", hashlib.sha256).hexdigest()


class TokenGate:
    """ASGI middleware: lets a request through when it carries the token (header) or the session
    cookie; otherwise 401 JSON for the API and the schema, a redirect to /login for pages."""

    def __init__(self, app, token: str):
        self.app = app
        self._bearer = f"Bearer {token}".encode()
        self._session = session_value(token).encode()

    def authorized(self, headers) -> bool:
        for name, value in headers:
            if name == b"authorization" and hmac.compare_digest(value.strip(), self._bearer):
                return True
            if name == b"cookie" and self._cookie_ok(value):
                return True
        return False

    def _cookie_ok(self, header: bytes) -> bool:
        for part in header.split(b";"):
            key, _, value = part.strip().partition(b"=")
            if key == COOKIE.encode() and hmac.compare_digest(value, self._session):
                return True
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or self.authorized(scope.get("headers", ())):
            return await self.app(scope, receive, send)
        if path.startswith("/api/") or path == "/openapi.json":
            body = json.dumps({"error": "unauthorized",
                               "message": "this server needs its token: send the header 'Authorization: Bearer "
                                          "<token>' (browsers: sign in at /login)"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"www-authenticate", b'Bearer realm="embstore"')]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        location = "/login?next=" + quote(target, safe="")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this server only (no scheme, host or '//')."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/explorer"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/explorer"


def login_page(next_path: str, message: str | None = None) -> str:
    note = f'<p class="message" role="alert">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>embstore: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/explorer.css"></head>
<body><main class="login">
<h1>embstore</h1>
<p>This server needs its token (the one given to <code>embstore serve --token</code> or
<code>EMBSTORE_TOKEN</code>). It is asked once: this browser keeps a session cookie for {COOKIE_DAYS} days.</p>
{note}
<form method="post" action="/login" id="login-form">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label>token <input type="password" name="token" id="token" autocomplete="current-password" autofocus required></label>
<button type="submit" id="sign-in">sign in</button>
</form></main></body></html>
"""


def login_form(body: bytes) -> tuple[str, str]:
    """The token and next path of a posted login form (urlencoded; undecodable bytes never match)."""
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return fields.get("token", [""])[0], fields.get("next", [""])[0]


def cookie_header(token: str | None) -> str:
    """Set-Cookie for a session (or, with None, one that removes it)."""
    if token is None:
        return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    return (f"{COOKIE}={session_value(token)}; Path=/; Max-Age={COOKIE_DAYS * 86400}; HttpOnly; "
            "SameSite=Strict")
