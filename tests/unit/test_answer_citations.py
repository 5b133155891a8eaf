"""Answers cite only retrieved sections: markers that point at none are dropped, the cited ones listed."""

from __future__ import annotations

from agents.ai import answers
from bus.knowledge import Hit

HITS = [
    Hit("README.md", "A > Queue", "Enqueue with bg.enqueue.", 0.1),
    Hit("docs/x.md", "X > SSE", "Streams.", 0.05),
]


def test_markers_past_the_retrieved_sections_are_dropped() -> None:
    assert answers.only_retrieved("Use bg.enqueue [1] or SSE [2], see [3] and [0].", HITS) == (
        "Use bg.enqueue [1] or SSE [2], see and."
    )


def test_cited_lists_only_what_the_answer_cites() -> None:
    assert answers.cited("Use bg.enqueue [1].", HITS) == [
        {"n": 1, "source": "README.md", "heading": "A > Queue"}
    ]
    assert answers.cited("Nothing here [7].", HITS) == []


def test_the_extractive_answer_cites_its_sections() -> None:
    text = answers.extractive("how do I enqueue", HITS, {})
    assert [c["n"] for c in answers.cited(text, HITS)] == [1, 2]
    assert answers.only_retrieved(text, HITS) == text
