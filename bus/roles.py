"""App URLs for other programs: LOGIN roles that are members of bg_reader, bg_writer or bg_runtime.

``bgagents db url --role writer`` makes (or keeps) the LOGIN role ``bgagents_writer``, a
member of ``bg_writer``, and prints a URL that logs in as it. Passwords are generated
once and kept in ``$BGAGENTS_DATA_DIR/role-passwords.json`` (mode 0600); the server only
ever receives their SCRAM-SHA-256 verifier, so the password appears in no server log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from bus import db
from bus.config import Settings
from bus.errors import InvalidArgument, SchemaNotReady, from_driver

GROUPS = MappingProxyType({"reader": "bg_reader", "writer": "bg_writer", "runtime": "bg_runtime"})
"""What each ``--role`` is a member of."""

PASSWORD_FILE = "role-passwords.json"


def login_name(kind: str) -> str:
    """The LOGIN role that ``--role kind`` logs in as."""
    return f"bgagents_{kind}"


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, RFC 7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _password(path: Path, login: str) -> str:
    """The stored password of ``login``, made and saved (0600) on first use."""
    stored: dict[str, str] = {}
    if path.exists():
        os.chmod(path, 0o600)
        stored = json.loads(path.read_text("utf-8"))
    if login in stored:
        return stored[login]
    stored[login] = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(stored, out, indent=1)
    os.replace(tmp, path)
    return stored[login]


def _with_login(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password, safe='')}@{host}"))


async def app_url(settings: Settings, kind: str) -> str:
    """A URL that logs in as the LOGIN role for ``kind`` (reader, writer, runtime), made if needed.

    Needs a connection (the configured one) that may create roles: the embedded
    server's superuser, or a role with CREATEROLE and ADMIN on the group.
    """
    if kind not in GROUPS:
        raise InvalidArgument(f"unknown role {kind!r}", hint="one of " + ", ".join(GROUPS))
    group, login = GROUPS[kind], login_name(kind)
    admin_url = db.resolve_url(settings)
    password = _password(settings.data_dir / PASSWORD_FILE, login)
    async with db.connection(settings, admin_url) as conn:
        if not await db.call(conn, "roles_group_exists", group):
            raise SchemaNotReady(f"role {group} does not exist in this cluster")
        script = await db.call(conn, "roles_login_script", login, scram_verifier(password), group)
        try:
            await conn.execute(script)
        except asyncpg.PostgresError as exc:
            raise from_driver(exc) or exc from exc
    return _with_login(admin_url, login, password)
