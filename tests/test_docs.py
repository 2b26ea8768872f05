"""The README and docs/ as a newcomer meets them: every relative link and anchor resolves, every screenshot in
docs/ is shown somewhere, the README stays short and keeps the set-up commands on its first screen, and the
Python API example calls only what ``vistext.Service`` has."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 200
FIRST_SCREEN = 30  # lines a terminal or a repository page shows before any scrolling
SETUP_COMMANDS = ("bash scripts/setup.sh && .venv/bin/vistext demo", "bash scripts/test.sh")

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower-cased, without punctuation, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown file, numbered as GitHub numbers repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(path: Path) -> list[str]:
    return [target for line in prose_lines(path) for target in LINK.findall(line)]


def broken_link(page: Path, target: str) -> str | None:
    """Why ``target`` (a link written in ``page``) does not resolve, or None when it does."""
    if target.startswith(EXTERNAL):
        return None
    file_part, _, anchor = target.partition("#")
    linked = (page.parent / file_part).resolve() if file_part else page
    if not linked.exists():
        return f"{page.name}: link to {target!r}: no file {linked}"
    if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        return f"{page.name}: link to {target!r}: no heading with anchor #{anchor} in {linked.name}"
    return None


def test_the_pages_exist() -> None:
    assert README.is_file()
    assert DOCS, "docs/*.md: no documentation pages found"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = [problem for target in links(page) if (problem := broken_link(page, target))]
    assert not problems, "\n".join(problems)


def test_the_readme_is_short_and_starts_with_the_setup_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    first_screen = "\n".join(lines[:FIRST_SCREEN])
    for command in SETUP_COMMANDS:
        assert command in first_screen, f"README.md: {command!r} is not in its first {FIRST_SCREEN} lines"


def test_every_screenshot_in_docs_is_shown_somewhere() -> None:
    shown = {
        (page.parent / target.partition("#")[0]).resolve()
        for page in PAGES
        for target in links(page)
        if not target.startswith(EXTERNAL)
    }
    images = [path for path in (ROOT / "docs").iterdir() if path.suffix.lower() in {".png", ".jpg", ".gif", ".svg"}]
    missing = [path.name for path in images if path.resolve() not in shown]
    assert not missing, f"docs/: images no page links to: {missing}"


def test_the_readme_python_example_calls_what_service_has() -> None:
    from vistext.service import Service

    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md: no Python example"
    called = set(re.findall(r"\bservice\.(\w+)\(", "\n".join(blocks)))
    assert called, "README.md: the Python example calls no Service method"
    missing = sorted(name for name in called if not callable(getattr(Service, name, None)))
    assert not missing, f"README.md's Python example calls Service methods that do not exist: {missing}"


def test_the_slug_matches_github() -> None:
    assert slug("What `--json` prints") == "what---json-prints"
    assert slug("Text ↔ image retrieval") == "text--image-retrieval"
    assert slug("2026-12 audit (issue 21)") == "2026-12-audit-issue-21"
    assert slug("ANN: recall@10 against exact search, single-query latency") == (
        "ann-recall10-against-exact-search-single-query-latency"
    )
