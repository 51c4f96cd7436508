"""Quality per CPU-minute of the `mnist` preset, over several trainings (mean +- sd).

Trains the preset once per seed (as `denoiselab train --preset mnist --set seed=K` does, timed),
or reads existing runs, then samples each run as `denoiselab sample RUN --num N` does with no
other flags (the run's stored sampler, steps, grid and eta, 256 images per forward pass on a
CPU; `--sampler/--steps/--eta/--eta-low/--eta-switch` override them) and scores the samples as `denoiselab evaluate
s.npy --ref data:mnist` does: domain FID, precision and recall against the held-out half of
MNIST-5k, with the real-vs-real floors. Prints one row per training, then the mean +- sd over
them, and writes a grid of the first run's samples (default docs/mnist_samples.png).

    .venv/bin/python benchmarks/mnist_quality.py --train-seeds 0 1 2 --out /tmp/mnist-runs   # train + measure
    .venv/bin/python benchmarks/mnist_quality.py --runs /tmp/mnist-runs/seed0 /tmp/mnist-runs/seed1 /tmp/mnist-runs/seed2
    .venv/bin/python benchmarks/mnist_quality.py --runs RUN... --steps 10 --eta 3              # another sampler setting
    .venv/bin/python benchmarks/mnist_quality.py --runs RUN... --steps 10 20 40 80 --seeds 0 1 2

With several ``--steps`` it prints one table per step count and then each count's mean FID
against the best of them (the "10 NFE within X% of the best at any NFE" figure); with several
``--seeds`` each training is sampled once per seed, and the mean +- sd runs over all of them
(FID at 1000 samples moves by about 0.1 between sampling seeds, as much as between trainings).

``--write-results TABLE`` writes one row per step count (mean +- sd over the trainings and
sampling seeds, FID per training) and the floor into the section TABLE of docs/results/mnist.md
(``mnist-start``: samplers.md); each section's command is on its page, e.g.

    .venv/bin/python benchmarks/mnist_quality.py --train-seeds 0 1 2 --write-results mnist-preset
    .venv/bin/python benchmarks/mnist_quality.py --runs R0 R1 R2 --steps 10 20 40 80 --seeds 0 1 2 \
        --write-results mnist-steps
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from denoiselab import runs as R
from denoiselab.config import apply_overrides
from denoiselab.data import build_dataset
from denoiselab.device import module_device, sampling_batch_size
from denoiselab.evaluation.images import domain_extractor, evaluate_images
from denoiselab.io import cache_folder, read_jsonl
from denoiselab.presets import get_preset
from denoiselab.samplers.api import generate
from denoiselab.viz.images import save_grid
from results import add_write_flag, markdown_table, write_table

# The tables this script measures, by the arguments their pages name: name -> page.
TABLES = {name: "mnist" for name in (
    "mnist-preset", "mnist-t-sampling", "mnist-input-perturbation", "mnist-eta-low", "mnist-training-longer",
    "mnist-noise-range", "mnist-independent", "mnist-steps", "mnist-bf16", "mnist-loss-weighting",
    "mnist-2000-samplers")} | {"mnist-start": "samplers"}


def train(seed: int, out: Path, overrides: list[str]) -> None:
    cfg = apply_overrides(get_preset("mnist"), overrides + [f"seed={seed}"])
    out.mkdir(parents=True, exist_ok=True)
    (out / R.CONFIG).write_text(cfg.to_json())
    # The trainer `denoiselab train` builds: training k here is the run `train --set seed=k` gives.
    R.make_trainer(cfg, out, R.build_data(cfg), progress=False).fit()


def loop_seconds(run_dir: Path) -> float | None:
    """Seconds in the training loop: the trainer's clock at its last logged loss (None if none)."""
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "time" in r and "loss" in r]
    return rows[-1]["time"] if rows else None


def mean_sd(values: list[float], fmt: str = "{:.2f}") -> str:
    if len(values) < 2:
        return fmt.format(values[0]) if values else "-"
    return f"{fmt.format(statistics.mean(values))} +- {fmt.format(statistics.stdev(values))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--runs", nargs="+", type=Path, help="existing run directories")
    src.add_argument("--train-seeds", nargs="+", type=int, help="train the preset once per seed into --out/seedK")
    ap.add_argument("--out", type=Path, default=Path("/tmp/denoiselab-mnist-bench"), help="where --train-seeds trains")
    ap.add_argument("--set", action="append", default=[], help="preset overrides, as for `denoiselab train`")
    ap.add_argument("--num", type=int, default=1000, help="samples per training (FID at 1000 has a floor of about 0.19)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="sampling seeds (each training once per seed)")
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--steps", nargs="+", type=int, default=[None], help="step counts (default: the run's own)")
    ap.add_argument("--eta", type=float, default=None)
    ap.add_argument("--eta-low", type=float, default=None, help="eta of the steps at or below --eta-switch")
    ap.add_argument("--eta-switch", type=float, default=None, help="sigma where --eta-low starts (0: one eta)")
    ap.add_argument("--sigma-min", type=float, default=None, help="grid end (default: the run's stored one)")
    ap.add_argument("--sigma-max", type=float, default=None, help="grid end (default: the run's stored one)")
    ap.add_argument("--start", default="auto", choices=R.START_MODES,
                    help="where sampling starts (as `denoiselab sample --start`; default auto)")
    ap.add_argument("--precision", default=None, choices=["none", "bf16"],
                    help="the network's autocast while sampling (default: the run's stored one)")
    ap.add_argument("--independent", action="store_true",
                    help="also score with two evaluators independent of the project (independent_mnist.py)")
    ap.add_argument("--grid", default="docs/mnist_samples.png", help="sample grid of the first run ('' for none)")
    add_write_flag(ap, TABLES)
    args = ap.parse_args()
    args.grid = Path(args.grid) if args.grid else None

    runs = args.runs or []
    for seed in args.train_seeds or []:
        out = args.out / f"seed{seed}"
        train(seed, out, args.set)
        runs.append(out)

    ref = build_dataset("mnist")
    cache = cache_folder()
    extractor = domain_extractor(ref, cache, log=print)
    loaded = [(run_dir, R.load_run(run_dir)) for run_dir in runs]
    independent = None
    if args.independent:
        from independent_mnist import IndependentMnist
        independent = IndependentMnist()
        print(f"independent evaluators: PCA-64 pixels and a {independent.accuracy:.1%}-accurate sklearn MLP's hidden layer")
    grid_opts = {k: v for k, v in (("sigma_min", args.sigma_min), ("sigma_max", args.sigma_max)) if v is not None}
    means, summary = {}, []
    for steps in args.steps:
        rows, plan = [], None
        for i, (run_dir, run) in enumerate(loaded):
            plan = R.sampling_plan(run, sampler=args.sampler, steps=steps, grid_opts=grid_opts, start=args.start)
            for option in ("eta", "eta_low", "eta_switch"):
                if getattr(args, option) is not None:
                    plan.opts[option] = getattr(args, option)
            if args.precision:
                plan.precision = args.precision
            batch = sampling_batch_size(run.kind, module_device(run.denoiser))
            for seed in args.seeds:
                t0 = time.perf_counter()
                x, nfe = generate(run.denoiser, args.num, run.sample_shape, seed=seed, batch_size=batch, **plan.kwargs())
                sample_s = time.perf_counter() - t0
                if i == 0 and seed == args.seeds[0] and args.grid and steps == args.steps[0]:
                    save_grid(x[:64], args.grid, nrow=8)
                res = evaluate_images(x, ref, "mnist", extractor, cache_dir=cache, bootstrap=0)["metrics"]
                rows.append({"run": str(run_dir), "seed": seed, "steps": run.step, "loop_s": loop_seconds(run_dir),
                             "nfe": nfe, "sample_s": sample_s, **{k: res[k]["value"] for k in ("FID", "precision", "recall")},
                             "floors": {k: res[k]["floor"] for k in ("FID", "precision", "recall")}})
                if independent is not None:
                    rows[-1].update(independent.scores(x))
                    rows[-1]["floors"].update(independent.floors)
                r = rows[-1]
                print(f"{run_dir} seed {seed}: {plan.describe()}{plan.start_note()}: FID {r['FID']:.3f}, precision {r['precision']:.3f}, "
                      f"recall {r['recall']:.3f}, sampling {sample_s:.1f} s", flush=True)
        means[plan.steps] = {k: statistics.mean(r[k] for r in rows) for k in ("FID",) + INDEPENDENT if k in rows[0]}
        table(rows, plan, args)
        summary.append(summary_row(rows, plan))
    for key in means[next(iter(means))] if len(means) > 1 else ():
        m = {steps: v[key] for steps, v in means.items()}
        best = min(m, key=m.get)
        print(f"\nmean {key} by step count, against the best ({best} steps, {m[best]:.3f}):")
        for steps, v in m.items():
            print(f"  {steps:4d} steps: {v:.3f}  ({100 * (v / m[best] - 1):+.0f}%)")
    if args.grid:
        print(f"\nsample grid: {args.grid}")
    if args.write_results:
        write_table(TABLES[args.write_results], args.write_results, summary_table(summary, rows, args))


INDEPENDENT = ("PCA FID", "MLP FID")


def table(rows: list[dict], plan, args) -> None:
    floors = rows[0]["floors"]
    ends = f", {plan.ends()}" if plan.ends() else ""
    print(f"\n{len({r['run'] for r in rows})} training(s) of `mnist` x sampling seeds {args.seeds}; {args.num} samples "
          f"each, {plan.describe()}{ends}{plan.start_note()} (NFE {rows[0]['nfe']}), {torch.get_num_threads()} torch threads\n")
    extra = [k for k in INDEPENDENT if k in rows[0]]
    print("| run | sampling seed | training steps | training loop s | sampling s | FID | precision | recall |"
          + "".join(f" {k} |" for k in extra))
    print("| --- " * (8 + len(extra)) + "|")
    for r in rows:
        loop = f"{r['loop_s']:.0f}" if r["loop_s"] is not None else "-"
        print(f"| {r['run']} | {r['seed']} | {r['steps']} | {loop} | {r['sample_s']:.1f} | {r['FID']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} |" + "".join(f" {r[k]:.3f} |" for k in extra))
    loops = list({r["run"]: r["loop_s"] for r in rows if r["loop_s"] is not None}.values())
    per_run = {}
    for r in rows:
        per_run.setdefault(r["run"], []).append(r["FID"])
    print(f"| mean +- sd over {len(rows)} | | | {mean_sd(loops, '{:.0f}')} | {mean_sd([r['sample_s'] for r in rows], '{:.1f}')} | "
          f"{mean_sd([r['FID'] for r in rows])} | {mean_sd([r['precision'] for r in rows])} | "
          f"{mean_sd([r['recall'] for r in rows])} |" + "".join(f" {mean_sd([r[k] for r in rows])} |" for k in extra))
    print(f"| real vs real (the floor) | | | | | {floors['FID']:.3f} | {floors['precision']:.3f} | {floors['recall']:.3f} |"
          + "".join(f" {floors[k]:.3f} |" for k in extra))
    if len(args.seeds) > 1:
        print("per training, mean over the sampling seeds: "
              + ", ".join(f"{statistics.mean(v):.2f}" for v in per_run.values()))


def summary_row(rows: list[dict], plan) -> list[str]:
    """One step count's row of the results page: mean +- sd over every training and sampling seed."""
    ends = f", {plan.ends()}" if plan.ends() else ""
    per_run: dict[str, list[float]] = {}
    for r in rows:
        per_run.setdefault(r["run"], []).append(r["FID"])
    loops = [v for v in {r["run"]: r["loop_s"] for r in rows}.values() if v is not None]
    return [f"{plan.describe()}{ends}{plan.start_note()}", str(rows[0]["nfe"]), mean_sd([r["FID"] for r in rows]),
            mean_sd([r["precision"] for r in rows]), mean_sd([r["recall"] for r in rows]),
            ", ".join(f"{statistics.mean(v):.2f}" for v in per_run.values()),
            mean_sd([r["sample_s"] for r in rows], "{:.1f}"), mean_sd(loops, "{:.0f}"),
            *(mean_sd([r[k] for r in rows]) for k in INDEPENDENT if k in rows[0])]


def summary_table(summary: list[list[str]], rows: list[dict], args) -> str:
    """The step counts' rows and the floor, under a line naming the trainings and samples."""
    extra = [k for k in INDEPENDENT if k in rows[0]]
    floors = rows[0]["floors"]
    floor = ["real vs real (the floor)", "", *(f"{floors[k]:.3f}" for k in ("FID", "precision", "recall")),
             "", "", "", *(f"{floors[k]:.3f}" for k in extra)]
    head = ["sampling", "NFE", "FID", "precision", "recall", "FID per training", "sampling s", "training loop s", *extra]
    return (f"{len({r['run'] for r in rows})} training(s) of `mnist` x sampling seeds "
            f"{', '.join(map(str, args.seeds))}; {args.num} samples each; domain FID\n\n"
            + markdown_table(head, [*summary, floor]))


if __name__ == "__main__":
    main()
