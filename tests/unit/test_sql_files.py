"""The SQL package: named queries parse, and every migration is well-formed."""

from __future__ import annotations

import pytest

from bus.migrate import load_migrations
from sql import parse_queries, queries


def test_named_queries_parse_with_kinds_and_docs() -> None:
    parsed = parse_queries(
        "-- name: one_thing :one\n-- Fetch it.\nSELECT 1;\n\n-- name: more :many\nSELECT 2;\n"
    )
    assert parsed["one_thing"].kind == "one"
    assert parsed["one_thing"].doc == "Fetch it."
    assert parsed["one_thing"].sql == "SELECT 1;"
    assert parsed["more"].sql == "SELECT 2;"


def test_unknown_kind_and_duplicates_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        parse_queries("-- name: x :bogus\nSELECT 1;")
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: x :one\nSELECT 1;\n-- name: x :one\nSELECT 1;")


def test_every_shipped_query_has_sql() -> None:
    assert queries
    for query in queries.values():
        assert query.sql, query.name


def test_migrations_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "init"
