"""The input validators: the API's parameter checks, event cursors, the CLI's cleaning and loading."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click
import pytest

from agents.cli.ai import expand
from agents.cli.queue import _json_arg
from agents.cli.root import FiniteFloat, clean
from agents.runtime.loader import load_object
from bus import ai
from bus.errors import InvalidArgument
from bus.events import parse_cursor
from web.api.common import (
    BadParameter,
    check_json,
    finite_number,
    json_type,
    parse_json,
    text,
    whole_number,
)

BIG = 2**63 - 1


@pytest.mark.parametrize("raw", ["12", 12, "+3", str(BIG), BIG])
def test_whole_number_takes_ascii_digits_within_bigint(raw: Any) -> None:
    assert whole_number(raw, "id") == int(raw)


@pytest.mark.parametrize(
    "raw", ["１２", "٣", str(BIG + 1), BIG + 1, "0", "-1", "1.5", 1.0, True, None, [], "", " 1"]
)
def test_whole_number_refuses_and_names_the_parameter(raw: Any) -> None:
    with pytest.raises(BadParameter, match="'id'"):
        whole_number(raw, "id")


@pytest.mark.parametrize("raw", [1, 1.5, "60", "3600.25", 86400])
def test_finite_number_in_bounds(raw: Any) -> None:
    assert finite_number(raw, "s", 1, 86400) == float(raw)


@pytest.mark.parametrize(
    "raw",
    ["inf", "-inf", "nan", math.inf, math.nan, 1e308, "1e308", -0.0, "-0", 0, True, [], {}, None, "x" * 50],
)
def test_finite_number_refuses(raw: Any) -> None:
    with pytest.raises(BadParameter, match="'s'"):
        finite_number(raw, "s", 1, 86400)


def test_finite_number_turns_minus_zero_into_zero() -> None:
    assert math.copysign(1, finite_number("-0", "s", 0, 1)) == 1


def test_text() -> None:
    assert text("  padded ", "c") == "padded"
    assert text(None, "c", default="web") == "web"
    for bad in ("a\x00b", "\ud800", 5, ["x"], "x" * 2001):
        with pytest.raises(BadParameter, match="'c'"):
            text(bad, "c")


def test_json_type() -> None:
    assert json_type({"a": "b"}, "m", dict) == {"a": "b"}
    for bad, kind in (("x", dict), ({}, list), (True, int), (5, str)):
        with pytest.raises(BadParameter, match="'m'"):
            json_type(bad, "m", kind)


def test_json_depth_and_strings() -> None:
    with pytest.raises(BadParameter, match=r"'body'.*deeper"):
        parse_json("[" * 100000)
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(BadParameter, match=r"'p'.*deeper"):
        check_json(deep, "p")
    for bad in ({"k\x00": 1}, ["\x00"], {"a": "\udc80"}, [math.inf]):
        with pytest.raises(BadParameter, match="'p'"):
            check_json(bad, "p")
    check_json({"a": [1, "two", {"three": 3.0}]}, "p")


@pytest.mark.parametrize("cursor", ["0:0", "12:34", f"{BIG}:{BIG}"])
def test_parse_cursor_takes_ascii_digits_within_bigint(cursor: str) -> None:
    xid, event_id = cursor.split(":")
    assert parse_cursor(cursor) == (int(xid), int(event_id))


@pytest.mark.parametrize(
    "cursor",
    [
        "１２:３",
        "12:３",
        "٣:1",
        f"{BIG + 1}:1",
        f"1:{BIG + 1}",
        "1",
        ":",
        "1:",
        "-1:2",
        "1:2:3",
        " 1:2",
        "08:1",
        "010:1",
        "1:01",
        "00:0",
    ],
)
def test_parse_cursor_refuses(cursor: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed event cursor"):
        parse_cursor(cursor)


def test_questions_and_queries_are_bounded() -> None:
    assert ai.AskRequest.checked("  why?  ", 10).question == "why?"
    with pytest.raises(InvalidArgument, match=r"'question'.*at most 10"):
        ai.AskRequest.checked("x" * 11, 10)
    for bad in ("", "   ", 5, "a\x00"):
        with pytest.raises(InvalidArgument, match="'question'"):
            ai.AskRequest.checked(bad)
    with pytest.raises(InvalidArgument, match="'question'"):
        ai.AskRequest.from_dict({"question": "x" * 900_000})
    with pytest.raises(InvalidArgument, match="'q'"):
        ai.check_query("x" * (ai.MAX_QUERY_CHARS + 1))
    with pytest.raises(InvalidArgument, match="k"):
        ai.SearchRequest.from_dict({"q": "x", "k": "１"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("note \x1b]0;pwned\x07 here", "note ?]0;pwned? here"),
        ("\x1b[2Jcleared", "?[2Jcleared"),
        ("c1 \x9b31m red", "c1 ?31m red"),
        ("bidi \u202egnp.exe", "bidi ?gnp.exe"),
        ("keeps\ttabs\nand lines", "keeps\ttabs\nand lines"),
        (None, ""),
        (42, "42"),
    ],
)
def test_clean_strips_control_characters(raw: Any, expected: str) -> None:
    assert clean(raw) == expected


def test_clean_one_line() -> None:
    assert clean("two\nlines\r\tand\x1b", one_line=True) == "two lines and?"


def test_finite_float_option() -> None:
    kind = FiniteFloat(1, 100)
    assert kind.convert("2.5", None, None) == 2.5
    for bad in ("nan", "inf", "1e308", "0", "x"):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, None, None)


def test_json_arguments_are_bounded_and_typed() -> None:
    assert _json_arg("PAYLOAD", '{"n": 1}') == {"n": 1}
    with pytest.raises(InvalidArgument, match="PAYLOAD nests deeper"):
        _json_arg("PAYLOAD", "[" * 100000)
    with pytest.raises(InvalidArgument, match="PAYLOAD nests deeper"):
        _json_arg("PAYLOAD", "[" * 100 + "]" * 100)
    with pytest.raises(InvalidArgument, match="--payload must be a JSON object"):
        _json_arg("--payload", "[1]", object_only=True)


@pytest.mark.parametrize("spec", ["../x:y", "./x:y", "x..y:z", ".x:y", "x:", ":y", "x:y.z", "é:x", "x:é"])
def test_loader_refuses_malformed_specs(spec: str) -> None:
    with pytest.raises(InvalidArgument, match=r"is not package\.module:Name"):
        load_object(spec, what="agent", example="pkg.mod:Agent")


def test_loader_turns_a_failing_import_into_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "h4_boom_at_import.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    (tmp_path / "h4_bad_syntax.py").write_text("def (:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InvalidArgument, match=r"RuntimeError: boom \("):
        load_object("h4_boom_at_import:Agent", what="agent", example="pkg.mod:Agent")
    with pytest.raises(InvalidArgument, match="SyntaxError"):
        load_object("h4_bad_syntax:Agent", what="agent", example="pkg.mod:Agent")


def test_ingest_does_not_follow_symlinks_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# secret\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "deep.md").write_text("# deep\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "inside.md").write_text("# inside\n")
    (docs / "sub" / "other.md").write_text("# other\n")
    (docs / "leak.md").symlink_to(outside / "secret.md")
    (docs / "dirlink").symlink_to(outside / "dir")
    (docs / "alias.md").symlink_to(docs / "sub" / "other.md")  # inside: fine
    notes: list[str] = []
    found = expand((str(docs),), note=notes.append)
    assert sorted(p.name for p in found) == ["alias.md", "inside.md", "other.md"]
    assert len(notes) == 1 and "leak.md" in notes[0] and "outside" in notes[0]
    # A file named explicitly is the user's choice, even through a symlink.
    assert expand((str(docs / "leak.md"),), note=notes.append) == [docs / "leak.md"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_ingest_skips_unreadable_files_in_a_folder_and_refuses_one_named(tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("# ok\n")
    locked = tmp_path / "locked.md"
    locked.write_text("# locked\n")
    locked.chmod(0)
    try:
        notes: list[str] = []
        assert expand((str(tmp_path),), note=notes.append) == [tmp_path / "ok.md"]
        assert len(notes) == 1 and "locked.md" in notes[0]
        with pytest.raises(InvalidArgument, match="cannot read"):
            expand((str(locked),))
    finally:
        locked.chmod(0o644)
