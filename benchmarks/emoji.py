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
- ``--runs R0 ... --by-steps K [K ...]``: the same two scores at K steps of the runs' own sampler
  (``--steps K``): what fewer steps buy in sampling time and cost in FID.
- ``--diffusers-beside R0 R1 R2``: beside each `emoji32` training, diffusers' ``UNet2DModel``
  (the ``bench`` extra) of about the same parameter count, trained with the same recipe (data,
  objective, optimizer, schedule shape, EMA, sampler) for the same CPU time: its step count is
  the emoji32 training's loop time times its own measured step rate. Both are scored as above,
  and the table gives the ratio of their FIDs (the issue's target: ours at most half).
- ``--throughput``: images per second of a training step of `emoji64` (pixels, 64x64x3) and
  `emoji64-latent` (16x16x4 latents) at equal batch, and what encoding the data set once costs.

    python benchmarks/emoji.py --runs runs/e32-0 runs/e32-1 runs/e32-2 --write-results emoji32
    python benchmarks/emoji.py --runs runs/e32-0 --by-steps 20 25 40 --write-results emoji32-steps
    python benchmarks/emoji.py --diffusers-beside runs/e32-0 --out runs/peers --write-results emoji32-diffusers
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


def conditional(run: Path) -> bool:
    return float(json.loads((run / "config.json").read_text())["diffusion"].get("p_uncond", 0.0)) > 0


def score(run: Path, num: int, flags: tuple[str, ...] = ()) -> dict:
    """`denoiselab sample` timed as a whole command and `denoiselab evaluate` as a user runs it,
    both with ``flags`` (none: the run's own sampler and steps). An unconditional run's evaluation
    reads the timed command's samples: `evaluate RUN` would draw the same ones (same seed), so
    they are drawn once; a conditional one's draws its classes as the reference holds them."""
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "x.npy"
        t0 = time.perf_counter()
        subprocess.run([*DL, "sample", str(run), "--num", str(num), "--out", str(samples), *flags],
                       capture_output=True, check=True)
        seconds = time.perf_counter() - t0
        what = [str(run), "--num", str(num), *flags] if conditional(run) else [str(samples)]
        out = subprocess.run([*DL, "evaluate", *what, "--ref", "data:emoji", "--json"],
                             capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)["metrics"]
    acc = res.get("class accuracy", {})
    return {"fid": res["FID"]["value"], "floor": res["FID"]["floor"], "acc": acc.get("value"), "acc_mean": acc.get("balanced"),
            "acc_floor": acc.get("floor"), "per_class": acc.get("per_class"), "sample_s": seconds, "train_s": loop_seconds(run)}


def runs_table(runs: list[Path], num: int) -> str:
    rows = [score(r, num) for r in runs]
    for r, s in zip(runs, rows):
        print(f"{r}: {s}", flush=True)
    cfg = json.loads((runs[0] / "config.json").read_text())
    acc = [s["acc"] for s in rows if s["acc"] is not None]
    acc_mean = [s["acc_mean"] for s in rows if s.get("acc_mean") is not None]
    return markdown_table(
        ["preset", "trainings", "training loop (s)", f"domain FID, {num} samples", "FID floor",
         "asked category (%)", "asked category, mean over categories (%)", f"`sample --num {num}` (s)"],
        [[f"`{cfg['preset']}`" + (f", `data.balance={cfg['data']['balance']:g}`" if cfg["data"].get("balance") else ""),
          len(rows), mean_sd([s["train_s"] for s in rows], ".0f"),
          mean_sd([s["fid"] for s in rows]), mean_sd([s["floor"] for s in rows]),
          mean_sd([100 * a for a in acc], ".1f") if acc else "n/a",
          mean_sd([100 * a for a in acc_mean], ".1f") if acc_mean else "n/a", mean_sd([s["sample_s"] for s in rows], ".1f")]])


def steps_table(runs: list[Path], steps: list[int], num: int) -> str:
    """Domain FID and the timed `sample --num` of each run at each step count of its own sampler:
    what fewer steps buy in time and cost in quality."""
    rows = []
    for k in steps:
        scores = [score(r, num, ("--steps", str(k))) for r in runs]
        print(f"{k} steps: {scores}", flush=True)
        sampler = json.loads((runs[0] / "config.json").read_text())["sample"]["sampler"]
        rows.append([sampler, k, len(runs), mean_sd([s["fid"] for s in scores]), mean_sd([s["floor"] for s in scores]),
                     mean_sd([s["sample_s"] for s in scores], ".1f")])
    return markdown_table(["sampler", "steps", "trainings", f"domain FID, {num} samples", "FID floor",
                           f"`sample --num {num} --steps K` (s)"], rows)


def text_table(runs: list[Path], per_prompt: int, grid: Path | None, guidances: list[float | None]) -> str:
    from denoiselab import load
    from denoiselab.data import build_dataset
    from denoiselab.data.emoji import CATEGORIES, CATEGORY_PROMPTS, load_emoji
    from denoiselab.evaluation.images import domain_extractor
    from denoiselab.io import cache_folder
    from denoiselab.viz.images import save_grid
    from independent_emoji import IndependentEmojiReader

    data = build_dataset("emoji", {"image_size": 32})
    classify = domain_extractor(data, cache_folder()).classify
    second = IndependentEmojiReader()  # a reader that shares nothing with the project's
    print(f"independent reader: real base emoji it fit, mean over categories "
          f"{100 * statistics.mean(second.fit_per_category):.1f}%; held-out {100 * statistics.mean(second.per_category):.1f}%")
    _, _, entries = load_emoji(32, "train")
    # An object prompt per category: the name of its first base emoji in the training split.
    objects = {}
    for e in entries:
        objects.setdefault(e.category, e.name)
    prompts = [(CATEGORY_PROMPTS[i], i) for i in range(len(CATEGORIES))]  # entry.category is an index
    prompts += [(objects[i], i) for i in range(len(CATEGORIES)) if i in objects]
    rows = []
    for w in guidances:  # None: the run's own guidance, as a user gets it
        cat_acc, obj_acc, cat_ind, obj_ind = [], [], [], []
        for k, path in enumerate(runs):
            run = load(path)
            right = {"category": [], "object": []}
            also = {"category": [], "object": []}
            for n, (text, want) in enumerate(prompts):
                kind = "category" if n < len(CATEGORIES) else "object"
                x = run.sample(per_prompt, seed=n, prompt=text, guidance=w)
                right[kind].append(float((classify(x).argmax(1) == want).double().mean()))
                also[kind].append(float((second.read(x.numpy()) == want).mean()))
                print(f"{path} guidance {w} {text!r}: {right[kind][-1]:.2f} (independent {also[kind][-1]:.2f})",
                      flush=True)
            cat_acc.append(statistics.mean(right["category"]))
            obj_acc.append(statistics.mean(right["object"]))
            cat_ind.append(statistics.mean(also["category"]))
            obj_ind.append(statistics.mean(also["object"]))
            if grid is not None and k == 0 and w is None:
                show = [p for p, _ in prompts[:5]] + [p for p, _ in prompts[len(CATEGORIES):len(CATEGORIES) + 5]]
                grid_rows = [run.sample(8, seed=100 + i, prompt=p) for i, p in enumerate(show)]
                save_grid(torch.cat(grid_rows), grid, nrow=8)
                print(f"wrote {grid}: rows {show}")
        shown = "the run's own" if w is None else f"{w:g}"
        rows += [["`emoji-text`", len(runs), shown, "a category (\"a food emoji\"), 9", mean_sd([100 * a for a in cat_acc], ".1f"),
                  mean_sd([100 * a for a in cat_ind], ".1f")],
                 ["`emoji-text`", len(runs), shown, "an object (\"red apple\"), 9", mean_sd([100 * a for a in obj_acc], ".1f"),
                  mean_sd([100 * a for a in obj_ind], ".1f")]]
    return markdown_table(["preset", "trainings", "guidance", "prompts", f"in the named category (%), {per_prompt} each",
                           "the same, independent reader (%)"], rows)


def seconds_per_step(cfg, batch: int, shape: tuple[int, ...], steps: int) -> float:
    """Seconds per training step (forward, backward, AdamW) of ``cfg``'s network and objective on
    random data of ``shape``, after two warm-up steps."""
    from denoiselab.runs.build import build_net, build_objective

    net, obj = build_net(cfg), build_objective(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(batch, *shape) * 2 - 1
    g = torch.Generator().manual_seed(0)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = obj(net, x, None, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def step_rate(preset: str, batch: int, steps: int, sets: list[str]) -> float:
    """Images per second of the preset's training step on random data."""
    from denoiselab.config import apply_overrides
    from denoiselab.presets import get_preset

    cfg = apply_overrides(get_preset(preset), sets)
    opts = cfg.model.options
    shape = (int(opts["in_channels"]), int(opts["image_size"]), int(opts["image_size"]))
    return batch / seconds_per_step(cfg, batch, shape, steps)


# diffusers' UNet2DModel as its train_unconditional.py builds it, scaled to emoji32's 1.58M
# parameters (1.61M): three levels, one block each, attention at the 8x8 level as emoji32 has.
DIFFUSERS_UNET = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=[32, 64, 88],
                      layers_per_block=1, norm_num_groups=8,
                      down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                      up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"])


def peer_config(run: Path, steps: int):
    """The emoji32 training's config with diffusers' UNet2DModel as its network and ``steps`` steps."""
    import dataclasses

    from denoiselab.config import ModelConfig
    from denoiselab.runs.load import read_config

    cfg = read_config(run)
    train = dataclasses.replace(cfg.train, steps=steps, ckpt_every=0, preview_every=0)
    return dataclasses.replace(cfg, preset=f"{cfg.preset}-diffusers-unet2d", train=train,
                               model=ModelConfig(name="diffusers-unet2d", options=dict(DIFFUSERS_UNET)))


def peer_rate(cfg, probe: int = 6) -> float:
    """Seconds per training step of an emoji32-shaped config (32x32x3) at its batch size."""
    return seconds_per_step(cfg, cfg.train.batch_size, (3, 32, 32), probe)


def diffusers_table(runs: list[Path], out: Path, num: int) -> str:
    """Each emoji32 training beside diffusers' UNet2DModel trained for the same loop time."""
    from denoiselab.runs import fit_run
    from denoiselab.runs.build import build_net
    from denoiselab.runs.load import read_config

    ours, peers, steps, params = [], [], [], {}
    for k, run in enumerate(runs):
        ours.append(score(run, num))
        budget = ours[-1]["train_s"]
        dest = out / f"peer{k}"
        if (dest / "checkpoint.safetensors").is_file():  # trained already (e.g. beside ours, on the other core)
            cfg = read_config(dest)
            n, per_step = cfg.train.steps, float("nan")
        else:
            per_step = peer_rate(peer_config(run, 1))
            n = max(int(budget / per_step), 1)
            cfg = peer_config(run, n)
        params = {"ours": sum(p.numel() for p in build_net(read_config(run)).parameters()),
                  "peer": sum(p.numel() for p in build_net(cfg).parameters())}
        print(f"{run}: loop {budget:.0f} s; UNet2DModel {per_step:.2f} s/step -> {n} steps into {dest}", flush=True)
        if not (dest / "checkpoint.safetensors").is_file():
            fit_run(cfg, dest, progress=True, pictures=False)
        peers.append(score(dest, num))
        steps.append(n)
        print(f"{run}: {ours[-1]}\n{dest}: {peers[-1]}", flush=True)
    our_steps = json.loads((runs[0] / "config.json").read_text())["train"]["steps"]
    ratio = [o["fid"] / p["fid"] for o, p in zip(ours, peers)]
    head = ["network", "parameters", "steps", "training loop (s)", f"domain FID, {num} samples", "FID floor",
            "ours / diffusers", f"`sample --num {num}` (s)"]
    rows = [["`emoji32` (ours: UNet on 2x2 patches)", f"{params['ours'] / 1e6:.2f}M", our_steps,
             mean_sd([s["train_s"] for s in ours], ".0f"), mean_sd([s["fid"] for s in ours]),
             mean_sd([s["floor"] for s in ours]), mean_sd(ratio), mean_sd([s["sample_s"] for s in ours], ".1f")],
            ["diffusers `UNet2DModel`, same recipe and time", f"{params['peer'] / 1e6:.2f}M",
             mean_sd([float(n) for n in steps], ".0f"), mean_sd([s["train_s"] for s in peers], ".0f"),
             mean_sd([s["fid"] for s in peers]), mean_sd([s["floor"] for s in peers]), "1",
             mean_sd([s["sample_s"] for s in peers], ".1f")]]
    return markdown_table(head, rows)


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
    ap.add_argument("--by-steps", nargs="+", type=int, default=None, metavar="K",
                    help="--runs: score and time each run at these step counts of its own sampler")
    ap.add_argument("--diffusers-beside", nargs="+", type=Path, help="emoji32 trainings to set diffusers' "
                    "UNet2DModel beside, each for the same training time")
    ap.add_argument("--out", type=Path, default=Path("runs/emoji-peers"), help="--diffusers-beside: where the "
                    "UNet2DModel runs go (a finished one is scored again, not retrained)")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--num", type=int, default=1000, help="samples per score")
    ap.add_argument("--per-prompt", type=int, default=50)
    ap.add_argument("--guidance", nargs="+", type=float, default=None, help="--text: a row pair for each "
                    "guidance scale (default: the runs' own)")
    ap.add_argument("--grid", type=Path, default=None, help="--text: write the 10 x 8 prompt grid here")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    add_write_flag(ap, {t: "emoji" for t in ("emoji32", "emoji32-steps", "emoji32-diffusers", "emoji32-class", "emoji32-class-balanced",
                                             "emoji-latent", "emoji-text",
                                             "emoji-latent-throughput")})
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.throughput:
        table = throughput_table(args.batch, args.steps)
    elif args.diffusers_beside:
        table = diffusers_table(args.diffusers_beside, args.out, args.num)
    elif args.text:
        table = text_table(args.text, args.per_prompt, args.grid, args.guidance or [None])
    elif args.runs and args.by_steps:
        table = steps_table(args.runs, args.by_steps, args.num)
    elif args.runs:
        table = runs_table(args.runs, args.num)
    else:
        ap.error("give --runs, --diffusers-beside, --text or --throughput")
    print(table)
    if args.write_results:
        write_table("emoji", args.write_results, table)


if __name__ == "__main__":
    main()
