"""What every API handler shares: parameter parsing, JSON replies and the error middleware.

POST bodies may be JSON or form-encoded (htmx posts forms). Errors always come
back as JSON ``{"error": reason, "hint": ...}``, never as a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from bus.errors import (
    BgError,
    ConflictError,
    DatabaseUnavailable,
    FeatureUnavailable,
    InvalidArgument,
    NotFound,
    SchemaNotReady,
    from_driver,
)

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadParameter(InvalidArgument):
    """A request parameter has a bad value."""


def json_error(status: int, reason: str, hint: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if hint:
        body["hint"] = hint
    return web.json_response(body, status=status)


STATUSES: tuple[tuple[type[BgError], int], ...] = (
    (InvalidArgument, 400),
    (NotFound, 404),
    (ConflictError, 409),
    (DatabaseUnavailable, 503),
    (SchemaNotReady, 503),
    (FeatureUnavailable, 503),
)
"""The HTTP status of each error type, first match wins; any other :class:`BgError` is a 503."""


def status_of(exc: BgError) -> int:
    """The HTTP status for one of our errors."""
    for kind, status in STATUSES:
        if isinstance(exc, kind):
            return status
    return 503


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map our errors to JSON with a status; log the unexpected ones."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return json_error(exc.status, exc.reason)
    except BgError as exc:
        return _bg_error(request, exc)
    except Exception as exc:
        translated = from_driver(exc)  # a driver error that escaped the domain services
        if translated is not None:
            return _bg_error(request, translated)
        logger.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error; see the server log")


def _bg_error(request: web.Request, exc: BgError) -> web.Response:
    status = status_of(exc)
    if status >= 500:
        logger.warning("%s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
    return json_error(status, exc.message, exc.hint)


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"parameter {name!r} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"parameter {name!r} must be between {low} and {high}, got {value}")
    return value


def choice(value: str | None, name: str, choices: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in choices:
        raise BadParameter(f"parameter {name!r} must be one of {', '.join(choices)}, got {value!r}")
    return value


def bool_param(value: Any, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if str(value).lower() in ("1", "true", "yes"):
        return True
    if str(value).lower() in ("0", "false", "no"):
        return False
    raise BadParameter(f"parameter {name!r} must be true or false, got {value!r}")


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    try:
        return int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got {raw!r}") from None


async def body(request: web.Request) -> dict[str, Any]:
    """A POST body, JSON or form-encoded."""
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError as exc:
            raise BadParameter(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadParameter("the JSON body must be an object")
        return data
    return dict(await request.post())


def jsonable(row: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, timedelta):
            value = value.total_seconds()
        out[key] = value
    return out


def to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=to_json)


def reply(data: Any, status: int = 200) -> web.Response:
    """A JSON response that also encodes dates, intervals and numerics."""
    return web.json_response(data, status=status, dumps=dumps)
