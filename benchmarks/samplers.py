"""Sample quality against NFE for every sampler and time grid (issue 5 targets), and the
defaults every user gets (issue 14).

Takes trained run directories (train them first, e.g.
``denoiselab train --preset swiss-roll --out runs/swiss`` and ``--preset swiss-roll-flow``),
scores every sampler on every grid at each NFE budget over three sampling seeds, prints the
table and the best sampler per budget, and writes samplers.md and samplers.png into
RUN_DIR/samplers. 2D runs: chamfer distance of 2048 samples against 2048 fresh points
(seed 10_000 + s); image runs: FID in the domain feature space (evaluation.images).

    python benchmarks/samplers.py runs/swiss runs/swiss-flow
    python benchmarks/samplers.py runs/swiss --nfe 10 20 --grids logsnr logsnr:0.08:10

``--by-steps K [K ...]`` instead treats the runs as several trainings of one preset and scores
what ``denoiselab sample RUN --sampler S --steps K`` gives with no grid flags (the run's
defaults, ``runs.sampling_plan``) for every sampler S and step count K: each training's
score is the mean over the sampling seeds, and the table shows the mean +- sd over the
trainings, then the best sampler within 10 and 20 NFE and each sampler's ratio to DDIM at
the same step count (2D runs only):

    for s in 0 1 2; do denoiselab train --preset swiss-roll --out runs/swiss-s$s --set seed=$s; done
    python benchmarks/samplers.py runs/swiss-s0 runs/swiss-s1 runs/swiss-s2 --by-steps 2 5 10 20
    python benchmarks/samplers.py runs/swiss-s* --by-steps 10 20 --grid karras --sigma-min 0.08 --sigma-max 10

The published tables (docs/results/samplers.md), written with ``--write-results TABLE``:

    python benchmarks/samplers.py runs/swiss-s0 runs/swiss-s1 runs/swiss-s2 --by-steps 2 5 10 20 --seeds 0 \
        --write-results swiss-roll-by-steps        # and --start gaussian --write-results swiss-roll-gaussian-start
    python benchmarks/samplers.py runs/mnist --samplers dpmpp-2m-sde:eta=3 dpmpp-2m-sde heun euler-ancestral \
        --grids uniform --nfe 5 10 20 --start gaussian --write-results mnist-nfe
    python benchmarks/samplers.py runs/swiss --samplers dpmpp-3m dpmpp-3m:exact=1 --nfe 5 10 20 \
        --write-results dpmpp-3m-weight
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from denoiselab.cli import main as cli_main
from denoiselab.runs import START_MODES
from denoiselab.runs.sampler_sweep import SWEEP_GRIDS, SWEEP_NFES, SWEEP_SAMPLERS
from denoiselab.samplers import SAMPLERS
from results import add_write_flag, markdown_table, write_table

ALL_SAMPLERS = tuple(SAMPLERS)
TABLES = {"swiss-roll-by-steps": "samplers", "swiss-roll-gaussian-start": "samplers", "mnist-nfe": "samplers",
          "dpmpp-3m-weight": "samplers"}
BY_STEPS_TABLES = ("swiss-roll-by-steps", "swiss-roll-gaussian-start")  # the others are NFE sweeps


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.3f} +- {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}"


def by_steps(runs: list[str], samplers: list[str], steps: list[int], seeds: list[int], grid: str | None,
             grid_opts: dict, start: str = "auto") -> str:
    """Print the table of every sampler at every step count over the runs; return it with its
    caption and the best sampler per budget (what the results page holds)."""
    from denoiselab import runs
    from denoiselab.data import load_toy
    from denoiselab.evaluation import chamfer_distance
    from denoiselab.samplers.api import generate

    loaded = [runs.load_run(r) for r in runs]
    if any(r.kind != "points" for r in loaded):
        sys.exit("--by-steps scores 2D runs (chamfer); score image runs with `denoiselab evaluate`")
    refs = {s: load_toy(loaded[0].config.data.name, 2048, 10_000 + s) for s in seeds}
    scores: dict[tuple[str, int], list[float]] = {}
    nfes: dict[tuple[str, int], int] = {}
    plans: dict[tuple[str, int], str] = {}
    t0 = time.perf_counter()
    for run in loaded:
        for sampler in samplers:
            for k in steps:
                discrete = sampler in ("ddpm", "ddim")
                plan = runs.sampling_plan(run, sampler=sampler, steps=k, grid=None if discrete else grid,
                                              grid_opts=None if discrete else grid_opts, start=start)
                per = []
                for s in seeds:
                    x, nfe = generate(run.denoiser, 2048, (2,), seed=s, **plan.kwargs())
                    per.append(chamfer_distance(x, refs[s]) if torch.isfinite(x).all() else float("inf"))
                scores.setdefault((sampler, k), []).append(statistics.mean(per))
                nfes[(sampler, k)] = nfe
                plans[(sampler, k)] = plan.grid + (f" {plan.ends()}" if plan.ends() else "")
        print(f"scored {run.run_dir} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    n = len(loaded)
    text = [f"chamfer distance, mean +- sd over {n} training{'s' if n > 1 else ''} (each the mean of sampling "
            f"seeds {', '.join(map(str, seeds))}; 2048 samples vs 2048 fresh points; floor about 0.39)", ""]
    text.append(markdown_table(["sampler", *(f"{k} steps" for k in steps), "grid"],
                               [[sampler, *(f"{_ms(scores[(sampler, k)])} (NFE {nfes[(sampler, k)]})" for k in steps),
                                 plans[(sampler, steps[-1])]] for sampler in samplers]))
    text.append("")
    for budget in (10, 20):
        inside = [(statistics.mean(v), key) for key, v in scores.items() if nfes[key] <= budget]
        if inside:
            m, (sampler, k) = min(inside)
            text.append(f"best within NFE {budget}: {sampler} {k} steps (NFE {nfes[(sampler, k)]}): "
                        f"{_ms(scores[(sampler, k)])}")
    print("\n" + "\n".join(text))
    if "ddim" in samplers:
        print("\nratio to DDIM at the same step count (mean over trainings; worst sampler per column):")
        for k in steps:
            base = statistics.mean(scores[("ddim", k)])
            worst = max((statistics.mean(scores[(s, k)]) / base, s) for s in samplers)
            print(f"  {k:3d} steps: DDIM {base:.3f}; worst {worst[1]} {worst[0]:.2f}x")
    return "\n".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--samplers", nargs="+", default=None)
    ap.add_argument("--grids", nargs="+", default=list(SWEEP_GRIDS))
    ap.add_argument("--nfe", nargs="+", default=[str(n) for n in SWEEP_NFES])
    ap.add_argument("--threads", default="1", help="torch threads (1: many small evaluations)")
    ap.add_argument("--by-steps", nargs="+", type=int, default=None, metavar="K",
                    help="score the default sampling of every sampler at these step counts over the runs")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="--by-steps: sampling seeds")
    ap.add_argument("--grid", default=None, help="--by-steps: this grid for the ODE/SDE solvers instead of the default")
    ap.add_argument("--sigma-min", type=float, default=None, help="--by-steps: grid end instead of the data's")
    ap.add_argument("--sigma-max", type=float, default=None, help="--by-steps: grid end instead of the data's")
    ap.add_argument("--start", default="auto", choices=START_MODES,
                    help="where sampling starts (as `denoiselab sample --start`; default auto)")
    add_write_flag(ap, TABLES)
    args = ap.parse_args()
    if args.write_results and (args.write_results in BY_STEPS_TABLES) != bool(args.by_steps):
        ap.error(f"--write-results {args.write_results} is a table of {'--by-steps' if args.by_steps is None else 'an NFE sweep'}"
                 f": {'add --by-steps' if args.by_steps is None else 'leave out --by-steps'} or name another table")
    if args.by_steps:
        torch.set_num_threads(int(args.threads))
        opts = {k: v for k, v in (("sigma_min", args.sigma_min), ("sigma_max", args.sigma_max)) if v is not None}
        text = by_steps(args.runs, args.samplers or list(ALL_SAMPLERS), args.by_steps, args.seeds, args.grid, opts,
                        args.start)
        print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
        if args.write_results:
            write_table(TABLES[args.write_results], args.write_results, text)
        return
    sections = []
    for run in args.runs:
        print(f"\n## {run}\n", flush=True)
        code = cli_main(["benchmark-samplers", run, "--samplers", *(args.samplers or SWEEP_SAMPLERS), "--grids",
                         *args.grids, "--nfe", *args.nfe, "--threads", args.threads, "--start", args.start])
        if code:
            sys.exit(code)
        # The sweep's table and best rows, as `benchmark-samplers` wrote them to RUN_DIR/samplers.
        sections.append(f"`{run}`\n\n" + (Path(run) / "samplers" / "samplers.md").read_text(encoding="utf-8").strip())
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    if args.write_results:
        write_table(TABLES[args.write_results], args.write_results, "\n\n".join(sections))


if __name__ == "__main__":
    main()
