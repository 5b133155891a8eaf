"""The outside corpus: chosen pages of PostgreSQL's own documentation, turned into Markdown at bench time.

Debian's ``postgresql-doc-15`` package installs the HTML manual under
``/usr/share/doc/postgresql-doc-15/html``. :func:`write_corpus` converts the
pages of :data:`PAGES` (the ones questions point at) and :data:`DISTRACTORS`
(neighbours on the same topics, so retrieval is not trivial) into one Markdown
file each: the page title as ``#``, its sections as ``##`` and ``###``, with the
section numbers ("5.4.1.") dropped. Nothing of the manual is committed; the
questions (``rag_eval_pgdocs.json``) are ours.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

DOC_DIR = Path("/usr/share/doc/postgresql-doc-15/html")
INSTALL_HINT = "apt-get install -y postgresql-doc-15"

PAGES = (
    "ddl-constraints",
    "ddl-default",
    "ddl-generated-columns",
    "ddl-alter",
    "ddl-priv",
    "ddl-rowsecurity",
    "ddl-schemas",
    "ddl-partitioning",
    "ddl-inherit",
    "dml-returning",
    "queries-with",
    "queries-table-expressions",
    "queries-limit",
    "datatype-numeric",
    "datatype-json",
    "datatype-datetime",
    "datatype-enum",
    "rangetypes",
    "functions-string",
    "functions-json",
    "functions-window",
    "functions-conditional",
    "functions-sequence",
    "tutorial-transactions",
    "transaction-iso",
    "explicit-locking",
    "indexes-types",
    "indexes-multicolumn",
    "indexes-partial",
    "indexes-expressional",
    "indexes-index-only-scans",
    "using-explain",
    "populate",
    "routine-vacuuming",
    "backup-dump",
    "continuous-archiving",
    "warm-standby",
    "logical-replication-publication",
    "runtime-config-resource",
    "runtime-config-wal",
    "auth-pg-hba-conf",
    "auth-password",
    "textsearch-controls",
    "plpgsql-control-structures",
    "plpgsql-trigger",
    "sql-notify",
    "sql-listen",
    "sql-copy",
    "sql-cluster",
    "sql-createindex",
    "sql-truncate",
    "sql-altertable",
    "libpq-pgpass",
    "app-pgdump",
    "app-psql",
)
"""Pages that answer the questions."""

DISTRACTORS = (
    "ddl-basics",
    "ddl-system-columns",
    "ddl-depend",
    "dml-insert",
    "dml-update",
    "dml-delete",
    "queries-select-lists",
    "queries-union",
    "queries-order",
    "queries-values",
    "datatype-character",
    "datatype-boolean",
    "datatype-money",
    "datatype-uuid",
    "datatype-textsearch",
    "arrays",
    "functions-math",
    "functions-datetime",
    "functions-aggregate",
    "functions-subquery",
    "functions-comparisons",
    "functions-admin",
    "mvcc-intro",
    "applevel-consistency",
    "indexes-ordering",
    "indexes-unique",
    "indexes-opclass",
    "planner-stats",
    "explicit-joins",
    "non-durability",
    "backup-file",
    "hot-standby",
    "logical-replication-subscription",
    "runtime-config-connection",
    "runtime-config-query",
    "runtime-config-logging",
    "runtime-config-autovacuum",
    "auth-methods",
    "client-authentication-problems",
    "textsearch-intro",
    "textsearch-tables",
    "plpgsql-declarations",
    "plpgsql-errors-and-messages",
    "sql-createtrigger",
    "sql-vacuum",
    "sql-analyze",
    "sql-reindex",
    "sql-createtable",
    "sql-createview",
    "sql-creatematerializedview",
    "sql-lock",
    "sql-prepare",
    "libpq-envars",
    "libpq-connect",
    "app-pgrestore",
    "app-pgbasebackup",
    "wal-configuration",
    "sql-createsequence",
    "sql-createpolicy",
    "sql-grant",
)
"""Pages on the same topics that no question points at."""

_ADMONITIONS = {"note", "tip", "warning", "caution", "important"}
_SKIP_CLASSES = {"navheader", "navfooter", "toc", "list-of-tables", "list-of-examples", "list-of-figures"}
_BLOCKS = {"p", "dd", "dt", "li", "tr", "table", "blockquote", "div", "pre"}
_NUMBER = re.compile(r"^(?:[A-Z]?\d+(?:\.\d+)*\.|Chapter \d+\.|Appendix [A-Z]\.)\s+")


def clean_heading(text: str) -> str:
    """A heading without its section number: ``"5.4.1. Check Constraints"`` -> ``"Check Constraints"``."""
    return _NUMBER.sub("", " ".join(text.split()))


class _Converter(HTMLParser):
    """DocBook HTML of one manual page to Markdown: headings, paragraphs, lists, code blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._text: list[str] = []
        self._skip_depth = 0  # >0 while inside navigation or a table of contents
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, opened a skipped region, an admonition)
        self._admonition = 0  # >0 inside a Note/Tip box: its "Note" title is no section heading
        self._refentry = False  # a command's page (NOTIFY, pg_dump): its title and sections are all h2
        self._heading: int | None = None
        self._first_level: int | None = None
        self._pre = 0
        self._bullet = False  # the next paragraph starts a list item
        self._discard = False  # inside a Note/Tip box's own title
        self.title = ""

    def _flush(self) -> None:
        text = "".join(self._text)
        self._text = []
        if self._pre:
            return
        text = " ".join(text.split())
        if text and self._discard:
            return
        if text:
            if self._bullet:
                text, self._bullet = f"- {text}", False
            self.lines.append(text)
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"br", "hr", "img", "meta", "link", "col"}:
            return
        classes = set((dict(attrs).get("class") or "").split())
        skipped = (
            tag == "head"
            or bool(classes & _SKIP_CLASSES)
            or (tag == "table" and "Navigation" in str(dict(attrs)))
        )
        admonition = tag == "div" and bool(classes & _ADMONITIONS)
        self._stack.append((tag, skipped, admonition))
        if skipped:
            self._skip_depth += 1
        if admonition:
            self._admonition += 1
        if "refnamediv" in classes:
            self._refentry = True
        if self._skip_depth:
            return
        if tag in {"h1", "h2", "h3", "h4", "h5"}:
            self._flush()
            if self._admonition:
                self._discard = True
            else:
                self._heading = int(tag[1])
        elif tag == "pre":
            self._flush()
            self._pre += 1
            self.lines.append("```")
        elif tag in _BLOCKS:
            self._flush()
            if tag == "li":
                self._bullet = True

    def handle_endtag(self, tag: str) -> None:
        if tag in {"br", "hr", "img", "meta", "link", "col"}:
            return
        while self._stack:
            open_tag, skipped, admonition = self._stack.pop()
            if skipped:
                self._skip_depth -= 1
            if admonition:
                self._admonition -= 1
            if open_tag == tag:
                break
        if self._skip_depth:
            return
        if tag in {"h1", "h2", "h3", "h4", "h5"} and self._discard:
            self._text = []
            self._discard = False
        elif tag in {"h1", "h2", "h3", "h4", "h5"} and self._heading is not None:
            text = clean_heading("".join(self._text))
            self._text = []
            if text:
                if self._first_level is None:
                    self._first_level = self._heading - (1 if self._refentry else 0)
                    self.title = text
                    depth = 1
                else:
                    depth = max(2, self._heading - self._first_level + 1)
                self.lines.extend([f"{'#' * min(depth, 6)} {text}", ""])
            self._heading = None
        elif tag == "pre" and self._pre:
            code = "".join(self._text).strip("\n")
            self._text = []
            self._pre -= 1
            self.lines.extend([*code.splitlines(), "```", ""])
        elif tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def to_markdown(html: str) -> tuple[str, str]:
    """(title, Markdown) of one manual page."""
    converter = _Converter()
    converter.feed(html)
    converter.close()
    text = "\n".join(converter.lines)
    return converter.title, re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def available(doc_dir: Path | None = None) -> bool:
    """Whether the manual's HTML is installed (in ``doc_dir``, by default :data:`DOC_DIR`)."""
    folder = DOC_DIR if doc_dir is None else doc_dir
    return all((folder / f"{page}.html").is_file() for page in PAGES)


def write_corpus(dest: Path, doc_dir: Path | None = None) -> list[Path]:
    """Convert every page of :data:`PAGES` and :data:`DISTRACTORS` into ``dest/<page>.md``."""
    doc_dir = DOC_DIR if doc_dir is None else doc_dir
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for page in (*PAGES, *DISTRACTORS):
        source = doc_dir / f"{page}.html"
        if not source.is_file():
            continue
        _, markdown = to_markdown(source.read_text(encoding="utf-8", errors="replace"))
        path = dest / f"{page}.md"
        path.write_text(markdown, encoding="utf-8")
        paths.append(path)
    return paths
