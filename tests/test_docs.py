"""Citations of the project's docs (``docs/method.md §4.4``, ``docs/guarantees.md``) name pages and sections that
exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("ris", "models", "datamodules", "configs", "bench", "tests", "docs")
CITED_PAGE = re.compile(r"\bdocs/(\w+\.md)")
CITED_SECTION = re.compile(r"(?<![\w/])(?:docs/)?(\w+\.md)\)?\s*§\s*(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#+\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def _sources() -> list[Path]:
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*")) if p.suffix in (".py", ".yaml", ".md")]
    return [*files, ROOT / "README.md"]


def test_every_cited_docs_page_and_section_exists():
    pages = {p.name: set(HEADING.findall(p.read_text())) for p in (ROOT / "docs").glob("*.md")}
    missing_pages, missing_sections = set(), set()
    cited = 0
    for path in _sources():
        text = path.read_text()
        where = path.relative_to(ROOT).as_posix()
        for page in CITED_PAGE.findall(text):
            cited += 1
            if page not in pages:
                missing_pages.add(f"{where}: docs/{page}")
        for page, section in CITED_SECTION.findall(text):
            if page in pages and section not in pages[page]:
                missing_sections.add(f"{where}: {page} §{section}")
    assert cited > 100  # the pattern finds the citations
    assert not missing_pages, sorted(missing_pages)
    assert not missing_sections, sorted(missing_sections)
    assert {"4.4", "6.1", "7.3"} <= pages["data.md"]
