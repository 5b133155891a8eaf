"""Markdown-aware chunking: heading sections, split into pieces that fit the embedder.

Chunks follow Markdown headings and keep their heading path ("Quick start >
Then try"); long sections split at paragraph, then sentence, boundaries into
about 800 characters with some overlap, and no chunk exceeds the embedder's
input limit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TARGET_CHARS = 800
OVERLAP_CHARS = 120


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: its place, its heading path and its text."""

    seq: int
    heading: str
    content: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.heading}\n{self.content}".encode()).hexdigest()


def _sections(text: str, title: str) -> Iterable[tuple[str, str]]:
    """(heading path, body) for each Markdown section; code fences never hold headings."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fenced = False

    def flush() -> tuple[str, str]:
        heading = " > ".join(h for _, h in path) or title
        return heading, "\n".join(body).strip()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            heading, content = flush()
            if content:
                yield heading, content
            body = []
            level = len(match.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, match.group(2))]
        else:
            body.append(line)
    heading, content = flush()
    if content:
        yield heading, content


def _pieces(body: str, limit: int) -> list[str]:
    """Split a section body into pieces of at most ``limit`` characters, at paragraph,
    then sentence, then word boundaries."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            units.append(paragraph)
            continue
        for sentence in SENTENCE_END.split(paragraph):
            while len(sentence) > limit:
                cut = sentence.rfind(" ", 0, limit)
                cut = cut if cut > limit // 2 else limit
                units.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                units.append(sentence)
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + 2 + len(unit) > limit:
            pieces.append(current)
            tail = current[-OVERLAP_CHARS:]
            tail = tail[tail.find(" ") + 1 :] if " " in tail else ""
            current = f"{tail} {unit}".strip() if len(tail) + len(unit) < limit else unit
        else:
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def chunk_text(
    text: str, title: str, count_tokens: Callable[[str], int], max_tokens: int, target: int = TARGET_CHARS
) -> list[Chunk]:
    """Chunks of a Markdown or plain-text document."""
    chunks: list[Chunk] = []
    for heading, body in _sections(text, title):
        stack = _pieces(body, target)
        while stack:
            piece = stack.pop(0)
            if count_tokens(f"{heading}\n{piece}") > max_tokens and len(piece) > 40:
                half = max(40, len(piece) // 2)
                stack[:0] = _pieces(piece, half)  # too many word pieces: split smaller
                continue
            chunks.append(Chunk(len(chunks), heading, piece))
    return chunks
