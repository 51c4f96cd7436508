"""Chamfer distance of trained 2D models, as the foundation issue measures them.

Trains each preset (timed), then samples 2048 points with DDPM-1000 and DDIM-50 (eta 0) for
three sampling seeds and prints the mean and spread of the chamfer distance against 2048 fresh
points of the data set (seed 10_000 + s), next to the floor: two independent draws of real data.

    python benchmarks/toy2d.py                       # kaist and swiss-roll presets
    python benchmarks/toy2d.py --presets swiss-roll --set train.steps=4000
    python benchmarks/toy2d.py --presets kaist --train-seeds 0 1 2 3 4   # spread over trainings

The published tables (docs/results/toy2d.md), written with ``--write-results TABLE`` (with several
trainings the page gets the rows of their mean; the rows of each training are printed):

    python benchmarks/toy2d.py --presets kaist --train-seeds 0 1 ... 19 --write-results toy2d
    python benchmarks/toy2d.py --presets kaist --train-seeds 0 1 ... 19 --set train.ema_decay=0 \
        --samplers ddim:1000 ddim:50:quadratic --write-results toy2d-last-iterate
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from denoiselab import runs
from denoiselab.config import apply_overrides
from denoiselab.data import load_toy
from denoiselab.evaluation import chamfer_distance
from denoiselab.presets import get_preset
from denoiselab.samplers.api import generate
from results import add_write_flag, markdown_table, write_table

SEEDS = (0, 1, 2)
TABLES = {"toy2d": "toy2d", "toy2d-last-iterate": "toy2d"}
N = 2048


def train(cfg, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    (out / runs.CONFIG).write_text(cfg.to_json())
    data = runs.build_data(cfg)
    t0 = time.perf_counter()
    # The trainer `denoiselab train` builds: the initial weights depend on the seed alone, so
    # training k here is the run a user gets from `train --set seed=k`.
    runs.make_trainer(cfg, out, data, progress=False).fit()
    return time.perf_counter() - t0


def chamfer_over_seeds(run, sampler: str, steps: int, grid: str | None = None, **opts) -> list[float]:
    cds = []
    for s in SEEDS:
        x, _ = generate(run.denoiser, N, (2,), sampler=sampler, steps=steps, seed=s, grid=grid, **opts)
        ref = load_toy(run.config.data.name, N, seed=10_000 + s)
        cds.append(chamfer_distance(x, ref))
    return cds


def fmt(cds: list[float]) -> str:
    return f"{statistics.mean(cds):8.3f} +- {statistics.stdev(cds):6.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["kaist", "swiss-roll"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=None, help="keep runs here (default: a temp dir)")
    ap.add_argument("--samplers", nargs="+", default=["ddpm:1000", "ddim:50"],
                    help="SAMPLER:STEPS[:GRID], e.g. ddim:50:quadratic (default grid: the sampler's)")
    ap.add_argument("--train-seeds", nargs="+", type=int, default=None,
                    help="train once per seed and add a row per sampler with the mean and spread over the "
                         "trainings (a short, un-averaged run like kaist's varies a lot from seed to seed)")
    add_write_flag(ap, TABLES)
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="toy2d-"))
    rows, published = [], []  # published: the page's rows, the means alone where there are several trainings
    for name in args.presets:
        base = apply_overrides(get_preset(name), args.set)
        seeds = args.train_seeds if args.train_seeds is not None else [base.train.seed]
        per_sampler: dict[str, list[float]] = {}
        first = len(rows)
        for seed in seeds:
            cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
            label = name if args.train_seeds is None else f"{name} (train seed {seed})"
            out = root / (name if args.train_seeds is None else f"{name}-seed{seed}")
            secs = train(cfg, out)
            run = runs.load_run(out)
            for spec in args.samplers:
                sampler, steps, *grid = spec.split(":")
                key = f"{sampler}-{steps}" + (f" ({grid[0]} grid)" if grid else "")
                cds = chamfer_over_seeds(run, sampler, int(steps), grid[0] if grid else None)
                per_sampler.setdefault(key, []).append(statistics.mean(cds))
                rows.append((label, cfg.data.name, key, fmt(cds), f"{secs:7.1f}"))
                print(*rows[-1], sep=" | ", flush=True)
        if len(seeds) > 1:
            for key, means in per_sampler.items():
                rows.append((f"{name}: mean over {len(seeds)} trainings", base.data.name, key,
                             f"{fmt(means)} (min {min(means):.3f}, max {max(means):.3f})", ""))
        published += rows[first + len(seeds) * len(args.samplers):] if len(seeds) > 1 else rows[first:]
    floors = {}
    for data_name in sorted({r[1] for r in rows}):
        floors[data_name] = fmt([chamfer_distance(load_toy(data_name, N, 20_000 + s), load_toy(data_name, N, 10_000 + s))
                                 for s in SEEDS])
    header = ["preset", "data", "sampler", f"chamfer (mean +- sd, {len(SEEDS)} seeds)", "train s", "floor (real vs real)"]
    print()
    print(markdown_table(header, [[*r, floors[r[1]]] for r in rows]))
    if args.write_results:
        write_table(TABLES[args.write_results], args.write_results,
                    markdown_table(header, [[*r, floors[r[1]]] for r in published]))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; runs in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
