"""Access control: a token as a bearer header or a login cookie, and CSRF for cookies.

Without ``BGAGENTS_TOKEN`` (loopback only) everything is open. With it, every
route needs the token, except ``/healthz`` and the login page: API clients
send ``Authorization: Bearer <token>``; browsers log in once and get an
HttpOnly, SameSite cookie. Unsafe methods (anything but GET, HEAD and OPTIONS)
on cookie-authenticated requests must carry the CSRF token (header
``X-CSRF-Token`` or form field ``csrf_token``); bearer clients are exempt,
since a browser never sends that header on its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from web.keys import SETTINGS

COOKIE = "bgagents_session"
USER = web.RequestKey("user", str)
PUBLIC = ("/healthz", "/login")
UNSAFE = (hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_PATCH, hdrs.METH_DELETE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself never leaves."""
    return hmac.new(token.encode(), b"bgagents-session", hashlib.sha256).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token pages embed for cookie sessions."""
    return hmac.new(token.encode(), b"bgagents-csrf", hashlib.sha256).hexdigest()


def _json_403(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=403)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].token
    if not token or request.path in PUBLIC or request.path.startswith("/static/"):
        # The login page and its static files are public; the rest needs the token.
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        request[USER] = "token"
        return await handler(request)
    cookie = request.cookies.get(COOKIE, "")
    if cookie and hmac.compare_digest(cookie, _session_value(token)):
        if request.method in UNSAFE:
            sent = request.headers.get("X-CSRF-Token", "")
            if not sent and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                sent = str((await request.post()).get("csrf_token", ""))
            if not hmac.compare_digest(sent, csrf_token(token)):
                return _json_403("missing or wrong CSRF token (send X-CSRF-Token)")
        request[USER] = "browser"
        return await handler(request)
    if request.path.startswith("/api/") or request.path == "/metrics":
        return web.json_response(
            {"error": "authentication required", "hint": "send Authorization: Bearer <BGAGENTS_TOKEN>"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise web.HTTPSeeOther(f"/login?next={request.path_qs}")


LOGIN_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Background Agents: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 22rem; margin: 15vh auto">
<h1 style="font-size: 1.3rem">Background Agents</h1>
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autofocus required style="width: 100%"></label>
<p style="color: #b00020">{error}</p><button type="submit">Sign in</button></form></body></html>"""


async def login_page(request: web.Request) -> web.Response:
    import html

    nxt = request.query.get("next", "/")
    return web.Response(text=LOGIN_FORM.format(next=html.escape(nxt), error=""), content_type="text/html")


async def login(request: web.Request) -> web.Response:
    import html

    token = request.app[SETTINGS].token
    form = await request.post()
    nxt = str(form.get("next") or "/")
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"
    if not token or not hmac.compare_digest(str(form.get("token", "")), token):
        return web.Response(
            text=LOGIN_FORM.format(next=html.escape(nxt), error="Wrong token."),
            content_type="text/html",
            status=401,
        )
    resp = web.HTTPSeeOther(nxt)
    resp.set_cookie(
        COOKIE, _session_value(token), httponly=True, samesite="Strict", secure=request.secure, path="/"
    )
    raise resp


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login, name="login_submit")
