"""The in-tree PEP 517 build backend: setuptools, after copying the dashboard's npm assets into the package.

``pyproject.toml`` names this module (``backend-path = ["web/packaging"]``). Before a
wheel or an sdist is built it copies the few files the dashboard serves (htmx and
its SSE extension, minified, with their licences) from ``web/node_modules`` into
``web/static/vendor/``, which ``package_data`` ships, so an installed package
serves a live dashboard without Node.js. When ``web/node_modules`` lacks them it
runs ``npm ci --prefix web`` (pinned by ``web/package-lock.json``); an sdist
already carries ``web/static/vendor/`` and needs neither. Editable installs copy
nothing: a developer's checkout serves ``web/node_modules`` directly.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools

WEB = Path("web")
NODE_MODULES = WEB / "node_modules"
VENDOR = WEB / "static" / "vendor"
ASSETS: tuple[str, ...] = (
    "htmx.org/dist/htmx.min.js",
    "htmx.org/LICENSE",
    "htmx-ext-sse/dist/sse.min.js",
    "htmx-ext-sse/LICENSE",
)
"""The files the dashboard serves or must ship, relative to ``node_modules`` and to ``vendor``."""


class AssetsMissing(RuntimeError):
    """The dashboard's assets are not in web/node_modules and npm cannot fetch them."""


def _npm_ci() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsMissing(
            "building this package needs the dashboard's npm assets (htmx.org, htmx-ext-sse): "
            "web/node_modules lacks them and npm is not on PATH. Install Node.js and npm "
            "(Debian: apt-get install npm), or run `npm ci --prefix web` where npm exists, then build again."
        )
    result = subprocess.run([npm, "ci", "--prefix", str(WEB)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetsMissing(f"`npm ci --prefix web` failed ({result.returncode}):\n{result.stderr[-2000:]}")


def vendor_assets() -> None:
    """Copy :data:`ASSETS` from ``web/node_modules`` (``npm ci`` first if needed) to ``web/static/vendor``."""
    if not all((NODE_MODULES / a).is_file() for a in ASSETS):
        if all((VENDOR / a).is_file() for a in ASSETS):
            return  # built from an sdist, which ships them
        _npm_ci()
        missing = [a for a in ASSETS if not (NODE_MODULES / a).is_file()]
        if missing:
            raise AssetsMissing(f"`npm ci --prefix web` did not install {', '.join(missing)}")
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    for asset in ASSETS:
        target = VENDOR / asset
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NODE_MODULES / asset, target)


def build_wheel(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    """setuptools' wheel, with the dashboard's assets in it."""
    vendor_assets()
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    """setuptools' sdist, with the dashboard's assets in it (so its wheel needs no npm)."""
    vendor_assets()
    return str(_setuptools.build_sdist(sdist_directory, config_settings))


get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
build_editable = _setuptools.build_editable
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
