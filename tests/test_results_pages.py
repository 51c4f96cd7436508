"""The results pages (docs/results/*.md) and their writer, benchmarks/results.py: a benchmark
replaces its own marked table and nothing else, every marker is closed, every page names its
command, and every marked table has a benchmark that writes it."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import results  # noqa: E402

PAGE = """# Results: a page

Measured with `python benchmarks/x.py`.

<!-- results:first -->
| a | b |
| --- | --- |
| 1 | 2 |
<!-- /results:first -->

Prose between the tables,  with odd  spacing\tand a tab.

<!-- results:second -->
| c |
| --- |
| 3 |
<!-- /results:second -->
trailing text without a final newline"""


@pytest.fixture
def pages(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    return tmp_path


def test_write_table_replaces_only_its_section(pages):
    (pages / "p.md").write_text(PAGE, encoding="utf-8")
    table = results.markdown_table(["x", "y"], [[1.5, "z"]])
    results.write_table("p", "first", table, command="python benchmarks/x.py --write-results")
    text = (pages / "p.md").read_text(encoding="utf-8")
    head, rest = PAGE.split("<!-- results:first -->\n", 1)
    tail = rest.split("<!-- /results:first -->", 1)[1]
    assert text.startswith(head + "<!-- results:first -->\n| x | y |\n| --- | --- |\n| 1.5 | z |\n\n")
    assert text.endswith("<!-- /results:first -->" + tail)  # the rest byte for byte, the other table too
    written = text[len(head):len(text) - len(tail)]
    note = re.search(r"Written by `python benchmarks/x.py --write-results` on (\d{4}-\d\d-\d\d) \((.+)\)\.", written)
    assert note and "cores" in note.group(2) and "torch " in note.group(2)
    # Writing again gives the same page: nothing accumulates between the markers.
    results.write_table("p", "first", table, command="python benchmarks/x.py --write-results")
    assert (pages / "p.md").read_text(encoding="utf-8") == text


def test_write_table_appends_a_missing_section_and_creates_a_missing_page(pages):
    (pages / "p.md").write_text(PAGE, encoding="utf-8")
    results.write_table("p", "third", "| t |\n| --- |\n| 4 |", command="python benchmarks/t.py")
    text = (pages / "p.md").read_text(encoding="utf-8")
    assert text.startswith(PAGE + "\n\n<!-- results:third -->\n| t |")
    assert text.endswith("<!-- /results:third -->\n")
    results.write_table("new", "only", "| n |\n| --- |\n| 5 |", command="python benchmarks/n.py")
    new = (pages / "new.md").read_text(encoding="utf-8")
    assert new.startswith("# Results: new\n\nMeasured with `python benchmarks/n.py`.\n\n<!-- results:only -->\n")
    assert list(pages.glob(".*.tmp")) == []  # the atomic write left no temp file


def test_write_table_refuses_a_half_marked_section(pages):
    (pages / "p.md").write_text(PAGE.replace("<!-- /results:second -->", ""), encoding="utf-8")
    with pytest.raises(ValueError, match="results:second"):
        results.write_table("p", "second", "| c |", command="python benchmarks/x.py")
    assert (pages / "p.md").read_text(encoding="utf-8") == PAGE.replace("<!-- /results:second -->", "")


def test_default_command_names_the_script_from_the_repository():
    argv = [str(BENCHMARKS / "toy2d.py"), "--presets", "kaist", "--set", "a b"]
    assert results.default_command(argv) == "python benchmarks/toy2d.py --presets kaist --set 'a b'"


def marker_names(page: Path) -> tuple[list[str], list[str]]:
    text = page.read_text(encoding="utf-8")
    return re.findall(r"<!-- results:([\w.-]+) -->", text), re.findall(r"<!-- /results:([\w.-]+) -->", text)


RESULT_PAGES = sorted((ROOT / "docs" / "results").glob("*.md"))


@pytest.mark.parametrize("page", RESULT_PAGES, ids=lambda p: p.name)
def test_every_marker_is_closed_and_the_page_names_its_command(page):
    opened, closed = marker_names(page)
    assert opened == closed, f"{page.name}: markers opened {opened} but closed {closed}"
    assert "python benchmarks/" in page.read_text(encoding="utf-8"), f"{page.name} names no benchmark command"


def test_every_marked_table_is_written_by_a_benchmark():
    sources = "\n".join(p.read_text(encoding="utf-8") for p in BENCHMARKS.glob("*.py") if p.name != "results.py")
    orphans = [f"{page.name}: {name}" for page in RESULT_PAGES for name in marker_names(page)[0]
               if f'"{name}"' not in sources]
    assert not orphans, f"marked tables that no benchmark writes: {orphans}"
