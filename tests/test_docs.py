"""The documentation stays true to the tree: the site builds strictly (a broken link or a missing
docstring target fails it), the README stays short, every results page names the command that
measures it, and every relative link in the README reaches a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"
README_MAX_LINES = 250

# [text](target) and ![alt](target); a target ends at whitespace or ")", an optional "title" after it.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(markdown: str) -> list[str]:
    """Link targets outside fenced code blocks that point into the repository (no scheme, no
    bare anchor), with any #anchor or ?query cut off."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(re.split(r"[#?]", target, maxsplit=1)[0])
    return targets


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs extra: pip install -e '.[docs]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: move detail into docs/ and link it"
    )


def test_every_results_page_names_its_command():
    pages = sorted(RESULTS.glob("*.md"))
    assert pages, "docs/results/ holds no pages"
    silent = [
        p.name
        for p in pages
        if not any(
            "python benchmarks/" in line or "denoiselab " in line for line in p.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert not silent, f"results pages that name no command that measures them: {silent}"


def test_every_results_table_is_between_markers():
    """A benchmark rewrites a table between <!-- results:NAME --> and <!-- /results:NAME -->: every
    opening marker is closed, and names are unique per page."""
    for page in sorted(RESULTS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        opened = re.findall(r"<!-- results:([\w.-]+) -->", text)
        closed = re.findall(r"<!-- /results:([\w.-]+) -->", text)
        assert opened, f"{page.name}: no <!-- results:NAME --> marker"
        assert opened == closed, f"{page.name}: markers opened {opened} but closed {closed}"
        assert len(set(opened)) == len(opened), f"{page.name}: a marker name is used twice"


def test_readme_links_resolve():
    targets = relative_links(README.read_text(encoding="utf-8"))
    assert targets, "README.md links to nothing"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_relative_links_ignores_code_urls_and_anchors():
    md = '[a](docs/x.md#part) ![b](img.png "t") [c](https://e.org) [d](#top)\n```\n[e](nope.md)\n```\n'
    assert relative_links(md) == ["docs/x.md", "img.png"]
