"""The retrieval evaluation sets (ours and the outside one), what counts as a hit, the paraphrase rule.

Our set (``rag_eval.json``) asks about README.md and docs/. The outside set
(``rag_eval_pgdocs.json``) asks about PostgreSQL's manual (:mod:`agents.bench.pgdocs`):
each case names the page and the heading path of the section that answers it,
and says whether it is a paraphrase. A paraphrase shares no key term with the
page title or the heading path (:func:`key_terms`), so it can only be found by
meaning: the case that made issue 14.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OURS_FILE = Path(__file__).with_name("rag_eval.json")
OUTSIDE_FILE = Path(__file__).with_name("rag_eval_pgdocs.json")

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "in",
        "on",
        "to",
        "for",
        "with",
        "from",
        "by",
        "using",
        "as",
        "at",
        "its",
        "is",
        "into",
        "how",
        "what",
    }
)


@dataclass(frozen=True)
class Case:
    """One question, where its answer is, and whether it paraphrases."""

    q: str
    source: str
    """How the answering file's path ends (``README.md``, ``ddl-constraints.md``)."""
    heading: str
    """The heading path of the answering section (outside set), or its last heading (ours)."""
    paraphrase: bool = False
    full_path: bool = False
    """Whether :attr:`heading` is a whole heading path (hits in its subsections count too)."""

    def matches(self, source: str, heading: str) -> bool:
        """Whether a hit from ``source`` under ``heading`` is this case's answer."""
        if not source.endswith(self.source):
            return False
        if self.full_path:
            return heading == self.heading or heading.startswith(self.heading + " > ")
        return heading.split(" > ")[-1] == self.heading


def ours() -> list[Case]:
    """Our own questions about our own docs."""
    return [Case(c["q"], c["source"], c["heading"]) for c in json.loads(OURS_FILE.read_text())]


def outside() -> list[Case]:
    """The questions about PostgreSQL's manual."""
    return [outside_case(c) for c in json.loads(OUTSIDE_FILE.read_text())]


def outside_case(raw: dict[str, Any]) -> Case:
    return Case(raw["q"], f"{raw['page']}.md", raw["path"], bool(raw["paraphrase"]), full_path=True)


def _norm(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def words(text: str) -> set[str]:
    """Lowercase word stems of ``text`` (a plural ``s`` dropped), without stopwords."""
    return {_norm(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def key_terms(heading_path: str) -> set[str]:
    """The words of a section's heading path (page title first) that a paraphrase must avoid."""
    return words(heading_path)


def shared_terms(question: str, heading_path: str) -> set[str]:
    """Key terms of the section that the question uses: same stem, or the same first five letters."""
    keys = key_terms(heading_path)
    found = set()
    for w in words(question):
        for k in keys:
            if w == k or (len(w) >= 5 and len(k) >= 5 and w[:5] == k[:5]):
                found.add(k)
    return found
