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


class SchemaNotReady(BgError):
    """The database schema is not current."""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "run `bgagents migrate`")


class FeatureUnavailable(BgError):
    """An optional feature is not available on this server."""


class ConflictError(BgError):
    """The value changed since it was read."""


class NotFound(BgError):
    """No such object."""


class InvalidArgument(BgError):
    """An argument has a bad value."""
