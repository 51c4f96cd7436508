"""`denoiselab demo`: train the default models on the embedded data and leave pictures and
numbers in one folder (``summary.md`` lists them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import runs
from ..config import apply_overrides
from ..data import load_toy
from ..evaluation import chamfer_distance
from ..evaluation.report import append_metrics, evaluate_points
from ..io import read_jsonl
from ..presets import get_preset
from ..samplers.api import generate

SEEDS = (0, 1, 2)


def _train(preset: str, out: Path, overrides: list[str]) -> tuple[Path, float]:
    cfg = apply_overrides(get_preset(preset), overrides)
    print(f"[demo] training {preset} ({cfg.train.steps} steps) -> {out}", flush=True)
    result, _ = runs.fit_run(cfg, out)  # as `denoiselab train`: config.json, checkpoint, pictures, page
    return out, result["seconds"]


def demo_2d(root: Path, quick: bool) -> list[str]:
    over = ["steps=300"] if quick else []
    run_dir, secs = _train("swiss-roll", root / "swiss-roll", over)
    run = runs.load_run(run_dir)
    lines = [f"## 2D swiss roll (preset `swiss-roll`, trained {secs:.0f} s)", "",
             "| sampler | chamfer (mean of 3 seeds) | floor: real vs real |", "| --- | --- | --- |"]
    floor = sum(chamfer_distance(load_toy("swiss-roll", 2048, 20_000 + s), load_toy("swiss-roll", 2048, 10_000 + s))
                for s in SEEDS) / len(SEEDS)
    results = {}
    for sampler, steps in (("ddpm", 100 if quick else 1000), ("ddim", 50)):
        cds, first = [], None
        plan = runs.sampling_plan(run, sampler=sampler, steps=steps)  # as `denoiselab sample` draws them
        for s in SEEDS:
            x, _ = generate(run.denoiser, 2048, (2,), seed=s, **plan.kwargs())
            cds.append(chamfer_distance(x, load_toy("swiss-roll", 2048, 10_000 + s)))
            first = x if s == SEEDS[0] else first
        results[f"{sampler}-{steps}"] = sum(cds) / len(cds)
        # The first seed's samples, scored as `denoiselab evaluate` would: the run's page shows them with floors.
        append_metrics(run_dir, {"evaluate": evaluate_points(first, "swiss-roll", seed=10_000 + SEEDS[0]),
                                 "sampler": sampler, "steps": steps, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        lines.append(f"| {sampler.upper()} {steps} steps | {results[f'{sampler}-{steps}']:.3f} | {floor:.3f} |")
    (run_dir / "chamfer.json").write_text(json.dumps({"chamfer": results, "floor": floor, "train_seconds": secs}, indent=2))
    lines += ["", "![forward](swiss-roll/forward.png)", "![samples](swiss-roll/samples.png)",
              "![reverse](swiss-roll/reverse.gif)", "![loss](swiss-roll/loss.png)", ""]
    return lines


def demo_mnist(root: Path, quick: bool) -> list[str]:
    """The `mnist` preset on the 5,000 embedded digits: samples, the reverse and forward processes,
    pixel histograms and schedules compared; the quick run only checks that everything connects."""
    over = (["steps=20", "batch_size=16", "preview_every=20", "sample.steps=5", "log_every=5"] if quick else [])
    t0 = time.perf_counter()
    run_dir, secs = _train("mnist", root / "mnist", over)
    total = time.perf_counter() - t0
    rows = read_jsonl(run_dir / "metrics.jsonl")
    numbers = json.loads((run_dir / "pictures.json").read_text())
    hist = numbers["pixel_histograms"]
    lines = [f"## MNIST (preset `mnist`, {rows[-1]['step']} steps, trained {secs:.0f} s, with pictures {total:.0f} s)", "",
             f"Final training loss {rows[-1]['loss']:.4f}. Samples: {numbers['samples']['sampler'].upper()}"
             + runs.eta_text(numbers["samples"])
             + f", {numbers['samples']['steps']} steps (NFE {numbers['samples']['nfe']}).", "",
             "![samples](mnist/samples.png)", "![reverse](mnist/reverse.gif)", "![forward](mnist/forward.png)",
             "![forward](mnist/forward.gif)", "![loss](mnist/loss.png)", "",
             "Pixels before and after the forward process (t = T - 1):", "",
             "| pixels | mean | std | KS to N(0, 1) |", "| --- | --- | --- | --- |"]
    for key, label in (("data", "training images"), ("x_T", f"x_T, t = {hist['t']}")):
        for v in hist[key].values():
            lines.append(f"| {label} | {v['mean']:+.3f} | {v['std']:.3f} | {v['ks']:.3f} |")
    lines += ["", "![histograms](mnist/histograms.png)", "",
              "| schedule | steps with corr(x_t, x_0) > 0.5 | corr at T/2 |", "| --- | --- | --- |"]
    for name, v in numbers["schedule_survival"].items():
        lines.append(f"| {name} | {v['steps_corr_above_0.5']} | {v['corr_at_T_half']:.3f} |")
    lines += ["", "![schedules on an image](mnist/schedule_images.png)", ""]
    return lines


def run_demo(root: Path, quick: bool = False) -> Path:
    from ..viz import plots  # matplotlib: only when pictures are drawn, not for every command's start

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# denoiselab demo", ""]
    plots.plot_schedules(root / "schedules.png")
    lines += ["![schedules](schedules.png)", ""]
    lines += demo_2d(root, quick)
    lines += demo_mnist(root, quick)
    summary = root / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    from ..viz.compare import write_comparison
    from ..viz.report import REPORT

    compared, _ = write_comparison(root)  # rebuilds each run's page too, now with the demo's scores
    print(f"[demo] pictures and numbers in {root}/ (see {summary})", flush=True)
    print(f"[demo] the runs compared: {compared}", flush=True)
    print(f"[demo] report: {root / 'mnist' / REPORT}", flush=True)
    return summary


def cmd_demo(args) -> int:
    run_demo(Path(args.out), quick=args.quick)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train and evaluate the default models, write pictures and numbers")
    p.add_argument("--out", default="demo-output",
                   help="folder for the two runs (swiss-roll/, mnist/), their pictures and summary.md "
                        "(default demo-output)")
    p.add_argument("--quick", action="store_true",
                   help="train a few steps only: checks that everything runs (the numbers mean nothing)")
    p.set_defaults(fn=cmd_demo)
