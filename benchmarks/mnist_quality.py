"""Does the `mnist` preset give recognisable digits within 15 minutes on this machine?

Trains the preset (or reads an existing run with --run), draws samples with the preset's
sampler, writes the grid (default docs/mnist_samples.png) and prints a table: training time,
steps, loss, and a recognisability proxy from a pixel classifier fitted on real digits
(multinomial logistic regression on MNIST-5k): the share of samples it labels with confidence
>= 0.9 and how many of the 10 classes appear, with the same numbers for held-out real digits
beside them.

    .venv/bin/python benchmarks/mnist_quality.py --out /tmp/mnist-run            # train + measure
    .venv/bin/python benchmarks/mnist_quality.py --run /tmp/mnist-run             # measure only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from denoiselab import pipeline
from denoiselab.config import apply_overrides, get_preset
from denoiselab.data.images import load_mnist5k
from denoiselab.samplers.api import generate
from denoiselab.viz.images import save_grid


def classifier():
    from sklearn.linear_model import LogisticRegression

    x, y = load_mnist5k()
    flat = x.reshape(len(x), -1).numpy()
    clf = LogisticRegression(max_iter=300, C=0.05)
    clf.fit(flat[:4000], y[:4000].numpy())
    return clf, flat[4000:], y[4000:].numpy()


def scores(clf, flat: np.ndarray) -> dict:
    p = clf.predict_proba(flat)
    labels = p.argmax(1)
    return {"confident": float((p.max(1) >= 0.9).mean()), "classes": int(len(np.unique(labels))),
            "mean_max_prob": float(p.max(1).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/denoiselab-mnist-bench", help="run directory to train into")
    ap.add_argument("--run", default=None, help="measure an existing run directory instead of training")
    ap.add_argument("--set", action="append", default=[], help="preset overrides, as for `denoiselab train`")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--grid", default="docs/mnist_samples.png")
    args = ap.parse_args()

    train_s = None
    if args.run is None:
        out = Path(args.out)
        cfg = apply_overrides(get_preset("mnist"), args.set)
        out.mkdir(parents=True, exist_ok=True)
        (out / pipeline.CONFIG).write_text(cfg.to_json())
        data = pipeline.build_data(cfg)
        t0 = time.perf_counter()
        pipeline.make_trainer(cfg, out, data, progress=False).fit()
        train_s = time.perf_counter() - t0
    else:
        out = Path(args.run)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        train_s = rows[-1].get("time") if rows else None
    run = pipeline.load_run(out)
    s = run.config.sample
    t0 = time.perf_counter()
    x, nfe = generate(run.denoiser, args.num, run.sample_shape, sampler=s.sampler, steps=s.steps, seed=0,
                      **({"eta": s.eta} if s.sampler == "ddim" else {}))
    sample_s = time.perf_counter() - t0
    save_grid(x[:64], Path(args.grid), nrow=8)
    clf, real_flat, real_y = classifier()
    real = scores(clf, real_flat)
    fake = scores(clf, x.reshape(len(x), -1).clamp(-1, 1).numpy())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    print(f"run {out}: {run.step} steps, batch {run.config.train.batch_size}, "
          f"{sum(p.numel() for p in run.net.parameters()) / 1e6:.2f}M parameters; torch threads {torch.get_num_threads()}")
    print()
    print("| what | value | real digits (held out) |")
    print("| --- | --- | --- |")
    print(f"| training time | {train_s / 60:.1f} min |  |" if train_s else "| training time | unknown |  |")
    print(f"| final training loss | {rows[-1]['loss']:.4f} |  |")
    print(f"| sampling: {s.sampler} {s.steps} steps (NFE {nfe}), {args.num} samples | {sample_s:.1f} s |  |")
    print(f"| classifier confidence >= 0.9 | {fake['confident']:.2f} | {real['confident']:.2f} |")
    print(f"| mean max class probability | {fake['mean_max_prob']:.2f} | {real['mean_max_prob']:.2f} |")
    print(f"| classes present (of 10) | {fake['classes']} | {real['classes']} |")
    print(f"\nsample grid: {args.grid}")


if __name__ == "__main__":
    main()
