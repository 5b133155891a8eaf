"""Settings, read from the environment and an optional ``.env`` file.

Every setting is declared once in :data:`SETTINGS`, with its type, default and
description; the README's settings table and ``.env.example`` list the same
names (a test keeps them in step). A bad value raises :class:`ConfigError`
with one line that names the setting.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import platformdirs
from dotenv import dotenv_values

from bus.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _postgres_url(name: str, raw: str) -> str:
    """Check that ``raw`` looks like a libpq connection URL (errors never show its password)."""
    example = "postgresql://user:password@host:5432/dbname"
    try:
        parts = urlsplit(raw)
        # Several hosts (h1:5432,h2:5432, for failover with target_session_attrs): check each port.
        hosts = parts.netloc.rpartition("@")[2].split(",")
        ports = [urlsplit(f"//{host}").port for host in hosts]
    except ValueError:
        raise ConfigError(f"{name}: not a valid URL; expected {example}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{name}: expected a URL like {example}, got {_redacted(raw)!r}")
    if not parts.hostname and "host" not in parse_qs(parts.query):
        raise ConfigError(f"{name}: the URL names no host; expected {example}")
    for port in ports:
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"{name}: port {port} is out of range")
    return raw


def _int_in(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: expected a number from {low} to {high}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float, *, zero_is_off: bool = False) -> Callable[[str, str], float]:
    """A finite number above ``low`` and at most ``high`` (``nan`` and ``inf`` are refused).

    With ``zero_is_off``, 0 is accepted too: it turns the feature off.
    """
    off = "0 (off) or " if zero_is_off else ""

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected {off}a number, got {raw!r}") from None
        if zero_is_off and value == 0:
            return 0.0
        if not math.isfinite(value) or not low < value <= high:
            raise ConfigError(
                f"{name}: expected {off}a number above {low:g} and at most {high:g}, got {raw!r}"
            )
        return value

    return parse


def _hosts(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of host names (no ports, no schemes)."""
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.\-\[\]:]+", host):
            raise ConfigError(f"{name}: {host!r} is not a host name", hint="e.g. dash.example.com,10.0.0.5")
    return hosts


def _absolute_path(name: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{name}: expected an absolute path, got {raw!r}")
    return path


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}: expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def _choice(*choices: str) -> Callable[[str, str], str]:
    """One of ``choices``, case-insensitive."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name}: expected {' or '.join(choices)}, got {raw!r}")
        return value

    return parse


def _text(name: str, raw: str) -> str:
    return raw


EMBEDDER_KINDS = ("local", "bge-small", "openai", "hashing")
RERANKER_KINDS = ("off", "local")


def _embedder(name: str, raw: str) -> str:
    kind = raw.strip().lower()
    if kind not in EMBEDDER_KINDS:
        raise ConfigError(f"{name}: expected one of {', '.join(EMBEDDER_KINDS)}, got {raw!r}")
    return kind


def _reranker(name: str, raw: str) -> str:
    kind = raw.strip().lower()
    if kind not in RERANKER_KINDS:
        raise ConfigError(f"{name}: expected one of {', '.join(RERANKER_KINDS)}, got {raw!r}")
    return kind


def _http_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected an http(s) URL, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Spec:
    """How one setting is read: its variable, parser, default and meaning."""

    env: str
    field: str
    parse: Callable[[str, str], Any]
    default: str | None
    description: str


SETTINGS: tuple[Spec, ...] = (
    Spec(
        "DATABASE_URL",
        "database_url",
        _postgres_url,
        None,
        "PostgreSQL to use. Unset: start the embedded server in the data dir.",
    ),
    Spec(
        "BGAGENTS_LISTEN_URL",
        "listen_url",
        _postgres_url,
        None,
        "Direct connection for LISTEN and leader locks (must bypass PgBouncer). Unset: DATABASE_URL.",
    ),
    Spec(
        "BGAGENTS_DATA_DIR",
        "data_dir",
        _absolute_path,
        platformdirs.user_data_dir("bgagents"),
        "Absolute path for the embedded server's data and downloaded models.",
    ),
    Spec("BGAGENTS_POOL_MIN", "pool_min", _int_in(0, 1000), "5", "Connections the pool keeps open."),
    Spec("BGAGENTS_POOL_MAX", "pool_max", _int_in(1, 1000), "20", "Most connections the pool opens."),
    Spec(
        "BGAGENTS_STATEMENT_CACHE_SIZE",
        "statement_cache_size",
        _int_in(0, 100000),
        "100",
        "asyncpg's prepared-statement cache; set 0 behind PgBouncer in transaction mode.",
    ),
    Spec(
        "BGAGENTS_CONNECT_TIMEOUT",
        "connect_timeout",
        _float_in(0, 3600),
        "10",
        "Seconds to wait for a database connection.",
    ),
    Spec("BGAGENTS_HOST", "host", _text, "127.0.0.1", "Address the web server binds to."),
    Spec("BGAGENTS_PORT", "port", _int_in(1, 65535), "8000", "Port the web server binds to."),
    Spec(
        "BGAGENTS_TOKEN",
        "token",
        _text,
        None,
        "Token the web server requires; needed to bind beyond 127.0.0.1.",
    ),
    Spec(
        "BGAGENTS_ALLOWED_HOSTS",
        "allowed_hosts",
        _hosts,
        "",
        "Extra Host names the web answers to (behind a proxy); the bound address and localhost always are.",
    ),
    Spec(
        "BGAGENTS_MAX_STREAMS",
        "max_streams",
        _int_in(1, 100000),
        "1000",
        "Most SSE streams one web process serves; beyond it, 429 with Retry-After.",
    ),
    Spec(
        "BGAGENTS_HEADER_TIMEOUT",
        "header_timeout",
        _float_in(0, 3600),
        "10",
        "Seconds a client has to send a request's headers before the web server closes it.",
    ),
    Spec(
        "BGAGENTS_MAX_PAYLOAD_BYTES",
        "max_payload_bytes",
        _int_in(1024, 1073741824),
        "1048576",
        "Largest task or event payload (bytes of JSON) that bg.enqueue and bg.publish accept.",
    ),
    Spec(
        "BGAGENTS_MAX_QUESTION_CHARS",
        "max_question_chars",
        _int_in(1, 100000),
        "4000",
        "Longest question AI help accepts, wherever a question enters.",
    ),
    Spec(
        "BGAGENTS_EVENT_RETENTION_DAYS",
        "event_retention_days",
        _float_in(0, 36500),
        "7",
        "Days events are kept; older cursors get a reset signal.",
    ),
    Spec(
        "BGAGENTS_TASK_RETENTION_DAYS",
        "task_retention_days",
        _float_in(0, 36500),
        "7",
        "Days finished tasks (done, failed, cancelled) are kept.",
    ),
    Spec(
        "BGAGENTS_MONITORING_FILE",
        "monitoring_file",
        _absolute_path,
        None,
        "Your own monitoring.yml (intervals, thresholds, alert rules). Unset: the built-in one.",
    ),
    Spec(
        "BGAGENTS_EMBEDDER",
        "embedder",
        _embedder,
        "local",
        "Embeddings for AI search: local (all-MiniLM-L6-v2 on numpy), bge-small (bge-small-en-v1.5 "
        "on numpy, weights put in place by hand), openai or hashing.",
    ),
    Spec(
        "BGAGENTS_RERANKER",
        "reranker",
        _reranker,
        "off",
        "Rerank the fused top 30 of each search with a local cross-encoder (ms-marco-MiniLM-L-6-v2): "
        "off or local.",
    ),
    Spec(
        "OPENAI_API_KEY",
        "openai_api_key",
        _text,
        None,
        "Enables OpenAI (or a compatible server) for chat, and for embeddings when chosen.",
    ),
    Spec(
        "OPENAI_BASE_URL",
        "openai_base_url",
        _http_url,
        None,
        "An OpenAI-compatible server; enables chat on its own (a placeholder key is sent).",
    ),
    Spec(
        "BGAGENTS_CHAT_MODEL",
        "chat_model",
        _text,
        "gpt-4o-mini",
        "Chat model for AI help when OpenAI (or a compatible server) is configured.",
    ),
    Spec(
        "LANGSMITH_API_KEY",
        "langsmith_api_key",
        _text,
        None,
        "Enables the langsmith-bridge, which forwards every logged LLM exchange to LangSmith.",
    ),
    Spec(
        "LANGSMITH_ENDPOINT",
        "langsmith_endpoint",
        _http_url,
        None,
        "LangSmith's API URL. Unset: LangSmith's public endpoint.",
    ),
    Spec("BGAGENTS_LOG_LEVEL", "log_level", _log_level, "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL."),
    Spec(
        "BGAGENTS_LOG_DIR",
        "log_dir",
        _absolute_path,
        None,
        "Folder for per-agent log files (NAME.log, rotated by size). Unset: standard error only.",
    ),
    Spec(
        "BGAGENTS_LOG_FORMAT",
        "log_format",
        _choice("text", "json"),
        "text",
        "text, or json for log shippers.",
    ),
    Spec(
        "BGAGENTS_BACKUP_DIR",
        "backup_dir",
        _absolute_path,
        None,
        "Folder for the coordinator leader's scheduled backups. Unset: no scheduled backups.",
    ),
    Spec(
        "BGAGENTS_BACKUP_INTERVAL_HOURS",
        "backup_interval_hours",
        _float_in(0, 8760, zero_is_off=True),
        "24",
        "Hours between scheduled backups (with BGAGENTS_BACKUP_DIR); 0 turns scheduled backups off.",
    ),
    Spec(
        "BGAGENTS_BACKUP_KEEP",
        "backup_keep",
        _int_in(1, 1000),
        "7",
        "Scheduled backups kept; older ones are deleted.",
    ),
    Spec(
        "BGAGENTS_CLAIM_BATCH_MAX",
        "claim_batch_max",
        _int_in(1, 10000),
        "100",
        "Upper bound of a worker's adaptive claim batch (a deep backlog drains in larger batches).",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Typed, validated settings. Build it with :func:`load_settings`."""

    database_url: str | None
    listen_url: str | None
    data_dir: Path
    pool_min: int
    pool_max: int
    statement_cache_size: int
    connect_timeout: float
    host: str
    port: int
    token: str | None
    allowed_hosts: tuple[str, ...]
    max_streams: int
    header_timeout: float
    max_payload_bytes: int
    max_question_chars: int
    event_retention_days: float
    task_retention_days: float
    monitoring_file: Path | None
    embedder: str
    reranker: str
    openai_api_key: str | None
    openai_base_url: str | None
    chat_model: str
    langsmith_api_key: str | None
    langsmith_endpoint: str | None
    log_level: str
    log_dir: Path | None
    log_format: str
    backup_dir: Path | None
    backup_interval_hours: float
    backup_keep: int
    claim_batch_max: int

    @property
    def uses_embedded(self) -> bool:
        return self.database_url is None

    @property
    def chat_enabled(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Read settings from ``environ`` (default: the process environment) over ``env_file``."""
    source: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for spec in SETTINGS:
        raw = source.get(spec.env)
        if raw is None or raw.strip() == "":
            raw = spec.default
        values[spec.field] = None if raw is None else spec.parse(spec.env, raw.strip())
    settings = Settings(**values)
    if settings.pool_min > settings.pool_max:
        raise ConfigError(
            f"BGAGENTS_POOL_MIN: {settings.pool_min} is above BGAGENTS_POOL_MAX ({settings.pool_max})"
        )
    return settings


assert {s.field for s in SETTINGS} == {f.name for f in fields(Settings)}
