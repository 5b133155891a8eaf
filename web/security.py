"""Access control and browser safety: the Host allow-list, same-origin writes, the token, headers.

Every request passes three gates, in this order:

1. **Host allow-list.** The ``Host`` header must name the bound address
   (``BGAGENTS_HOST``), ``localhost``, ``127.0.0.1``, ``[::1]`` or one of
   ``BGAGENTS_ALLOWED_HOSTS`` (names behind a proxy); anything else gets a 421
   with a JSON reason. This is what defeats DNS rebinding: a hostile page at
   ``evil.example`` whose name is re-pointed at 127.0.0.1 is same-origin with
   itself in the browser, so no origin check can tell it apart, but its
   requests say ``Host: evil.example``. Only ``/healthz`` is exempt (load
   balancers probe it by IP, and it says nothing but "ok").

2. **Fetch metadata and Origin.** A browser marks every request with where it
   comes from: ``Sec-Fetch-Site`` (Chrome 76+, Firefox 90+, Safari 16.4+) and,
   on every POST, ``Origin``. An unsafe method (post, put, patch, delete) is
   refused with a 403 when ``Sec-Fetch-Site`` is present and is neither
   ``same-origin`` nor ``none`` (typed by the user), or when ``Origin`` is
   present and is not this server's own ``scheme://host:port`` (``null``, sent
   by sandboxed frames and file pages, never matches). Note that "same-site"
   is not enough: ``http://127.0.0.1:9000`` is the same *site* as
   ``http://127.0.0.1:8000``, since ports don't count for sites. Reads of
   ``/api/*``, ``/metrics`` and ``/partials/*`` from another site or origin
   are refused as well unless they are top-level navigations (a user
   following a link): the same-origin policy already keeps another page from
   reading the answer, and this keeps it from even embedding or timing it
   (``Cross-Origin-Resource-Policy`` says the same to the browser).

   A request that carries neither header does not come from a current
   browser's page: it is curl, a script, or the CLI. Without a token such a
   request is allowed only from a loopback peer. A tokenless server binds only
   to loopback anyway (``check_bind``), so this is a second line, and it does
   not help when a reverse proxy on the same host forwards the world to a
   tokenless server: never do that, set ``BGAGENTS_TOKEN``. With a token such
   a request still needs the token (bearer) or the cookie and the CSRF token.
   What remains open: a browser so old that it sends neither header on a
   cross-site form post (Firefox before 70, Internet Explorer).

   htmx's ``HX-Request`` header is accepted but never trusted on its own. It
   is true that a page on another origin cannot add it: a cross-site form
   cannot set headers at all, a ``fetch`` with ``mode: "no-cors"`` may only
   send CORS-safelisted headers (the browser drops the rest), and a CORS
   ``fetch`` with a custom header needs a preflight that this server never
   approves. But every browser that runs htmx 2 also sends ``Origin`` and
   ``Sec-Fetch-Site``, so the header would add nothing there, and outside a
   browser anyone can send it. So the decision rests on ``Origin`` and
   ``Sec-Fetch-Site`` alone; ``HX-Request`` is neither required (the pages'
   forms also post without JavaScript) nor sufficient.

3. **The token.** Without ``BGAGENTS_TOKEN`` (loopback only) everything else
   is open. With it, every route needs the token, except ``/healthz``, the
   login page and static files: API clients send ``Authorization: Bearer
   <token>`` and skip gate 2 (a browser never sends that header by itself);
   browsers log in once and get an HttpOnly, SameSite=Strict cookie, and their
   unsafe requests must also carry the CSRF token (header ``X-CSRF-Token`` or
   form field ``csrf_token``). Tokens are compared as UTF-8 bytes in constant
   time, so a token or cookie with any characters is a 401, never a 500.

Every response also gets the security headers of :data:`HEADERS`: a CSP with
no inline script or style and no eval (htmx runs with ``allowEval`` and
``allowScriptTags`` off, see ``templates/base.html``), no framing, nosniff, no
referrer to other origins, and ``Cross-Origin-Resource-Policy: same-origin`` (so
another page cannot even receive an opaque answer); everything but static files
is ``Cache-Control: no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import hdrs, web
from yarl import URL

from bus.config import Settings
from web.keys import SETTINGS

COOKIE = "bgagents_session"
USER = web.RequestKey("user", str)
PUBLIC = ("/healthz", "/login")
UNSAFE = (hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_PATCH, hdrs.METH_DELETE)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAME_ORIGIN_SITES = ("same-origin", "none")
ISOLATED = ("/api/", "/partials/")
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it Chromium sends "Origin: null" on the pages' own form posts.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""Headers on every response the app sends."""

_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/?#@\[\]]+)(?::(\d{1,5}))?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def same_secret(sent: str, expected: str) -> bool:
    """Constant-time comparison of two secrets as UTF-8 bytes (``str`` would raise on non-ASCII)."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _session_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself never leaves."""
    return hmac.new(token.encode(), b"bgagents-session", hashlib.sha256).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token pages embed for cookie sessions."""
    return hmac.new(token.encode(), b"bgagents-csrf", hashlib.sha256).hexdigest()


def host_name(authority: str) -> str | None:
    """The lower-case host name of a ``Host`` value (no port, no brackets), or None if malformed."""
    match = _HOST.fullmatch(authority.strip())
    if match is None:
        return None
    return match.group(1).strip("[]").lower().rstrip(".") or None


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The names this server answers to: the bound address, loopback and ``BGAGENTS_ALLOWED_HOSTS``."""
    names = {settings.host, *LOOPBACK_NAMES, *settings.allowed_hosts}
    bracketed = (f"[{n}]" if n.count(":") > 1 and not n.startswith("[") else n for n in names)  # IPv6
    return frozenset(n for n in (host_name(name) for name in bracketed) if n)


def _refuse(status: int, reason: str, hint: str) -> web.Response:
    return web.json_response({"error": reason, "hint": hint}, status=status)


def host_refusal(request: web.Request) -> web.Response | None:
    """A 400/421 for a request whose ``Host`` is missing or not on the allow-list, else None."""
    if request.path == "/healthz":
        return None
    raw = request.headers.get(hdrs.HOST, "")
    if not raw:
        return _refuse(400, "the request has no Host header", "send Host: 127.0.0.1:<port>")
    name = host_name(raw)
    if name is None or name not in allowed_hosts(request.app[SETTINGS]):
        return _refuse(
            421,
            f"this server does not answer to host {raw[:100]!r}",
            "open it as 127.0.0.1 or localhost, or add the name to BGAGENTS_ALLOWED_HOSTS",
        )
    return None


def own_origin(request: web.Request) -> set[tuple[str, str, int | None]]:
    """This server's origins as (scheme, host, port): its own scheme, and the one a proxy reports.

    ``X-Forwarded-Proto`` only widens the scheme (a TLS proxy in front); a page cannot
    set that header in a victim's browser, and the host and port must still match.
    """
    schemes = {request.scheme, request.headers.get("X-Forwarded-Proto", "").strip().lower()}
    origins = set()
    for scheme in schemes & {"http", "https"}:
        try:
            url = URL(f"{scheme}://{request.headers.get(hdrs.HOST, '')}")
        except ValueError:
            continue
        origins.add((scheme, (url.host or "").lower(), url.port))
    return origins


def _origin_of(value: str) -> tuple[str, str, int | None] | None:
    try:
        url = URL(value.strip())
    except ValueError:
        return None
    if not url.absolute or url.scheme not in ("http", "https") or url.path not in ("", "/"):
        return None
    return (url.scheme, (url.host or "").lower(), url.port)


def _loopback_peer(request: web.Request) -> bool:
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def origin_refusal(request: web.Request) -> web.Response | None:
    """A 403 for a request another site or origin made in a browser (see gate 2 above), else None."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get(hdrs.ORIGIN)
    hint = "use the dashboard itself, or a client outside the browser"
    if request.method not in UNSAFE:
        isolated = request.path.startswith(ISOLATED) or request.path == "/metrics"
        navigation = request.headers.get("Sec-Fetch-Mode") == "navigate"
        if isolated and site is not None and site not in SAME_ORIGIN_SITES and not navigation:
            return _refuse(403, f"cross-origin read refused (Sec-Fetch-Site: {site[:40]})", hint)
        return None
    if site is not None and site not in SAME_ORIGIN_SITES:
        return _refuse(403, f"cross-origin request refused (Sec-Fetch-Site: {site[:40]})", hint)
    if origin is not None and _origin_of(origin) not in own_origin(request):
        return _refuse(403, f"cross-origin request refused (Origin: {origin[:100]})", hint)
    if site is None and origin is None and not request.app[SETTINGS].token and not _loopback_peer(request):
        return _refuse(403, "a request without Origin is accepted only from loopback", "set BGAGENTS_TOKEN")
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The three gates of the module docstring, before any handler runs."""
    refusal = host_refusal(request)
    if refusal is not None:
        return refusal
    token = request.app[SETTINGS].token
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    if token and header.startswith("Bearer ") and same_secret(header[7:].strip(), token):
        request[USER] = "token"
        return await handler(request)
    refusal = origin_refusal(request)
    if refusal is not None:
        return refusal
    if not token or request.path in PUBLIC or request.path.startswith("/static/"):
        # The login page and its static files are public; the rest needs the token.
        return await handler(request)
    cookie = request.cookies.get(COOKIE, "")
    if cookie and same_secret(cookie, _session_value(token)):
        if request.method in UNSAFE:
            sent = request.headers.get("X-CSRF-Token", "")
            if not sent and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                sent = str((await request.post()).get("csrf_token", ""))
            if not same_secret(sent, csrf_token(token)):
                return _refuse(403, "missing or wrong CSRF token", "send X-CSRF-Token")
        request[USER] = "browser"
        return await handler(request)
    if request.path.startswith("/api/") or request.path == "/metrics":
        return web.json_response(
            {"error": "authentication required", "hint": "send Authorization: Bearer <BGAGENTS_TOKEN>"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise web.HTTPSeeOther(request.app.router["login"].url_for().with_query(next=request.path_qs))


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add :data:`HEADERS` to every response, and ``no-store`` to all but static files."""
    response.headers.update(HEADERS)
    if not request.path.startswith("/static/"):
        response.headers[hdrs.CACHE_CONTROL] = "no-store"


def _safe_next(value: str) -> str:
    """A local path to return to after signing in; anything else becomes ``/``."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def login_page(request: web.Request) -> web.Response:
    context = {"next": _safe_next(request.query.get("next", "/")), "error": ""}
    return aiohttp_jinja2.render_template("login.html", request, context)


async def login(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].token
    form = await request.post()
    nxt = _safe_next(str(form.get("next") or "/"))
    if not token or not same_secret(str(form.get("token", "")), token):
        context = {"next": nxt, "error": "Wrong token."}
        return aiohttp_jinja2.render_template("login.html", request, context, status=401)
    resp = web.HTTPSeeOther(nxt)
    resp.set_cookie(
        COOKIE, _session_value(token), httponly=True, samesite="Strict", secure=request.secure, path="/"
    )
    raise resp


def setup_routes(app: web.Application) -> None:
    """The login routes, and the security headers on every response."""
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login, name="login_submit")
    app.on_response_prepare.append(security_headers)
