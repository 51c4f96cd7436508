"""A conditional preset's figures over several trainings, each run sampled as a user gets it
(its stored sampler, steps, grid, eta and guidance scale): mean +- sd over the trainings.

- class-conditional runs (`mnist-class`): 1000 samples (every class in turn), judged by the
  evaluation's domain feature network: asked-digit accuracy, within-class diversity, FID (with
  the real-vs-real floor); optionally also at other guidance scales (`--scales`);
- text runs (`mnist-text`): 500 samples of the training captions, the digit judged by the same
  network and the colour measured: digit, colour and both right.

    python benchmarks/preset_figures.py --kind class --runs RUN0 RUN1 RUN2 --write-results
    python benchmarks/preset_figures.py --kind text --runs RUN0 RUN1 RUN2 --write-results
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from denoiselab.data.captioned import FULL_TEMPLATES
from denoiselab.guidance import guided
from denoiselab.models.text_encoder import prompt_condition
from denoiselab.runs import class_labels, load_run, num_classes, sampling_plan
from denoiselab.samplers.api import generate
from guidance import Judge
from mnist_quality import loop_seconds
from results import add_write_flag, markdown_table, write_table
from text_guidance import judge as judge_text
from text_guidance import prompts_for


def mean_sd(values: list[float], fmt: str = ".2f") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} +- {sd:{fmt}}"


def class_row(run, judge: Judge, w: float, num: int, seed: int, precision=None) -> dict:
    plan = sampling_plan(run)
    plan.precision = precision or plan.precision
    labels = class_labels(num, num_classes(run))
    t0 = time.perf_counter()
    x, nfe = generate(guided(run.denoiser, scale=w), num, run.sample_shape, seed=seed, cond=labels, **plan.kwargs())
    return {**judge(x, labels), "seconds": time.perf_counter() - t0, "nfe": nfe, "plan": plan.describe()}


def text_row(run, classify, w: float, num: int, seed: int, precision=None) -> dict:
    plan = sampling_plan(run)
    plan.precision = precision or plan.precision
    texts, want_digit, want_colour = prompts_for(num, FULL_TEMPLATES)
    cond, uncond = prompt_condition(run.net.null_cond, texts, num)
    t0 = time.perf_counter()
    x, nfe = generate(guided(run.denoiser, scale=w, uncond=uncond), num, run.sample_shape, seed=seed, cond=cond,
                      **plan.kwargs())
    digit, colour = judge_text(x, classify)
    ok_d, ok_c = digit == want_digit, colour == want_colour
    return {"digit": ok_d.double().mean().item(), "colour": ok_c.double().mean().item(),
            "both": (ok_d & ok_c).double().mean().item(), "seconds": time.perf_counter() - t0, "nfe": nfe,
            "plan": plan.describe()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["class", "text"], required=True)
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="trainings of one preset (seeds 0, 1, 2)")
    ap.add_argument("--scales", type=float, nargs="*", default=[], help="guidance scales besides the run's own")
    ap.add_argument("--num", type=int, default=None, help="samples per run (default 1000 class, 500 text)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default=None, help="the network's autocast while sampling (default: the run's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_write_flag(ap)
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = [load_run(r) for r in args.runs]
    own = loaded[0].config.sample.guidance
    scales = [own] + [w for w in args.scales if w != own]
    num = args.num or (1000 if args.kind == "class" else 500)
    judge = Judge(log)
    per: dict[float, list[dict]] = {w: [] for w in scales}
    for run in loaded:
        for w in scales:
            r = (class_row(run, judge, w, num, args.seed, args.precision) if args.kind == "class"
                 else text_row(run, judge.ext.classify, w, num, args.seed, args.precision))
            per[w].append(r)
            log(f"{run.run_dir} w = {w:g}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if isinstance(v, float)))
    plan, nfe = per[own][0]["plan"], per[own][0]["nfe"]
    train_s = [loop_seconds(Path(r.run_dir)) for r in loaded]
    train_s = [t for t in train_s if t]
    caption = (f"{len(loaded)} trainings of `{loaded[0].config.preset}` (seeds "
               f"{', '.join(str(r.config.train.seed) for r in loaded)}; training loop "
               + (f"{min(train_s):.0f}-{max(train_s):.0f} s" if train_s else "time not recorded")
               + f"), {num} samples each, sampling seed {args.seed}; sampled as the run stores it: {plan}, NFE {nfe}; "
               f"mean +- sd over the trainings.")
    if args.kind == "class":
        header = ["w", "asked digit (%)", "within-class diversity", "FID (domain)", "FID floor"]
        rows = [[f"{w:g}" + (" (the run's own)" if w == own else ""),
                 mean_sd([100 * r["accuracy"] for r in per[w]], ".1f"), mean_sd([r["diversity"] for r in per[w]]),
                 mean_sd([r["FID"] for r in per[w]]), f"{per[w][0]['FID floor']:.2f}"] for w in scales]
        caption += f" Real digits' within-class diversity: {judge.real_diversity:.2f}."
    else:
        header = ["w", "digit right (%)", "colour right (%)", "both right (%)"]
        rows = [[f"{w:g}" + (" (the run's own)" if w == own else "")]
                + [mean_sd([100 * r[k] for r in per[w]], ".1f") for k in ("digit", "colour", "both")] for w in scales]
    table = caption + "\n\n" + markdown_table(header, rows)
    print(table)
    if args.write_results:
        page, name = ("guidance", "mnist-class-recipe") if args.kind == "class" else ("text", "mnist-text-recipe")
        write_table(page, name, table)


if __name__ == "__main__":
    main()
