"""Where the database is: the URL in use (``DATABASE_URL`` or the embedded server), the direct
URL for LISTEN, and a password-free description for messages."""

from __future__ import annotations

from urllib.parse import urlsplit

from bus import embedded
from bus.config import Settings


def resolve_url(settings: Settings) -> str:
    """``DATABASE_URL``, or the embedded server's URL (starting it if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded.ensure_running(settings.pgdata)


def listen_url(settings: Settings) -> str:
    """The direct URL for LISTEN and advisory-lock leadership."""
    return settings.listen_url or resolve_url(settings)


def describe(url: str) -> str:
    """``user@host:port/db`` for messages, without the password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get(
            "host", "localhost"
        )
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{user}{host}{port}{parts.path or '/'}"
    except ValueError:
        return "<unparseable URL>"
