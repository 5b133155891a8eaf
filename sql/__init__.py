"""All of the project's SQL: ordered migrations and named queries.

Named queries live in ``sql/queries/<area>.sql`` as blocks::

    -- name: get_state :one
    -- Fetch one key's value and version.
    SELECT ...;

The suffix picks the asyncpg call: ``:many`` fetch, ``:one`` fetchrow,
``:val`` fetchval, ``:exec`` execute. This package imports nothing from the
project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KINDS = ("many", "one", "val", "exec")
_HEADER = re.compile(r"^--\s*name:\s*(?P<name>\w+)\s*:(?P<kind>\w+)\s*$", re.M)


@dataclass(frozen=True)
class Query:
    """One named query: its name, asyncpg call kind, SQL text and doc comment."""

    name: str
    kind: str
    sql: str
    doc: str


def parse_queries(text: str, origin: str = "<string>") -> dict[str, Query]:
    """Split a ``.sql`` file into its named blocks."""
    found: dict[str, Query] = {}
    headers = list(_HEADER.finditer(text))
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[match.end() : end].strip()
        doc_lines: list[str] = []
        sql_lines: list[str] = []
        for line in body.splitlines():
            if not sql_lines and line.startswith("--"):
                doc_lines.append(line.lstrip("-").strip())
            else:
                sql_lines.append(line)
        name, kind = match["name"], match["kind"]
        if kind not in KINDS:
            raise ValueError(f"{origin}: query {name} has unknown kind :{kind}")
        if name in found:
            raise ValueError(f"{origin}: query {name} is defined twice")
        found[name] = Query(name, kind, "\n".join(sql_lines).strip(), " ".join(doc_lines))
    return found


def _load_all() -> dict[str, Query]:
    queries: dict[str, Query] = {}
    folder = resources.files(__name__) / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, query in parse_queries(entry.read_text("utf-8"), entry.name).items():
            if name in queries:
                raise ValueError(f"{entry.name}: query {name} is also defined elsewhere")
            queries[name] = query
    return queries


queries: dict[str, Query] = _load_all()

MIGRATIONS_DIR = Path(str(resources.files(__name__) / "migrations"))
