"""Few-step students against their teachers (docs/results/distill.md).

For each teacher run, distil a student with `denoiselab distill TEACHER --out STUDENT` (timed as
the user runs it; or take existing students with --students), then score, with the plan a user
gets (`denoiselab sample RUN --steps K`):
- image runs (MNIST): domain FID of 1000 samples (the floor beside it), the teacher at its default
  (40 steps) and at 10, the student at 1, 2 and 4 steps; each as a ratio of its own teacher's
  default FID; mean +- sd over the teachers. `--independent` adds two evaluators independent of
  the project (benchmarks/independent_mnist.py);
- 2D runs (swiss roll): chamfer of 2048 samples against 2048 fresh points (floor beside it).
`--fixed-point` adds the exact consistency function each student is distilled towards (its
teacher's ODE over the student's levels), what a perfect student would score in one step.
It also times `denoiselab sample STUDENT --num 1000 --steps 1 --out x.npy` as a whole command.
`--method reflow` (flow teachers) adds the teacher's own Euler at the student's step counts: what
the straightening buys; the students are scored on both grids in tau, quadratic and uniform.

    for s in 0 1 2; do denoiselab train --preset mnist --out runs/mnist-s$s --set seed=$s; done
    python benchmarks/distill.py --teachers runs/mnist-s0 runs/mnist-s1 runs/mnist-s2 --out runs/students \
        --write-results distill-mnist
    python benchmarks/distill.py --teachers runs/swiss-s0 runs/swiss-s1 runs/swiss-s2 --out runs/students \
        --write-results distill-swiss-roll
    python benchmarks/distill.py --teachers runs/flow-s0 runs/flow-s1 runs/flow-s2 --out runs/reflow \
        --method reflow --write-results distill-swiss-roll-reflow
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from denoiselab import runs
from denoiselab.data import load_toy
from denoiselab.evaluation import chamfer_distance
from denoiselab.samplers.api import generate
from denoiselab.samplers.grids import default_grid
from results import add_write_flag, markdown_table, write_table

TABLES = {"distill-mnist": "distill", "distill-mnist-complement": "distill", "distill-swiss-roll": "distill",
          "distill-swiss-roll-flow": "distill", "distill-swiss-roll-reflow": "distill",
          "distill-swiss-roll-reflow-cd": "distill"}
STUDENT_STEPS = (1, 2, 4)
N_POINTS = 2048


def cli(*args: str) -> float:
    """Run `denoiselab ARGS` as a user would; returns its wall-clock seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "denoiselab.cli", *args], check=True)
    return time.perf_counter() - t0


def loop_seconds(run_dir: Path) -> float:
    """The training loop's own time: the last logged time of metrics.jsonl."""
    times = [json.loads(line).get("time") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(t for t in times if t is not None)


class Scorer:
    """Domain FID (images) or chamfer (points) of samples drawn with a run's plan."""

    def __init__(self, kind: str, data_name: str, num: int, independent: bool):
        self.kind, self.num, self.data_name = kind, num, data_name
        self.independent = None
        if kind == "images":
            from denoiselab.data import build_dataset
            from denoiselab.evaluation.images import domain_extractor
            from denoiselab.io import cache_folder

            self.ref, self.cache = build_dataset(data_name), cache_folder()
            self.extractor = domain_extractor(self.ref, self.cache, log=print)
            if independent:
                from independent_mnist import IndependentMnist

                self.independent = IndependentMnist()
        else:
            self.ref = load_toy(data_name, N_POINTS, 10_000)

    def __call__(self, run, steps: int | None, seed: int = 0, grid: str | None = None,
                 sampler: str | None = None) -> dict:
        plan = runs.sampling_plan(run, sampler=sampler, steps=steps, grid=grid)
        t0 = time.perf_counter()
        x, nfe = generate(run.denoiser, self.size, run.sample_shape, seed=seed, **plan.kwargs())
        # A student's measured levels are its own: rows gather them under one name
        bf = f", network in {plan.precision}" if plan.precision != "none" else ""
        where = (f"{plan.sampler}, {plan.steps} steps at its measured levels{bf}" if plan.grid == "levels" else
                 plan.describe())
        return self.score(x, {"nfe": nfe, "plan": where, "seconds": time.perf_counter() - t0,
                              "levels": plan.grid_opts.get("sigmas")})

    @property
    def size(self) -> int:
        return self.num if self.kind == "images" else N_POINTS

    def score(self, x: torch.Tensor, out: dict) -> dict:
        if self.kind != "images":
            return {**out, "score": chamfer_distance(x, self.ref), "floor": chamfer_distance(
                load_toy(self.data_name, N_POINTS, 20_000), self.ref)}
        from denoiselab.evaluation.images import evaluate_images

        res = evaluate_images(x, self.ref, self.data_name, self.extractor, cache_dir=self.cache, bootstrap=0)["metrics"]
        out.update(score=res["FID"]["value"], floor=res["FID"]["floor"])
        if self.independent is not None:
            out.update(self.independent.scores(x))
        return out


@torch.no_grad()
def fixed_point(teacher, student, scorer: Scorer, seed: int = 0) -> dict:
    """The exact consistency function of ``student``, scored: its teacher's ODE (Heun, the
    distillation's own step) between the student's N distillation levels, from its top level down
    to the boundary, ended by f(x, sigma_min) = x / a; started as the student samples (its plan's
    start). A perfect student's one-step samples; the quality no distillation on these levels can
    pass in one step."""
    from denoiselab.rng import SampleNoise
    from denoiselab.samplers import ode_step
    from denoiselab.samplers.api import start_point
    from denoiselab.samplers.grids import karras_sigmas

    d, f = student.config.distill, student.denoiser
    sig = karras_sigmas(f.sigma_boundary, d.sigma_top or student.config.sample.sigma_max, d.levels_end + 1, d.rho)
    ts = [f.t_from_sigma(s.view(1)).float() for s in sig]
    start = runs.sampling_plan(student, steps=1).kwargs().get("start")
    n = scorer.size
    x = start_point(f, SampleNoise(seed, n, 0), n, student.sample_shape, start, float(ts[0]))
    for lo, hi in zip(ts[1:], ts[:-1]):
        x = ode_step(teacher.denoiser, x, hi.expand(n), lo.expand(n), None, d.solver)
    a, _ = f.scales(ts[-1].expand(n), x)
    return scorer.score(x / a, {"nfe": 2 * (len(sig) - 1) if d.solver == "heun" else len(sig) - 1,
                                "plan": f"teacher's {d.solver} over the student's {len(sig)} levels to "
                                        f"sigma_min {f.sigma_boundary:.3g}, ended by x / a"})


def mean_sd(values: list[float], fmt: str = ".3f") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} +- {sd:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teachers", nargs="+", type=Path, required=True)
    ap.add_argument("--students", nargs="+", type=Path, default=None, help="existing students, one per teacher")
    ap.add_argument("--out", type=Path, default=Path("/tmp/denoiselab-students"), help="where students are distilled")
    ap.add_argument("--set", action="append", default=[], help="distillation overrides, as for `denoiselab distill`")
    ap.add_argument("--method", default="cd", choices=("cd", "ct", "reflow"))
    ap.add_argument("--num", type=int, default=1000, help="image samples per score")
    ap.add_argument("--teacher-steps", nargs="+", type=int, default=[0, 10], help="0: the teacher's default")
    ap.add_argument("--independent", action="store_true", help="MNIST: add the two independent evaluators")
    ap.add_argument("--fixed-point", action="store_true", help="unconditional teachers: add the row of each student's exact consistency "
                    "function (what a perfect student would score in one step)")
    add_write_flag(ap, TABLES)
    args = ap.parse_args()
    students = args.students or []
    distill_s = []
    if not students:
        for i, teacher in enumerate(args.teachers):
            out = args.out / f"student{i}"
            sets = [a for s in args.set for a in ("--set", s)]
            distill_s.append(cli("distill", str(teacher), "--out", str(out), "--method", args.method, "--quiet",
                                 "--no-pictures", *sets))
            students.append(out)
    distill_loop = [loop_seconds(s) for s in students]
    first = runs.load_run(args.teachers[0])
    scorer = Scorer(first.kind, first.config.data.name, args.num, args.independent)
    rows: dict[str, list[dict]] = {}
    levels: dict[int, list[list[float]]] = {}
    for teacher_dir, student_dir in zip(args.teachers, students):
        teacher, student = runs.load_run(teacher_dir), runs.load_run(student_dir)
        base = None
        for steps in args.teacher_steps:
            r = scorer(teacher, steps or None)
            base = base or r["score"]
            rows.setdefault(f"teacher, {r['plan']}", []).append({**r, "ratio": r["score"] / base})
            print(teacher_dir, rows and r["plan"], f"{r['score']:.3f}", flush=True)
        if student.config.distill.method == "reflow":  # the curved teacher in the student's own steps
            for steps in STUDENT_STEPS:
                r = scorer(teacher, steps, sampler=student.config.sample.sampler)
                rows.setdefault(f"teacher, {r['plan']}", []).append({**r, "ratio": r["score"] / base})
                print(teacher_dir, r["plan"], f"{r['score']:.3f} ({r['score'] / base:.2f}x)", flush=True)
        if args.fixed_point and student.config.distill.method != "reflow":
            r = fixed_point(teacher, student, scorer)
            rows.setdefault(f"exact consistency function, {r['plan']}", []).append({**r, "ratio": r["score"] / base})
            print(student_dir, r["plan"], f"{r['score']:.3f} ({r['score'] / base:.2f}x)", flush=True)
        measured = runs.measured_levels(student_dir)[0]
        for steps in STUDENT_STEPS:
            # on the default grid, and, where the student stored them, at its measured levels
            own = student.config.sample.grid or default_grid(student.config.sample.sampler, student.denoiser)
            grids = [own] + ([""] if steps in measured else [])
            if student.config.distill.method == "reflow":  # the flow's two grids in tau: the evidence for its default
                grids = ["quadratic", "uniform"]
            for grid in grids:
                r = scorer(student, steps, grid=grid or None)
                rows.setdefault(f"student, {r['plan']}", []).append({**r, "ratio": r["score"] / base})
                print(student_dir, r["plan"], r["levels"] or "", f"{r['score']:.3f} ({r['score'] / base:.2f}x)",
                      flush=True)
                if r["levels"]:
                    levels.setdefault(steps, []).append(r["levels"])
    command_s = cli("sample", str(students[0]), "--num", "1000", "--steps", "1", "--out",
                    str(args.out / "one-step.npy")) if scorer.kind == "images" else None
    metric = "domain FID" if scorer.kind == "images" else "chamfer"
    header = ["model, sampler", "NFE", f"{metric} (mean +- sd over {len(students)})", "x teacher default", "floor"]
    if scorer.independent is not None:
        header += ["PCA FID", "MLP FID"]
    table = []
    for name, rs in rows.items():
        row = [name, rs[0]["nfe"], mean_sd([r["score"] for r in rs]), mean_sd([r["ratio"] for r in rs], ".2f"),
               f"{rs[0]['floor']:.3f}"]
        if scorer.independent is not None:
            row += [mean_sd([r[k] for r in rs]) for k in ("PCA FID", "MLP FID")]
        table.append(row)
    text = markdown_table(header, table)
    timing = [f"distillation loop: {mean_sd(distill_loop, '.0f')} s per student ({torch.get_num_threads()} threads "
              f"in this process; `train.threads` of the student's config in the distillation)"]
    if distill_s:
        timing.append(f"whole `denoiselab distill` command: {mean_sd(distill_s, '.0f')} s")
    for steps, sets in sorted(levels.items()):
        timing.append(f"measured levels at {steps} steps, one set per student: " +
                      "; ".join(", ".join(f"{x:.3g}" for x in ls) for ls in sets))
    searched = [json.loads((Path(s) / runs.LEVELS).read_text()).get("seconds") for s in students
                if (Path(s) / runs.LEVELS).is_file()]
    if searched and None not in searched:
        timing.append(f"the levels search in `denoiselab distill`: {mean_sd(searched, '.0f')} s per student")
    if command_s is not None:
        timing.append(f"`denoiselab sample STUDENT --num 1000 --steps 1 --out x.npy`, whole command: {command_s:.1f} s")
    text += "\n\n" + "\n".join(f"- {line}" for line in timing)
    print("\n" + text)
    if args.write_results:
        write_table(TABLES[args.write_results], args.write_results, text)


if __name__ == "__main__":
    main()
