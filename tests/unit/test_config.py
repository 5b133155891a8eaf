"""Settings: defaults, validation messages that name the setting, and the docs listing them."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from agents.builtin.coordinator import AgentCoordinator
from bus.client import Bus
from bus.config import SETTINGS, load_settings
from bus.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = load_settings({}, env_file=None)
    assert s.database_url is None and s.uses_embedded
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert (s.pool_min, s.pool_max) == (5, 20)
    assert s.data_dir.is_absolute()
    assert s.pgdata == s.data_dir / "pgdata"
    assert s.log_level == "INFO"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("BGAGENTS_PORT", "notaport"),
        ("BGAGENTS_PORT", "70000"),
        ("BGAGENTS_POOL_MAX", "0"),
        ("BGAGENTS_DATA_DIR", "relative/path"),
        ("BGAGENTS_LOG_LEVEL", "LOUD"),
        ("BGAGENTS_CONNECT_TIMEOUT", "-1"),
        ("DATABASE_URL", "garbage"),
        ("DATABASE_URL", "mysql://user@host/db"),
        ("DATABASE_URL", "postgresql://a:b@[bad"),
        ("DATABASE_URL", "postgresql:///nohost"),
        ("BGAGENTS_LISTEN_URL", "http://x"),
    ],
)
def test_bad_value_names_the_setting(env: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({env: value}, env_file=None)
    message = str(err.value)
    assert message.startswith(f"{env}:")
    assert "\n" not in message


def test_pool_min_above_max() -> None:
    with pytest.raises(ConfigError, match="BGAGENTS_POOL_MIN"):
        load_settings({"BGAGENTS_POOL_MIN": "30", "BGAGENTS_POOL_MAX": "20"}, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BGAGENTS_PORT=9001\nBGAGENTS_HOST=0.0.0.0\n")
    s = load_settings({"BGAGENTS_PORT": "9002"}, env_file=env_file)
    assert s.port == 9002
    assert s.host == "0.0.0.0"


def test_embedded_socket_url_is_accepted() -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/pgdata"
    assert load_settings({"DATABASE_URL": url}, env_file=None).database_url == url


def test_readme_table_and_env_example_list_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\|\s*`([A-Z_]+)`", readme, re.M))
    example = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    names = {s.env for s in SETTINGS}
    assert names <= table, f"README settings table lacks {names - table}"
    assert names <= example, f".env.example lacks {names - example}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308"])
@pytest.mark.parametrize(
    "env", ["BGAGENTS_CONNECT_TIMEOUT", "BGAGENTS_EVENT_RETENTION_DAYS", "BGAGENTS_HEADER_TIMEOUT"]
)
def test_numbers_must_be_finite_and_in_bounds(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load_settings({env: value}, env_file=None)


@pytest.mark.parametrize(
    "url",
    ["mysql://ada:s3cret-pw@db/app", "postgresql://ada:s3cret-pw@db:99999/app", "http://ada:s3cret-pw@x/"],
)
def test_a_bad_database_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": url}, env_file=None)
    assert "s3cret-pw" not in str(caught.value)


def test_allowed_hosts_are_a_list_of_names() -> None:
    settings = load_settings({"BGAGENTS_ALLOWED_HOSTS": "Dash.example.com, 10.0.0.5"}, env_file=None)
    assert settings.allowed_hosts == ("dash.example.com", "10.0.0.5")
    with pytest.raises(ConfigError, match="BGAGENTS_ALLOWED_HOSTS"):
        load_settings({"BGAGENTS_ALLOWED_HOSTS": "https://x/"}, env_file=None)


def test_a_multi_host_url_is_accepted_for_failover() -> None:
    url = "postgresql://app:pw@db1:5432,db2:5433/bg?target_session_attrs=read-write"
    assert load_settings({"DATABASE_URL": url}, env_file=None).database_url == url
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({"DATABASE_URL": "postgresql://db1:5432,db2:99999/bg"}, env_file=None)


def test_backup_interval_zero_turns_scheduled_backups_off(tmp_path: Path) -> None:
    def leader_would_back_up(hours: str) -> bool:
        env = {"BGAGENTS_BACKUP_DIR": str(tmp_path / "backups"), "BGAGENTS_BACKUP_INTERVAL_HOURS": hours}
        bus = cast(Bus, SimpleNamespace(settings=load_settings(env, env_file=None)))
        return AgentCoordinator(bus)._backup_due()

    assert load_settings({"BGAGENTS_BACKUP_INTERVAL_HOURS": "0"}, env_file=None).backup_interval_hours == 0
    assert leader_would_back_up("24")  # no backup in the folder yet: one is due
    assert not leader_would_back_up("0")


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "8761", "daily"])
def test_backup_interval_must_be_zero_or_a_positive_number(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"BGAGENTS_BACKUP_INTERVAL_HOURS": value}, env_file=None)
    assert str(err.value).startswith("BGAGENTS_BACKUP_INTERVAL_HOURS: expected 0 (off) or a number")
