"""Where the database is: the URL in use (``DATABASE_URL`` or the embedded server), the direct
URL for session features, and a password-free description for messages.

``DATABASE_URL`` may go through a pooler such as PgBouncer in transaction mode, where a
session lasts one transaction; whatever needs a session of its own (LISTEN, the migration's
session lock) connects to :func:`listen_url` instead. Either may name several hosts
(``host=a,b&port=p1,p2&target_session_attrs=read-write``), for failover.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from bus import embedded
from bus.config import Settings


def resolve_url(settings: Settings) -> str:
    """``DATABASE_URL``, or the embedded server's URL (starting it if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded.ensure_running(settings.pgdata)


def listen_url(settings: Settings) -> str:
    """The direct URL (never through a pooler) for LISTEN and session locks:
    ``BGAGENTS_LISTEN_URL``, else the URL in use."""
    return settings.listen_url or resolve_url(settings)


def describe(url: str) -> str:
    """``user@host:port/db`` for messages, without the password (``h1:p1,h2:p2`` for several hosts)."""
    try:
        parts = urlsplit(url)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        login, _, hosts = parts.netloc.rpartition("@")
        user = f"{login.split(':', 1)[0]}@" if login else ""
        if not hosts:
            hosts = query.get("host", "localhost")
            if "port" in query:
                ports = query["port"].split(",")
                names = hosts.split(",")
                hosts = ",".join(f"{h}:{ports[min(i, len(ports) - 1)]}" for i, h in enumerate(names))
        return f"{user}{unquote(hosts)}{parts.path or '/'}"
    except ValueError:
        return "<unparseable URL>"
