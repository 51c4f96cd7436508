"""The published tables: each benchmark writes the table it measures into docs/results/PAGE.md,
between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``, with the command, the date and
the machine on a line under it. A table is regenerated, never edited by hand.

A benchmark writes only when asked (``--write-results``, see :func:`add_write_flag`), so a quick
run with other arguments prints its table and leaves the published one alone.

    from results import add_write_flag, markdown_table, write_table

    write_table("toy2d", "toy2d", markdown_table(["preset", "chamfer"], rows))
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

from denoiselab.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def markdown_row(cells: list) -> str:
    """One line of a markdown table (cells as ``str`` gives them)."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table: the header, its rule and one line per row."""
    return "\n".join([markdown_row(header), "|" + " --- |" * len(header), *map(markdown_row, rows)])


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


def default_command(argv: list[str] | None = None) -> str:
    """``python benchmarks/SCRIPT.py ARGS`` as this process was started (the script relative to the
    repository, so the line reads the same on every machine)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        rel = script.relative_to(ROOT).as_posix()
    except ValueError:
        rel = f"benchmarks/{script.name}"
    return shlex.join(["python", rel, *argv[1:]])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str | None = None) -> str:
    """CPU model, core count, torch version and the GPU: ``device`` names it, else the CUDA device
    this process has used (none when it never touched CUDA)."""
    import torch

    if device is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        device = torch.cuda.get_device_name()
    parts = [cpu_model(), f"{os.cpu_count()} cores", f"torch {torch.__version__}"]
    return ", ".join(parts + ([device] if device else []))


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the lines between NAME's markers replaced by ``body``; everything outside them
    kept byte for byte. Without the markers, a new marked section is appended at the end."""
    begin, end = markers(name)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    section = f"{begin}\n{body.strip(chr(10))}\n{end}"
    if pattern.search(text):
        return pattern.sub(lambda _: section, text, count=1)
    if begin in text or end in text:
        raise ValueError(f"{begin} and {end} must both stand on the page, in that order: fix the markers by hand")
    return f"{text.rstrip(chr(10))}\n\n{section}\n" if text.strip() else f"{section}\n"


def write_table(page: str, name: str, table: str, command: str | None = None, *, device: str | None = None) -> Path:
    """Write ``table`` between NAME's markers in docs/results/PAGE.md, with the line "Written by
    `COMMAND` on DATE (MACHINE)." under it. A missing page is created with a heading and the
    command; a missing section is appended to the page. ``device``: the GPU, when the
    measurement ran on one in another process (see :func:`machine`)."""
    command = command or default_command()
    path = RESULTS / f"{page}.md"
    date = datetime.date.today().isoformat()
    # A blank line before the note: a line right under a table would read as one more row.
    body = f"{table.strip()}\n\nWritten by `{command}` on {date} ({machine(device)})."
    text = path.read_text(encoding="utf-8") if path.is_file() else f"# Results: {page}\n\nMeasured with `{command}`.\n"
    new = replace_section(text, name, body)
    atomic_write(path, lambda tmp: Path(tmp).write_text(new, encoding="utf-8"))
    print(f"wrote the table {name!r} into {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
          file=sys.stderr)
    return path


def add_write_flag(ap: argparse.ArgumentParser, tables: dict[str, str] | None = None) -> None:
    """``--write-results``: write the measured table into docs/results (off by default, so a quick
    run does not overwrite the published table). With ``tables`` (name -> page), the flag takes
    the name of the table this run measures, since one script measures several."""
    what = "docs/results (run with the arguments the page names; without it, nothing is written)"
    if tables is None:
        ap.add_argument("--write-results", action="store_true", help=f"write the table into {what}")
    else:
        ap.add_argument("--write-results", default=None, choices=list(tables), metavar="TABLE",
                        help=f"write the table into the section TABLE of {what}; one of {', '.join(tables)}")
