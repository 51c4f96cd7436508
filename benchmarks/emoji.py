"""Diffusion on emoji (docs/results/emoji.md): the trained presets scored as a user gets them,
and latent against pixel training throughput.

- ``--runs R0 R1 R2``: trainings of one preset (emoji32, emoji32-class, emoji-latent, ...), each
  scored by `denoiselab evaluate RUN --ref data:emoji --num 1000` (domain FID against the held-out
  emoji with its real-vs-real floor; class-conditional runs also the share of samples the domain
  classifier reads as the asked category), and `denoiselab sample RUN --num 1000` timed as a whole
  command; mean +- sd over the runs.
- ``--text R0 ...``: emoji-text runs: for each category prompt ("a food emoji") and object prompt
  ("red apple", the name of an emoji of that category), samples at the run's guidance, the share
  the domain classifier puts in the named category; and the README's grid of 10 prompts x 8.
- ``--throughput``: images per second of a training step of `emoji64` (pixels, 64x64x3) and
  `emoji64-latent` (16x16x4 latents) at equal batch, and what encoding the data set once costs.

    python benchmarks/emoji.py --runs runs/e32-0 runs/e32-1 runs/e32-2 --write-results emoji32
    python benchmarks/emoji.py --throughput --write-results emoji-latent-throughput
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnist_quality import loop_seconds
from results import add_write_flag, markdown_table, write_table

DL = [sys.executable, "-m", "denoiselab.cli"]


def mean_sd(values: list[float], fmt: str = ".2f") -> str:
    if not values:
        return "n/a"
    if len(values) == 1:  # one training: no spread to show
        return f"{values[0]:{fmt}}"
    return f"{statistics.mean(values):{fmt}} +- {statistics.stdev(values):{fmt}}"


def score(run: Path, num: int) -> dict:
    """`denoiselab evaluate` as a user runs it, and `denoiselab sample` timed as a whole command."""
    out = subprocess.run([*DL, "evaluate", str(run), "--ref", "data:emoji", "--num", str(num), "--json"],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)["metrics"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([*DL, "sample", str(run), "--num", str(num), "--out", str(Path(tmp) / "x.npy")],
                       capture_output=True, check=True)
        seconds = time.perf_counter() - t0
    acc = res.get("class accuracy", {})
    return {"fid": res["FID"]["value"], "floor": res["FID"]["floor"], "acc": acc.get("value"),
            "acc_floor": acc.get("floor"), "sample_s": seconds, "train_s": loop_seconds(run)}


def runs_table(runs: list[Path], num: int) -> str:
    rows = [score(r, num) for r in runs]
    for r, s in zip(runs, rows):
        print(f"{r}: {s}", flush=True)
    cfg = json.loads((runs[0] / "config.json").read_text())
    acc = [s["acc"] for s in rows if s["acc"] is not None]
    return markdown_table(
        ["preset", "trainings", "training loop (s)", f"domain FID, {num} samples", "FID floor",
         "asked category (%)", f"`sample --num {num}` (s)"],
        [[f"`{cfg['preset']}`", len(rows), mean_sd([s["train_s"] for s in rows], ".0f"),
          mean_sd([s["fid"] for s in rows]), mean_sd([s["floor"] for s in rows]),
          mean_sd([100 * a for a in acc], ".1f") if acc else "n/a", mean_sd([s["sample_s"] for s in rows], ".1f")]])


def text_table(runs: list[Path], per_prompt: int, grid: Path | None) -> str:
    from denoiselab.data import build_dataset
    from denoiselab.data.emoji import CATEGORIES, CATEGORY_PROMPTS, load_emoji
    from denoiselab.evaluation.images import domain_extractor
    from denoiselab.io import cache_folder
    from denoiselab.runs import load
    from denoiselab.viz.images import save_grid

    data = build_dataset("emoji", {"image_size": 32})
    classify = domain_extractor(data, cache_folder()).classify
    _, _, entries = load_emoji(32, "train")
    # An object prompt per category: the name of its first base emoji in the training split.
    objects = {}
    for e in entries:
        objects.setdefault(e.category, e.name)
    prompts = [(CATEGORY_PROMPTS[c], i) for i, c in enumerate(CATEGORIES)]
    prompts += [(objects[c], i) for i, c in enumerate(CATEGORIES) if c in objects]
    cat_acc, obj_acc = [], []
    for k, path in enumerate(runs):
        run = load(path)
        right = {"category": [], "object": []}
        for n, (text, want) in enumerate(prompts):
            x = run.sample(per_prompt, seed=n, prompt=text)
            got = classify(x).argmax(1)
            right["category" if n < len(CATEGORIES) else "object"].append(float((got == want).double().mean()))
            print(f"{path} {text!r}: {right['category' if n < len(CATEGORIES) else 'object'][-1]:.2f}", flush=True)
        cat_acc.append(statistics.mean(right["category"]))
        obj_acc.append(statistics.mean(right["object"]))
        if grid is not None and k == 0:
            show = [p for p, _ in prompts[:5]] + [p for p, _ in prompts[len(CATEGORIES):len(CATEGORIES) + 5]]
            rows = [run.sample(8, seed=100 + i, prompt=p) for i, p in enumerate(show)]
            save_grid(torch.cat(rows), grid, nrow=8)
            print(f"wrote {grid}: rows {show}")
    return markdown_table(["preset", "trainings", "prompts", f"in the named category (%), {per_prompt} each"],
                          [["`emoji-text`", len(runs), "a category (\"a food emoji\"), 9",
                            mean_sd([100 * a for a in cat_acc], ".1f")],
                           ["`emoji-text`", len(runs), "an object (\"red apple\"), 9",
                            mean_sd([100 * a for a in obj_acc], ".1f")]])


def step_rate(preset: str, batch: int, steps: int, sets: list[str]) -> float:
    """Images per second of the preset's training step (forward, backward, optimizer) on random data."""
    from denoiselab.config import apply_overrides
    from denoiselab.presets import get_preset
    from denoiselab.runs.build import build_net, build_objective

    cfg = apply_overrides(get_preset(preset), sets)
    net = build_net(cfg)
    obj = build_objective(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    opts = cfg.model.options
    shape = (int(opts["in_channels"]), int(opts["image_size"]), int(opts["image_size"]))
    x = torch.randn(batch, *shape)
    g = torch.Generator().manual_seed(0)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = obj(net, x, None, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def throughput_table(batch: int, steps: int) -> str:
    from denoiselab.data import build_dataset
    from denoiselab.models import build_model

    rows, rates = [], {}
    for preset in ("emoji64", "emoji64-latent"):
        rates[preset] = step_rate(preset, batch, steps, [])
        print(f"{preset}: {rates[preset]:.1f} images/s", flush=True)
    # The one-off cost of a latent run: encoding the training images through a 64x64 autoencoder.
    ae = build_model("autoencoder", image_size=64).eval()
    data = build_dataset("emoji", {"image_size": 64})
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(data.x), 256):
            ae.encode(data.x[i:i + 256])
    enc = time.perf_counter() - t0
    rows.append(["`emoji64` (pixels, 64x64x3)", batch, f"{rates['emoji64']:.1f}", "1.00x", ""])
    rows.append(["`emoji64-latent` (latents, 16x16x4)", batch, f"{rates['emoji64-latent']:.1f}",
                 f"{rates['emoji64-latent'] / rates['emoji64']:.2f}x",
                 f"{enc:.1f} s once for {len(data.x)} images"])
    return markdown_table(["preset", "batch", "training images/s", "against pixels", "encoding the data set"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", type=Path, help="trainings of one preset")
    ap.add_argument("--text", nargs="+", type=Path, help="emoji-text trainings")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--num", type=int, default=1000, help="samples per score")
    ap.add_argument("--per-prompt", type=int, default=50)
    ap.add_argument("--grid", type=Path, default=None, help="--text: write the 10 x 8 prompt grid here")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    add_write_flag(ap, {t: "emoji" for t in ("emoji32", "emoji32-class", "emoji-latent", "emoji-text",
                                             "emoji-latent-throughput")})
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.throughput:
        table = throughput_table(args.batch, args.steps)
    elif args.text:
        table = text_table(args.text, args.per_prompt, args.grid)
    elif args.runs:
        table = runs_table(args.runs, args.num)
    else:
        ap.error("give --runs, --text or --throughput")
    print(table)
    if args.write_results:
        write_table("emoji", args.write_results, table)


if __name__ == "__main__":
    main()
