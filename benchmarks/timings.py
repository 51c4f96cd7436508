"""Wall times of the two commands a fresh machine needs, and of the presets' trainings.

  clone      this checkout's last commit cloned into a scratch folder, then `make test` and
             `make demo` there, each timed as a whole command (environment, install and test suite;
             the demo after it, with its trainings' loops from their metrics.jsonl)
  trainings  `denoiselab train --preset P` for each of --presets: the whole command and the
             training loop (the trainer's clock at its last logged loss)

    python benchmarks/timings.py --parts clone --write-results        # docs/results/timings.md, fresh-clone
    python benchmarks/timings.py --parts trainings --presets swiss-roll kaist mnist --write-results

Both take minutes (the clone part about 20 on a 2-core CPU): time them on a machine doing
nothing else, or say what else it did.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_quality import loop_seconds
from results import ROOT, add_write_flag, markdown_table, write_table

PARTS = ("clone", "trainings")


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    """Wall seconds of ``cmd``; its output goes to ours (a failure stops the benchmark)."""
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env)
    if r.returncode:
        raise SystemExit(f"failed (exit {r.returncode}): {' '.join(cmd)}")
    return time.perf_counter() - t0


def load_note() -> str:
    """How busy the machine was when a timing started (the figures scale with it)."""
    return f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def fresh_clone(tmp: Path) -> list[list[str]]:
    """`make test`, then `make demo`, in a clone of HEAD: what a new user runs first."""
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    # A clean environment: the clone builds its own .venv, whatever this process runs in.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    test = timed(["make", "test"], clone, env)
    demo = timed(["make", "demo"], clone, env)
    loops = [f"{d.name} trained in {loop_seconds(d):.0f} s" for d in sorted((clone / "demo-output").iterdir())
             if (d / "metrics.jsonl").is_file() and loop_seconds(d) is not None]
    return [["`make test` (environment, install, test suite)", minutes(test)],
            ["`make demo` after it", minutes(demo) + (f" ({', '.join(loops)})" if loops else "")]]


def trainings(tmp: Path, presets: list[str]) -> list[list[str]]:
    rows = []
    for preset in presets:
        out = tmp / preset
        wall = timed([sys.executable, "-m", "denoiselab.cli", "train", "--preset", preset, "--out", str(out), "--quiet"],
                     ROOT)
        loop = loop_seconds(out)
        rows.append([f"`{preset}`", f"{loop:.0f} s" if loop is not None else "-", f"{wall:.0f} s"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--presets", nargs="+", default=["swiss-roll", "kaist", "mnist"], help="trainings: the presets")
    add_write_flag(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="timings-") as tmp:
        if "clone" in args.parts:
            load = load_note()
            table = f"{load}\n\n" + markdown_table(["what", "measured"], fresh_clone(Path(tmp)))
            print(f"\n{table}\n", flush=True)
            if args.write_results:
                write_table("timings", "fresh-clone", table)
        if "trainings" in args.parts:
            load = load_note()
            table = f"{load}\n\n" + markdown_table(["preset", "training loop", "whole command"],
                                                   trainings(Path(tmp), args.presets))
            print(f"\n{table}", flush=True)
            if args.write_results:
                write_table("timings", "training-time", table)


if __name__ == "__main__":
    main()
