"""The retrieval evaluation sets: sizes, the paraphrase rule checked word by word, the manual's conversion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agents.bench import pgdocs, rag_cases


def test_outside_set_is_big_enough_and_mostly_paraphrases() -> None:
    cases = rag_cases.outside()
    assert len(cases) >= 60
    assert sum(c.paraphrase for c in cases) * 2 >= len(cases)
    assert len({c.q for c in cases}) == len(cases), "a question is asked twice"


def test_paraphrases_share_no_key_term_with_their_section() -> None:
    offenders = {
        c.q: sorted(rag_cases.shared_terms(c.q, c.heading)) for c in rag_cases.outside() if c.paraphrase
    }
    assert {q: terms for q, terms in offenders.items() if terms} == {}


def test_the_rule_catches_key_terms_stems_and_prefixes() -> None:
    path = "Constraints > Check Constraints"
    assert rag_cases.shared_terms("how do I add a check", path) == {"check"}
    assert rag_cases.shared_terms("a constraint on prices", path) == {"constraint"}
    assert rag_cases.shared_terms("constraining prices", path) == {"constraint"}
    assert rag_cases.shared_terms("reject negative prices", path) == set()


def test_direct_questions_do_use_their_sections_terms() -> None:
    """The non-paraphrases are the easy half: each shares a term with its section."""
    direct = [c for c in rag_cases.outside() if not c.paraphrase]
    assert direct
    assert [c.q for c in direct if not rag_cases.shared_terms(c.q, c.heading)] == []


def test_every_case_points_at_a_chosen_page() -> None:
    raw = json.loads(rag_cases.OUTSIDE_FILE.read_text())
    assert {c["page"] for c in raw} <= set(pgdocs.PAGES)
    assert not set(pgdocs.PAGES) & set(pgdocs.DISTRACTORS)
    assert len(pgdocs.PAGES) + len(pgdocs.DISTRACTORS) >= 100


def test_case_matching_counts_subsections_of_the_answer() -> None:
    case = rag_cases.Case("q", "queries-with.md", "WITH Queries > Recursive Queries", full_path=True)
    assert case.matches("/tmp/x/queries-with.md", "WITH Queries > Recursive Queries")
    assert case.matches("/tmp/x/queries-with.md", "WITH Queries > Recursive Queries > Cycle Detection")
    assert not case.matches("/tmp/x/queries-with.md", "WITH Queries > Recursive Queries Two")
    assert not case.matches("/tmp/x/other.md", "WITH Queries > Recursive Queries")
    ours = rag_cases.Case("q", "README.md", "Quick start")
    assert ours.matches("/p/README.md", "Background Agents > Quick start")


PAGE = """<html><head><title>5.4. Constraints</title></head><body>
<div class="navheader"><table summary="Navigation header"><tr><th>Prev</th></tr></table></div>
<div class="sect1" id="DDL-CONSTRAINTS"><div class="titlepage"><h2 class="title">5.4. Constraints</h2></div>
<div class="toc"><dl><dt>5.4.1. Check Constraints</dt></dl></div>
<p>Data types are a way to
   limit the kind of data.</p>
<div class="sect2"><div class="titlepage"><h3 class="title">5.4.1. Check Constraints</h3></div>
<p>A check constraint is the most generic.</p>
<pre class="programlisting">CREATE TABLE products (
    price numeric CHECK (price &gt; 0)
);</pre>
<div class="note"><h3 class="title">Note</h3><p>Not a section.</p></div>
<ul><li><p>one</p></li><li>two</li></ul>
</div></div>
<div class="navfooter">Next</div></body></html>"""


def test_manual_page_becomes_markdown_sections() -> None:
    title, markdown = pgdocs.to_markdown(PAGE)
    assert title == "Constraints"
    assert markdown.startswith("# Constraints\n\nData types are a way to limit the kind of data.\n")
    assert "## Check Constraints" in markdown
    assert "```\nCREATE TABLE products (\n    price numeric CHECK (price > 0)\n);\n```" in markdown
    assert "Note" not in re.findall(r"^#+ (.*)$", markdown, re.M)
    assert "Not a section." in markdown
    assert "- one" in markdown and "- two" in markdown
    assert "Prev" not in markdown and "Next" not in markdown and "5.4.1." not in markdown


def test_command_pages_nest_their_sections_under_the_title() -> None:
    html = (
        '<div class="refnamediv"><h2>NOTIFY</h2><p>NOTIFY — generate a notification</p></div>'
        "<h2>Description</h2><p>Sends.</p><h3>pg_notify</h3><p>Function.</p>"
    )
    _, markdown = pgdocs.to_markdown(html)
    assert re.findall(r"^#+ .*$", markdown, re.M) == ["# NOTIFY", "## Description", "### pg_notify"]


@pytest.mark.skipif(
    not pgdocs.available(), reason=f"PostgreSQL's manual is not installed ({pgdocs.INSTALL_HINT})"
)
def test_every_answer_section_exists_in_the_converted_manual(tmp_path: Path) -> None:
    from agents.ai.chunking import chunk_text

    paths = {p.name: p for p in pgdocs.write_corpus(tmp_path)}
    headings: dict[str, set[str]] = {}
    for case in rag_cases.outside():
        if case.source not in headings:
            text = paths[case.source].read_text()
            headings[case.source] = {c.heading for c in chunk_text(text, "x", lambda s: len(s) // 4, 256)}
        assert any(case.matches(case.source, h) for h in headings[case.source]), case
