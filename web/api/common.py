"""What every API handler shares: parameter parsing, JSON replies and the error middleware.

POST bodies may be JSON or form-encoded (htmx posts forms). Errors always come
back as JSON ``{"error": reason, "hint": ...}``, never as a traceback.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

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

T = TypeVar("T")

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
    """Map our errors to JSON with a status; log the unexpected ones.

    Query and path parameters that PostgreSQL could not store (a NUL, a lone
    surrogate) are refused here, for every route, naming the parameter.
    """
    try:
        check_url_text(request)
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


def check_url_text(request: web.Request) -> None:
    """Refuse a query or path parameter (name or value) that PostgreSQL rejects as text."""
    for key, value in [*request.query.items(), *request.match_info.items()]:
        problem = text_problem(key) or text_problem(value)
        if problem:
            raise BadParameter(f"parameter {_shown(key)} {problem}")


def _bg_error(request: web.Request, exc: BgError) -> web.Response:
    status = status_of(exc)
    if status >= 500:
        logger.warning("%s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
    return json_error(status, exc.message, exc.hint)


BIGINT_MAX = 2**63 - 1
"""The largest id PostgreSQL's ``bigint`` holds."""

MAX_JSON_DEPTH = 32
"""How deeply a JSON body may nest."""

MAX_NAME_CHARS = 200
"""The longest name (queue, agent, metric, label) a parameter may carry."""

MAX_TEXT_CHARS = 2000
"""The longest free text (comments, "by") a parameter may carry."""


def _shown(raw: Any) -> str:
    """``raw`` for an error message, cut short."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse ``value`` as text (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None


def whole_number(raw: Any, name: str, low: int = 1, high: int = BIGINT_MAX) -> int:
    """``raw`` (an int, or a string of ASCII digits) as an int in ``[low, high]``."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str):
        digits = raw[1:] if raw[:1] in ("-", "+") else raw
        if digits.isascii() and digits.isdigit() and len(digits) <= 20:
            value = int(raw)
    if value is None:
        raise BadParameter(f"parameter {name!r} must be a whole number, got {_shown(raw)}")
    if not low <= value <= high:
        raise BadParameter(f"parameter {name!r} must be between {low} and {high}, got {_shown(value)}")
    return value


def finite_number(raw: Any, name: str, low: float, high: float) -> float:
    """``raw`` (a JSON number or a numeric string) as a finite float in ``[low, high]``."""
    value: float | None = None
    try:
        if (isinstance(raw, int | float) and not isinstance(raw, bool)) or (
            isinstance(raw, str) and len(raw) <= 40
        ):
            value = float(raw)
    except (ValueError, OverflowError):
        value = None
    if value is None or not math.isfinite(value):
        raise BadParameter(f"parameter {name!r} must be a finite number, got {_shown(raw)}")
    if not low <= value <= high:
        raise BadParameter(f"parameter {name!r} must be between {low:g} and {high:g}, got {value:g}")
    return value + 0.0  # -0.0 becomes 0.0


def text(
    raw: Any, name: str, max_chars: int = MAX_TEXT_CHARS, *, default: str = "", strip: bool = True
) -> str:
    """``raw`` as a string without NUL of at most ``max_chars`` characters (None: ``default``)."""
    if raw is None:
        raw = default
    if not isinstance(raw, str):
        raise BadParameter(f"parameter {name!r} must be a string, got {_shown(raw)}")
    problem = text_problem(raw)
    if problem:
        raise BadParameter(f"parameter {name!r} {problem}")
    value = raw.strip() if strip else raw
    if len(value) > max_chars:
        raise BadParameter(f"parameter {name!r} must be at most {max_chars} characters, got {len(value)}")
    return value


def optional_text(raw: Any, name: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """Like :func:`text`, but an absent or empty value is None."""
    value = text(raw, name, max_chars)
    return value or None


def json_type(raw: Any, name: str, kind: type[T]) -> T:
    """``raw`` if it has the JSON type ``kind`` (``dict``, ``list``, ``str``, ...), else a 400 naming it."""
    if not isinstance(raw, kind) or (kind is not bool and isinstance(raw, bool)):
        wanted = JSON_TYPE_NAMES.get(kind, kind.__name__)
        raise BadParameter(f"parameter {name!r} must be {wanted}, got {_shown(raw)}")
    return raw


JSON_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
}


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return whole_number(raw, name, low, high)


def text_param(request: web.Request, name: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """A query parameter as text of at most ``max_chars`` (absent or empty: None)."""
    return optional_text(request.query.get(name), name, max_chars)


def choice(value: Any, name: str, choices: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in choices:
        raise BadParameter(f"parameter {name!r} must be one of {', '.join(choices)}, got {_shown(value)}")
    return value


def bool_param(value: Any, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no"):
        return False
    raise BadParameter(f"parameter {name!r} must be true or false, got {_shown(value)}")


def path_id(request: web.Request, name: str = "id") -> int:
    """A bigint id from the path, ``/api/tasks/{id}``."""
    return whole_number(request.match_info[name], name)


def path_name(request: web.Request, name: str = "name") -> str:
    """A name from the path, ``/api/agents/{name}``."""
    value = text(request.match_info[name], name, MAX_NAME_CHARS, strip=False)
    if not value:
        raise BadParameter(f"parameter {name!r} is required")
    return value


def check_json(value: Any, name: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` or with strings PostgreSQL rejects."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadParameter(f"parameter {name!r} nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    problem = text_problem(key)
                    if problem:
                        raise BadParameter(f"parameter {name!r}: a key {problem}")
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise BadParameter(f"parameter {name!r} {problem}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadParameter(f"parameter {name!r} must hold finite numbers only")


def parse_json(raw: str, name: str = "body", *, check: bool = True) -> Any:
    """``raw`` parsed as JSON, bounded in depth (``check``: see :func:`check_json`); a 400 names ``name``."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadParameter(f"parameter {name!r} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise BadParameter(f"parameter {name!r} is not valid JSON: {_shown(str(exc))}") from None
    if check:
        check_json(value, name)
    return value


async def body(request: web.Request) -> dict[str, Any]:
    """A POST body, JSON or form-encoded: an object whose strings PostgreSQL accepts."""
    if not request.can_read_body:
        return {}
    if request.content_type == "application/json":
        try:
            raw = await request.text()
        except (UnicodeDecodeError, LookupError):
            raise BadParameter("parameter 'body' is not text in its charset") from None
        data = parse_json(raw, check=False)
        if not isinstance(data, dict):
            raise BadParameter("parameter 'body' must be a JSON object")
        for key, value in data.items():
            problem = text_problem(key)
            if problem:
                raise BadParameter(f"parameter {_shown(key)} {problem}")
            check_json(value, key)
        return data
    try:
        form = await request.post()
    except (ValueError, LookupError):
        raise BadParameter("parameter 'body' is not a valid form") from None
    fields: dict[str, Any] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            raise BadParameter(f"parameter {key!r} must be a text field, not a file")
        problem = text_problem(key) or text_problem(value)
        if problem:
            raise BadParameter(f"parameter {_shown(key)} {problem}")
        fields[key] = value
    return fields


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
