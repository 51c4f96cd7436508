"""`denoiselab report RUN_DIR|RUNS_DIR`: a run's page, or the comparison page over a folder of runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(args) -> int:
    from ..io import log
    from ..viz.compare import write_pages

    pages = write_pages(Path(args.path), Path(args.out) if args.out else None)
    for p in pages[1:]:
        log(f"wrote {p}")
    # The page asked for goes to stdout, last, so scripts can open it.
    print(pages[0])
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="report.html: one run's page, or a comparison page over a folder of runs",
                       description="A run directory gets RUN_DIR/report.html (config, loss, pictures, metrics "
                       "with floors). A folder of runs gets FOLDER/report.html: one sortable row per run, "
                       "linking to each run's page (rebuilt too), with the loss curves overlaid.")
    p.add_argument("path", metavar="RUN_DIR|RUNS_DIR", help="a run directory, or a folder of run directories")
    p.add_argument("--out", default=None, help="write the page here instead of PATH/report.html")
    p.set_defaults(fn=cmd_report)
