"""Importing ``package.module:Name`` specs, the one way agents and handlers are loaded."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from bus.errors import InvalidArgument


def load_object(spec: str, *, what: str, example: str) -> Any:
    """Import ``package.module:Name`` and return ``Name``; every failure is an :class:`InvalidArgument`.

    ``what`` names the thing in messages ("agent", "--handler"), and ``example``
    shows a valid spec. The current folder goes on ``sys.path`` first, as
    uvicorn and celery do, so your module is found from your folder.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not _is_dotted_name(module_name) or not (attr.isascii() and attr.isidentifier()):
        raise InvalidArgument(f"{what} {spec!r} is not package.module:Name", hint=f"e.g. {example}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgument(
            f"cannot import {module_name!r} for {what}: {exc}",
            hint="is it installed, or on PYTHONPATH (run from its folder)?",
        ) from exc
    except Exception as exc:  # the module's own code failed while it was imported
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InvalidArgument(
            f"importing {module_name!r} for {what} failed: {type(exc).__name__}: {first}",
            hint="BGAGENTS_LOG_LEVEL=DEBUG shows the traceback",
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise InvalidArgument(f"{module_name} has no {attr!r} for {what}", hint=f"e.g. {example}") from None


def _is_dotted_name(name: str) -> bool:
    """``package.module``: ASCII identifiers joined by dots (no ``..``, ``/`` or leading dot)."""
    return bool(name) and name.isascii() and all(part.isidentifier() for part in name.split("."))
