"""`denoiselab demo`: train the default models on the embedded data and leave pictures and
numbers in one folder (``summary.md`` lists them)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import pipeline
from .config import apply_overrides, get_preset
from .data import load_toy
from .evaluation import chamfer_distance
from .samplers.api import generate
from .viz import plots

SEEDS = (0, 1, 2)


def _train(preset: str, out: Path, overrides: list[str]) -> tuple[Path, float]:
    cfg = apply_overrides(get_preset(preset), overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / pipeline.CONFIG).write_text(cfg.to_json())
    data = pipeline.build_data(cfg)
    print(f"[demo] training {preset} ({cfg.train.steps} steps) -> {out}", flush=True)
    t0 = time.perf_counter()
    pipeline.make_trainer(cfg, out, data).fit()
    secs = time.perf_counter() - t0
    pipeline.run_pictures(out, data)
    return out, secs


def demo_2d(root: Path, quick: bool) -> list[str]:
    over = ["steps=300"] if quick else []
    run_dir, secs = _train("swiss-roll", root / "swiss-roll", over)
    run = pipeline.load_run(run_dir)
    lines = [f"## 2D swiss roll (preset `swiss-roll`, trained {secs:.0f} s)", "",
             "| sampler | chamfer (mean of 3 seeds) | floor: real vs real |", "| --- | --- | --- |"]
    floor = sum(chamfer_distance(load_toy("swiss-roll", 2048, 20_000 + s), load_toy("swiss-roll", 2048, 10_000 + s))
                for s in SEEDS) / len(SEEDS)
    results = {}
    for sampler, steps in (("ddpm", 100 if quick else 1000), ("ddim", 50)):
        cds = []
        for s in SEEDS:
            x, _ = generate(run.denoiser, 2048, (2,), sampler=sampler, steps=steps, seed=s)
            cds.append(chamfer_distance(x, load_toy("swiss-roll", 2048, 10_000 + s)))
        results[f"{sampler}-{steps}"] = sum(cds) / len(cds)
        lines.append(f"| {sampler.upper()} {steps} steps | {results[f'{sampler}-{steps}']:.3f} | {floor:.3f} |")
    (run_dir / "chamfer.json").write_text(json.dumps({"chamfer": results, "floor": floor, "train_seconds": secs}, indent=2))
    lines += ["", "![forward](swiss-roll/forward.png)", "![samples](swiss-roll/samples.png)",
              "![reverse](swiss-roll/reverse.gif)", "![loss](swiss-roll/loss.png)", ""]
    return lines


def run_demo(root: Path, quick: bool = False) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# denoiselab demo", ""]
    plots.plot_schedules(root / "schedules.png")
    lines += ["![schedules](schedules.png)", ""]
    lines += demo_2d(root, quick)
    summary = root / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    print(f"[demo] pictures and numbers in {root}/ (see {summary})", flush=True)
    return summary
