"""Markdown-aware chunking: heading paths, size limits, overlap, code fences."""

from __future__ import annotations

from agents.ai.chunking import chunk_text


def words(text: str) -> int:
    return len(text.split())


DOC = """# Guide

Intro paragraph.

## Install

Run the installer.

```bash
# not a heading
pip install thing
```

### On Linux

Use apt.

## Use

""" + " ".join(f"Sentence number {n} is here." for n in range(200))


def test_chunks_follow_headings_and_keep_the_path() -> None:
    chunks = chunk_text(DOC, "guide", words, 256)
    headings = [c.heading for c in chunks]
    assert headings[0] == "Guide"
    assert "Guide > Install" in headings
    assert "Guide > Install > On Linux" in headings
    assert not any("not a heading" in h for h in headings)
    install = next(c for c in chunks if c.heading == "Guide > Install")
    assert "# not a heading" in install.content  # fenced code stays in its section
    assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_long_sections_split_near_800_characters_with_overlap() -> None:
    use = [c for c in chunk_text(DOC, "guide", words, 256) if c.heading == "Guide > Use"]
    assert len(use) > 3
    assert all(len(c.content) <= 800 for c in use)
    first_tail = use[0].content.split()[-3:]
    assert " ".join(first_tail) in use[1].content  # consecutive chunks overlap


def test_no_chunk_exceeds_the_token_limit() -> None:
    chunks = chunk_text(DOC, "guide", words, 40)
    assert all(words(f"{c.heading}\n{c.content}") <= 40 for c in chunks)


def test_plain_text_uses_the_title_as_heading() -> None:
    [chunk] = chunk_text("just some notes", "notes", words, 256)
    assert chunk.heading == "notes" and chunk.content == "just some notes"
