"""Two gloo processes against one on the CPU: how far apart their loss curves are, against how far
apart two one-process runs are that differ only in their noise stream.

The run tests/test_device.py makes (`denoiselab train --launcher accelerate --processes 2 --device
cpu`, global batch 256, 200 steps of a small 2D model): the batches are the same, split in halves
between the processes, while each process draws its own noise and diffusion times, so the curves
can agree only up to the noise of the loss estimate, which the third run measures.

    python benchmarks/multi_process.py --write-results   # docs/results/gpu.md, multi-process-cpu

Needs accelerate (pip install -e '.[distributed]'); about half a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from denoiselab.io import read_jsonl
from results import ROOT, add_write_flag, markdown_table, write_table

SETS = ["data.num=4096", "model.width=32", "model.depth=2", "steps=200", "batch_size=256", "log_every=20",
        "warmup=10", "lr=3e-3", "train.autocast=none", "train.ema_decay=0"]
# The one-process run with another noise stream: `train.seed` fixes data order and noise alike, so
# the objective's generator alone is re-seeded (as rank 1 would seed it).
OTHER_NOISE = ("import sys; from denoiselab.training import trainer as T\n"
               "orig = T._stream_seed\n"
               "T._stream_seed = lambda seed, rank, step: orig(seed, 1, step)\n"
               "from denoiselab.cli import main; sys.exit(main(sys.argv[1:]))\n")


def train(out: Path, *extra: str, python: tuple[str, ...] = ("-m", "denoiselab.cli")) -> float:
    cmd = [sys.executable, *python, "train", "--preset", "swiss-roll", "--out", str(out), "--quiet", "--no-pictures",
           "--device", "cpu", *[a for s in SETS for a in ("--set", s)], *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"training failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def smoothed_losses(run: Path) -> list[float]:
    """The logged losses in means of two (40 steps), as the test compares them."""
    ls = [r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    return [sum(ls[i:i + 2]) / 2 for i in range(0, len(ls), 2)]


def largest_gap(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / y for x, y in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_write_flag(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="multi-process-") as tmp:
        tmp = Path(tmp)
        two_s = train(tmp / "two", "--launcher", "accelerate", "--processes", "2")
        one_s = train(tmp / "one")
        train(tmp / "noise", python=("-c", OTHER_NOISE))
        one = smoothed_losses(tmp / "one")
        two_gap, noise_gap = largest_gap(smoothed_losses(tmp / "two"), one), largest_gap(smoothed_losses(tmp / "noise"), one)
    table = markdown_table(["what", "measured"], [
        ["largest difference of the smoothed loss curves, two processes against one", f"{100 * two_gap:.1f}%"],
        ["the same between two one-process runs that differ only in their noise stream", f"{100 * noise_gap:.1f}%"],
        ["wall time of the two-process / the one-process command", f"{two_s:.0f} s / {one_s:.0f} s"]])
    print(table)
    if args.write_results:
        write_table("gpu", "multi-process-cpu", table)


if __name__ == "__main__":
    main()
