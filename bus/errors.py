"""Typed errors of the bus.

Every error the rest of the system sees derives from :class:`BgError`. Each
class's docstring is its default message, so ``raise ConnectError()`` already
says something useful; driver errors are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations


class BgError(Exception):
    """Background Agents failed."""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.hint = hint
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(BgError):
    """A setting has a bad value."""


class ConnectError(BgError):
    """Could not connect to PostgreSQL."""


class EmbeddedServerError(BgError):
    """The embedded PostgreSQL server could not be started."""


class MigrationError(BgError):
    """The database schema could not be migrated."""


class BackupError(BgError):
    """The backup or restore did not complete."""


class SchemaNotReady(BgError):
    """The database schema is not current."""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "run `bgagents migrate`")


class FeatureUnavailable(BgError):
    """An optional feature is not available on this server."""


class AIHelpNotRunning(FeatureUnavailable):
    """The ai-help agent is not running."""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "start it with `bgagents up` or `bgagents run ai-help`")


class ConflictError(BgError):
    """The value changed since it was read."""


class NotFound(BgError):
    """No such object."""


class Cancelled(BgError):
    """The task was cancelled while it ran."""


class TaskFailed(BgError):
    """The task failed for good (it is in the dead letter)."""


class TaskCancelled(BgError):
    """The task was cancelled."""


class CursorExpired(BgError):
    """The cursor is older than the event retention: reload, then resume from now."""


class InvalidArgument(BgError):
    """An argument has a bad value."""


class PayloadTooLarge(InvalidArgument):
    """The payload or question is larger than the configured limit (SQLSTATE BG413)."""


class ModelWeightsError(BgError):
    """The local embedding model's weights could not be had."""


class WeightsIntegrityError(ModelWeightsError):
    """The local embedding model's weights failed their SHA-256 check."""


class DatabaseError(BgError):
    """The database refused the request."""

    def __init__(self, message: str | None = None, *, hint: str | None = None, sqlstate: str = "") -> None:
        super().__init__(message, hint=hint)
        self.sqlstate = sqlstate


class DatabaseUnavailable(DatabaseError):
    """The database is unreachable for now (restarting, or the connection dropped); try again."""


def from_driver(exc: BaseException) -> BgError | None:
    """The :class:`BgError` for a driver error (first line, hint and SQLSTATE kept), else None.

    Callers outside ``bus`` never see the driver's classes: the domain services
    raise what this returns, and the CLI uses it as its last resort, so a
    PostgreSQL error reaches a user as one line with its fix.
    """
    import asyncpg  # the one driver; imported here so that this module stays light

    if isinstance(exc, BgError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        hint = getattr(exc, "hint", None)
        state = exc.sqlstate or ""
        if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.InvalidSchemaNameError):
            return SchemaNotReady(f"the database has no Background Agents schema yet ({message})")
        if isinstance(exc, asyncpg.UniqueViolationError):
            return ConflictError(message, hint=hint)
        if state == "BG413":
            return PayloadTooLarge(message, hint=hint)
        if state.startswith("22") or isinstance(exc, asyncpg.CheckViolationError):
            return InvalidArgument(message, hint=hint)
        if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError):
            return DatabaseUnavailable(message, hint=hint or "is the server running?", sqlstate=state)
        return DatabaseError(message, hint=hint, sqlstate=state)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError):
        return DatabaseUnavailable(f"lost the database connection: {exc}", hint="is the server running?")
    return None
