"""The report pages and the tour notebook against the issue's targets; prints a table.

1. Run page of a finished MNIST run: copied to a scratch folder first (the run itself is never
   written), its report.html built there and loaded in headless chromium: console errors, every
   image loaded and non-blank.
2. Comparison page over (at least) three runs: the finished runs given, each evaluated if it has no
   evaluation yet (`denoiselab evaluate`), topped up with small swiss-roll runs; the table must
   sort by every column both ways, every link resolve, every linked page load cleanly.
3. notebooks/tour.ipynb top to bottom as the test suite runs it (DENOISELAB_TOUR=small), timed.

    python benchmarks/report_check.py [--run runs/mnist] [--compare RUN ...] [--skip-notebook]

``--write-results`` writes the pages' table into docs/results/report-pages.md, section
``report-pages``, and the notebook's to ``tour-notebook`` (unless skipped):

    python benchmarks/report_check.py --eval-num 300 --write-results
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from denoiselab.cli import main as cli  # noqa: E402
from denoiselab.viz import report  # noqa: E402
from denoiselab.viz.compare import write_comparison  # noqa: E402
from denoiselab.viz.pagecheck import Browser  # noqa: E402
from results import add_write_flag, markdown_table, write_table  # noqa: E402


def finished(run: Path) -> bool:
    return (run / "checkpoint.safetensors").is_file() and (run / "samples.png").is_file()


def default_run() -> Path:
    for name in ("mnist", "mnist-class"):
        if finished(Path("runs") / name):
            return Path("runs") / name
    raise SystemExit("no finished run in runs/mnist or runs/mnist-class: pass --run")


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report.html"))
    return dst


def ensure_evaluated(run: Path, num: int) -> None:
    """Runs without an evaluation get one, as a user would: `denoiselab evaluate RUN --ref DATA`."""
    summary = report.read_run(run)
    if summary.evaluations:
        return
    data = summary.config.get("data", {}).get("name")
    args = ["evaluate", str(run), "--ref", data, "--num", str(num)]
    if summary.config.get("data", {}).get("options"):
        raise SystemExit(f"{run}: evaluate it first (its data has options this script does not pass)")
    if cli(args + (["--steps", "25", "--bootstrap", "0"] if data not in ("swiss-roll", "moons") else ["--steps", "200"])):
        raise SystemExit(f"evaluation of {run} failed")


def page_row(what: str, check, seconds: float, size: int) -> list[str]:
    images = check.images
    ok_images = sum(i["natural_width"] > 0 and not i["blank"] for i in images)
    sorts = f"{sum(check.sorts.values())}/{len(check.sorts)}" if check.sorts else "-"
    links = f"{sum(link['exists'] for link in check.links)}/{len(check.links)}" if check.links else "-"
    return [what, str(len(check.console_errors)), f"{ok_images}/{len(images)}", sorts, links,
            f"{size / 2**20:.1f}", f"{seconds:.1f}", "yes" if check.ok else "NO"]


def run_notebook(tmp: Path) -> float:
    import nbclient
    import nbformat
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    env = {"DENOISELAB_TOUR": "small", "DENOISELAB_CACHE": str(tmp / "cache"), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    os.environ.update(env)
    nb = nbformat.read(ROOT / "notebooks" / "tour.ipynb", as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name=NATIVE_KERNEL_NAME,
                            resources={"metadata": {"path": str(tmp)}}).execute()
    seconds = time.perf_counter() - t0
    nbformat.write(nb, tmp / "tour-executed.ipynb")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished MNIST run (default runs/mnist, "
                    "else runs/mnist-class)")
    ap.add_argument("--compare", type=Path, nargs="*", default=None,
                    help="finished runs for the comparison page (default: every finished run in runs)")
    ap.add_argument("--eval-num", type=int, default=500, help="samples per evaluation of an unevaluated run (0: leave runs unevaluated)")
    ap.add_argument("--skip-notebook", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the pages (default: a temp dir)")
    ap.add_argument("--screenshots", type=Path, default=None, metavar="DIR",
                    help="save the top of each page as DIR/report_page.png and DIR/compare_page.png (README)")
    add_write_flag(ap)
    args = ap.parse_args()

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="report-check-"))
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    run = args.run or default_run()
    with Browser() as browser:
        # 1. One finished run's page.
        copy = copy_run(run, tmp / "single" / run.name)
        t0 = time.perf_counter()
        page = report.write_run_report(copy)
        build = time.perf_counter() - t0
        rows.append(page_row(f"run page: {run}", browser.check(page), build, page.stat().st_size))
        if args.screenshots:
            browser.screenshot(page, args.screenshots / "report_page.png", height=1500, scale=0.5)

        # 2. The comparison page over >= 3 runs.
        sources = args.compare if args.compare is not None else [
            p for p in sorted(Path("runs").iterdir()) if p.is_dir() and finished(p)]
        runs_dir = tmp / "runs"
        runs_dir.mkdir(exist_ok=True)
        for src in sources:
            copy_run(src, runs_dir / src.name)
        for i in range(max(0, 3 - len(sources))):
            out = runs_dir / f"swiss-roll-{i}"
            cli(["train", "--preset", "swiss-roll", "--out", str(out), "--quiet", "--set", f"steps={1000 * (i + 1)}",
                 "--set", f"seed={i}"])
        for p in report.find_runs(runs_dir) if args.eval_num > 0 else []:
            ensure_evaluated(p, args.eval_num)
        t0 = time.perf_counter()
        page, pages = write_comparison(runs_dir)
        build = time.perf_counter() - t0
        check = browser.check(page, sort=True)
        rows.append(page_row(f"comparison page: {len(pages)} runs", check, build, page.stat().st_size))
        for link in check.links:
            linked = Path(link["href"].removeprefix("file://"))
            rows.append(page_row(f"  linked: {linked.parent.name}/report.html", browser.check(linked), 0.0,
                                 linked.stat().st_size))
        if args.screenshots:
            browser.screenshot(page, args.screenshots / "compare_page.png", height=800, scale=0.5)
        unsorted = [k for k, v in check.sorts.items() if not v]
        if unsorted:
            print("columns that did not sort:", ", ".join(unsorted))
    header = ["page", "console errors", "images loaded, non-blank", "columns sorted", "links resolve", "MiB",
              "build s", "pass"]
    pages_table = markdown_table(header, rows)
    print(pages_table)
    print(f"\nsortable columns: {', '.join(check.sorts)}")
    if args.write_results:
        write_table("report-pages", "report-pages", f"{pages_table}\n\nsortable columns: {', '.join(check.sorts)}")
    if not args.skip_notebook:
        (tmp / "notebook").mkdir(exist_ok=True)
        seconds = run_notebook(tmp / "notebook")
        notebook = markdown_table(["notebook", "seconds", "target"],
                                  [["notebooks/tour.ipynb (DENOISELAB_TOUR=small)", f"{seconds:.0f}", "<= 300"]])
        print("\n" + notebook)
        if args.write_results:
            write_table("report-pages", "tour-notebook", notebook)
    print(f"\npages and copies in {tmp}")


if __name__ == "__main__":
    main()
