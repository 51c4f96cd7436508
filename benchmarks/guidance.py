"""Conditioning targets on MNIST: classifier-free guidance sweep, classifier guidance, CFG cost.

Reads trained runs (nothing is trained here):
  --class-run       the class-conditional `mnist-class` run
  --uncond-run      the unconditional `mnist` run (its FID is the bar; classifier guidance guides it)
  --classifier-run  a `mnist-classifier` run (noise-aware classifier on the mnist schedule)

Every row draws --num samples (equal numbers of each class, sample i from (seed, i)) with DDIM
(--steps) and judges them with the evaluation's domain feature network (trained on MNIST-5k once,
cached; its held-out accuracy is printed as the ceiling): asked-digit accuracy, FID in its feature
space against the reference half (with the real-vs-real floor), and within-class diversity = mean
pairwise feature distance between samples of the same class (real digits' value beside it). The
CFG time ratio is guided (w = 3, one batched forward of both halves) over the conditional model
alone (w = 1, one forward), same sampler, steps, batch and samples.

    .venv/bin/python benchmarks/guidance.py \\
        --class-run runs/mnist-class --uncond-run runs/mnist --classifier-run runs/mnist-classifier

``--write-results`` writes what the run measured into docs/results/guidance.md: the CFG rows to
``cfg-scale``, the unconditional and classifier-guided rows to ``classifier-guidance``, the CFG
time ratio and training times to ``guidance-cost``:

    .venv/bin/python benchmarks/guidance.py --class-run runs/mnist-class --uncond-run runs/mnist \
        --classifier-run runs/mnist-classifier --classifier-scales 5 10 20 40 --timing-run runs/mnist-class \
        --timing-num 300 --write-results
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from denoiselab import runs
from denoiselab.data import build_dataset
from denoiselab.evaluation.images import domain_extractor, evaluate_images, extract, reference_halves
from denoiselab.guidance import guided
from denoiselab.io import cache_folder
from denoiselab.runs import check_classifier, class_labels, load_classifier, num_classes
from denoiselab.samplers.api import generate
from denoiselab.viz.images import save_grid
from mnist_quality import loop_seconds
from results import add_write_flag, markdown_table, write_table


def training_time(run_dir: Path) -> dict:
    """Wall time from the run's /usr/bin/time log (RUN_DIR.log beside it) and the trainer's own clock."""
    out = {}
    log = Path(str(run_dir).rstrip("/") + ".log")
    if log.is_file():
        m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", log.read_text())
        if m:
            parts = [float(p) for p in m.group(1).split(":")]
            out["wall_s"] = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    if (run_dir / "metrics.jsonl").is_file() and loop_seconds(run_dir) is not None:
        out["train_loop_s"] = loop_seconds(run_dir)
    return out


def diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the mean pairwise distance between feature vectors of one class."""
    vals = [torch.pdist(features[labels == c].double()).mean().item() for c in labels.unique()]
    return sum(vals) / len(vals)


class Judge:
    def __init__(self, log):
        self.ref = build_dataset("mnist")
        self.cache = cache_folder()
        self.ext = domain_extractor(self.ref, self.cache, log=log)
        self.log = log
        _, half_b = reference_halves(len(self.ref.x))
        real = self.ref.x[half_b]
        self.real_diversity = diversity(extract(self.ext, real), self.ref.y[half_b])

    def __call__(self, x: torch.Tensor, labels) -> dict:
        res = evaluate_images(x, self.ref, "mnist", self.ext, cache_dir=self.cache, labels=labels, bootstrap=0)
        m = res["metrics"]
        out = {"FID": m["FID"]["value"], "FID floor": m["FID"]["floor"]}
        if labels is not None:
            out["accuracy"] = m["class accuracy"]["value"]
            out["diversity"] = diversity(extract(self.ext, x), torch.as_tensor(labels))
        return out


def draw(denoiser, n: int, shape, labels, args) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    x, _ = generate(denoiser, n, shape, sampler="ddim", steps=args.steps, seed=args.seed, cond=labels,
                    batch_size=args.batch_size)
    return x, time.perf_counter() - t0


def cfg_cost(run, args, log) -> dict:
    """Guided (w = 3: both halves in one batched forward) over conditional-only (w = 1: one forward)
    sampling time, same sampler, steps, batch and samples, alternated and repeated (median), after a
    warm-up, so that a busy machine's drift hits both alike."""
    import statistics

    k = num_classes(run)
    labels = class_labels(args.timing_num, k)
    sub = argparse.Namespace(**{**vars(args), "steps": args.timing_steps})
    draw(guided(run.denoiser, scale=3.0), min(50, args.timing_num), run.sample_shape, labels[:50], sub)  # warm-up
    times = {1.0: [], 3.0: []}
    for _ in range(args.timing_repeats):
        for w in (1.0, 3.0):
            times[w].append(draw(guided(run.denoiser, scale=w), args.timing_num, run.sample_shape, labels, sub)[1])
    out = {"w1_s": times[1.0], "w3_s": times[3.0],
           "ratio": statistics.median(times[3.0]) / statistics.median(times[1.0]),
           "num": args.timing_num, "steps": args.timing_steps, "batch_size": args.batch_size}
    log(f"CFG cost: w = 1 {times[1.0]} s, w = 3 {times[3.0]} s, median ratio {out['ratio']:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class-run", default="runs/mnist-class")
    ap.add_argument("--uncond-run", default="runs/mnist")
    ap.add_argument("--classifier-run", default=None)
    ap.add_argument("--scales", type=float, nargs="+", default=[0, 1, 2, 3, 5, 7])
    ap.add_argument("--classifier-scales", type=float, nargs="+", default=[1, 3, 10])
    ap.add_argument("--num", type=int, default=1000, help="samples per row (equal numbers of each class)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="directory for results.json, table.md and sample grids")
    ap.add_argument("--timing-run", default=None, help="a class-conditional run for the CFG cost measurement alone")
    ap.add_argument("--timing-num", type=int, default=500)
    ap.add_argument("--timing-steps", type=int, default=10)
    ap.add_argument("--timing-repeats", type=int, default=3)
    add_write_flag(ap)
    args = ap.parse_args()

    log = lambda s: print(s, flush=True)  # noqa: E731
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    judge = Judge(log)
    log(f"judge: domain feature network, held-out accuracy {judge.ext.info['heldout_accuracy']:.4f}; "
        f"real digits' within-class diversity {judge.real_diversity:.3f}")
    rows, results = [], {"judge_heldout_accuracy": judge.ext.info["heldout_accuracy"],
                         "real_diversity": judge.real_diversity, "num": args.num, "steps": args.steps}

    def row(name: str, r: dict, secs: float) -> None:
        rows.append((name, r, secs))
        results.setdefault("rows", []).append({"name": name, **r, "sample_s": secs})
        log(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items()) + f", {secs:.1f} s")

    times = {}
    cls_dir = Path(args.class_run)
    if (cls_dir / "checkpoint.safetensors").is_file():
        results["class_run_training"] = training_time(cls_dir)
        run = runs.load_run(cls_dir)
        k = num_classes(run)
        labels = class_labels(args.num, k)
        for w in args.scales:
            x, secs = draw(guided(run.denoiser, scale=w), args.num, run.sample_shape, labels, args)
            times[w] = secs
            row(f"CFG w = {w:g}", judge(x, labels), secs)
            if out:
                order = torch.cat([torch.nonzero(labels == c)[:4, 0] for c in range(k)]).reshape(k, 4).T.reshape(-1)
                save_grid(x[order], out / f"cfg_w{w:g}.png", nrow=k)
        if 1.0 in times and 3.0 in times:
            results["cfg_time_ratio_w3_over_w1"] = times[3.0] / times[1.0]
    unc_dir = Path(args.uncond_run)
    if (unc_dir / "checkpoint.safetensors").is_file():
        results["uncond_run_training"] = training_time(unc_dir)
        urun = runs.load_run(unc_dir)
        x, secs = draw(urun.denoiser, args.num, urun.sample_shape, None, args)
        row("unconditional mnist", judge(x, None), secs)
        if args.classifier_run:
            clf = load_classifier(args.classifier_run)
            check_classifier(urun, clf)
            results["classifier_training"] = training_time(Path(args.classifier_run))
            labels = class_labels(args.num, num_classes(clf))
            for s in args.classifier_scales:
                den = guided(urun.denoiser, classifier=clf.net, classifier_scale=s)
                x, secs = draw(den, args.num, urun.sample_shape, labels, args)
                row(f"classifier guidance s = {s:g}", judge(x, labels), secs)
                if out:
                    order = torch.cat([torch.nonzero(labels == c)[:4, 0] for c in range(10)]).reshape(10, 4).T.reshape(-1)
                    save_grid(x[order], out / f"clf_s{s:g}.png", nrow=10)

    if args.timing_run:
        results["cfg_cost"] = cfg_cost(runs.load_run(Path(args.timing_run)), args, log)

    caption = (f"{args.num} samples per row (equal per class), DDIM {args.steps} steps, seed {args.seed}; judge: domain "
               f"feature network (held-out accuracy {judge.ext.info['heldout_accuracy']:.4f}); real within-class "
               f"diversity {judge.real_diversity:.3f}")
    costs = cost_lines(results)
    table = "\n".join([caption, "", rows_table(rows), "", *costs])
    print(table)
    if out:
        (out / "table.md").write_text(table + "\n")
        (out / "results.json").write_text(json.dumps(results, indent=2))
    if args.write_results:
        publish(rows, caption, costs)


def rows_table(rows: list[tuple[str, dict, float]]) -> str:
    table = []
    for name, r, secs in rows:
        acc = f"{100 * r['accuracy']:.1f}%" if "accuracy" in r else "-"
        div = f"{r['diversity']:.3f}" if "diversity" in r else "-"
        table.append([name, acc, div, f"{r['FID']:.3f}", f"{r['FID floor']:.3f}", f"{secs:.1f}"])
    return markdown_table(["run", "accuracy", "within-class diversity", "FID (domain)", "FID floor", "sampling s"], table)


def cost_lines(results: dict) -> list[str]:
    """The training times and the CFG time ratios, one line each."""
    lines = []
    for key in ("class_run_training", "uncond_run_training", "classifier_training"):
        if key in results:
            lines.append(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v:.0f}" for k, v in results[key].items()))
    if "cfg_time_ratio_w3_over_w1" in results:
        lines.append(f"CFG time ratio of the sweep rows (w = 3 over w = 1, same sampler/steps/batch, one run each): "
                     f"{results['cfg_time_ratio_w3_over_w1']:.2f}x")
    if "cfg_cost" in results:
        c = results["cfg_cost"]
        lines.append(f"CFG time ratio (w = 3 over w = 1, {c['num']} samples, DDIM {c['steps']} steps, batch "
                     f"{c['batch_size']}, median of {len(c['w1_s'])} alternated runs): {c['ratio']:.2f}x")
    return lines


def publish(rows: list[tuple[str, dict, float]], caption: str, costs: list[str]) -> None:
    """Each of the three tables of docs/results/guidance.md that this run measured."""
    cfg = [row for row in rows if row[0].startswith("CFG")]
    rest = [row for row in rows if not row[0].startswith("CFG")]
    if cfg:
        write_table("guidance", "cfg-scale", f"{caption}\n\n{rows_table(cfg)}")
    if any(row[0].startswith("classifier") for row in rest):
        write_table("guidance", "classifier-guidance", f"{caption}\n\n{rows_table(rest)}")
    if costs:
        write_table("guidance", "guidance-cost", markdown_table(["what", "measured"],
                                                                [line.split(": ", 1) for line in costs]))


if __name__ == "__main__":
    main()
