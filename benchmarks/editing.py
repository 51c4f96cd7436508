"""Editing targets on MNIST (CS180 project 5 part A on denoiselab's own runs): RePaint inpainting,
the SDEdit strength sweep, visual anagrams, DDIM inversion, and the wall time of every edit.

The judge is the evaluation feature network's classifier (``evaluation/featurenet.py``, trained
on MNIST-5k and cached); the "test digits" are exactly its held-out digits
(``featurenet.split_indices`` with its config's fraction and seed), in that order, so the
classifier never saw them. Prints one table per part.

    .venv/bin/python benchmarks/editing.py \\
        --class-run runs/mnist-class --run runs/mnist --parts inpaint sdedit anagram inversion timing

Parts (each can be run alone with --parts):
  inpaint    right half of --num test digits masked; class kept (classifier on the result = the
             digit's label) and the known pixels' max abs difference after an .npy round trip
  sdedit     --num test digits at each strength: class agreement with the input's label, and
             RMSE and mean abs distance to the input (as strength rises, agreement falls and distance grows)
  anagram    --anagram-num samples per pair on the class run: both readings right (classifier on
             the image = class A and on its view = class B)
  inversion  DDIM inversion then reconstruction, --steps steps, --num test digits: mean abs error
  timing     every `denoiselab edit` command on 16 test digits, --steps steps, wall seconds of the
             whole command (start-up and writing included)

``--write-results`` writes the parts' tables into docs/results/editing.md: inpaint, sdedit and
inversion to ``editing``, anagram to ``anagrams``, timing to ``editing-time`` (a section only
when all of its parts ran):

    .venv/bin/python benchmarks/editing.py --class-run runs/mnist-class --run runs/mnist --write-results
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from denoiselab import editing as E
from denoiselab.cli.edit import ANAGRAM_GUIDANCE
from denoiselab.data.images import load_mnist5k
from denoiselab.evaluation.featurenet import FeatureNetConfig, load_or_train_feature_net, split_indices
from denoiselab.guidance import guided
from denoiselab.io import cache_folder
from denoiselab.runs import load_run
from results import add_write_flag, markdown_table, write_table

PARTS = ("inpaint", "sdedit", "anagram", "inversion", "timing")
# The sections of docs/results/editing.md and the parts each one holds.
SECTIONS = {"editing": ("inpaint", "sdedit", "inversion"), "anagrams": ("anagram",), "editing-time": ("timing",)}
ANAGRAM_PAIRS = ("6:9:rot180", "2:5:flip", "4:7:rot180")  # the README's three pairs


def test_digits(num: int):
    """The feature network's held-out digits, in its split order (``featurenet.split_indices``)."""
    x, y = load_mnist5k()
    cfg = FeatureNetConfig()
    _, held = split_indices(len(x), cfg.heldout, cfg.seed)
    held = held[:num]
    return x[held], y[held]


def judge():
    """The evaluation feature network's classifier (trained once on MNIST-5k and cached)."""
    x, y = load_mnist5k()
    return load_or_train_feature_net(x, y, 10, cache_folder(), FeatureNetConfig(),
                                     log=lambda m: print(m, file=sys.stderr))


@torch.no_grad()
def classify(net, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(x[i:i + 500].float()).argmax(1) for i in range(0, len(x), 500)])


def chunks(n: int, size: int):
    for s in range(0, n, size):
        yield s, min(size, n - s)


def table(title: str, header: list[str], rows: list[list]) -> str:
    """Print the part's table under its title; return both (for the results page)."""
    text = markdown_table(header, [[f"{v:.4g}" if isinstance(v, float) else v for v in r] for r in rows])
    print(f"\n## {title}\n")
    print(text, flush=True)
    return f"{title}\n\n{text}"


def part_inpaint(run, x, y, net, args) -> str:
    m = torch.ones(1, 1, 28, 28)
    m[..., 14:] = 0
    outs = []
    t0 = time.perf_counter()
    for s, n in chunks(len(x), args.batch):
        outs.append(E.inpaint(run.denoiser, x[s:s + n], m, sampler=args.sampler, steps=args.steps,
                              jump_length=args.jump_length, jump_count=args.jump_count, seed=0, offset=s).x)
    out = torch.cat(outs)
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "o.npy", out.numpy().astype(np.float32))
        back = np.load(Path(d) / "o.npy")
    known = float(np.abs(back[..., :14] - x.numpy()[..., :14]).max())
    kept = float((classify(net, out) == y).float().mean())
    return table(f"Inpainting (RePaint, right half masked; {run.run_dir.name}, {args.sampler} {args.steps} steps, "
          f"jump length {args.jump_length}, jump count {args.jump_count})",
          ["digits", "class kept", "max abs diff of known pixels (.npy)", "classifier on the inputs", "seconds"],
          [[len(x), kept, known, float((classify(net, x) == y).float().mean()), time.perf_counter() - t0]])


def part_sdedit(run, x, y, net, args) -> str:
    strengths = args.strengths
    res = {s: [] for s in strengths}
    t0 = time.perf_counter()
    for s0, n in chunks(len(x), args.batch):
        r = E.sdedit(run.denoiser, x[s0:s0 + n], strengths, sampler=args.sampler, steps=args.steps, seed=0, offset=s0)
        for k, s in enumerate(strengths):
            res[s].append(r.x[k * n:(k + 1) * n])
    rows = []
    for s in strengths:
        out = torch.cat(res[s])
        rows.append([s, float((classify(net, out) == y).float().mean()), float((out - x).pow(2).mean().sqrt()),
                     float((out - x).abs().mean())])
    return table(f"SDEdit strength sweep ({run.run_dir.name}, {len(x)} test digits, {args.sampler} {args.steps}-step grid; "
          f"{time.perf_counter() - t0:.0f} s)", ["strength", "class agreement", "RMSE to input", "mean abs diff"], rows)


def part_anagram(class_run, net, args) -> str:
    rows = []
    den = guided(class_run.denoiser, scale=args.guidance)
    for pair in args.pairs:
        a, b, view = pair.split(":")
        t0 = time.perf_counter()
        outs = [E.anagram(den, n, (1, 28, 28), int(a), int(b), view, sampler=args.sampler, steps=args.steps,
                          seed=0, offset=s).x for s, n in chunks(args.anagram_num, args.batch)]
        x = torch.cat(outs)
        ra = classify(net, x) == int(a)
        rb = classify(net, E.get_view(view).apply(x)) == int(b)
        rows.append([f"{a} upright / {b} {view}", float(ra.float().mean()), float(rb.float().mean()),
                     float((ra & rb).float().mean()), time.perf_counter() - t0])
        if args.save:
            from denoiselab.viz.images import save_grid

            save_grid(torch.cat([x[:16], E.get_view(view).apply(x[:16])]), Path(args.save) / f"anagram_{a}_{b}_{view}.png",
                      nrow=16)
    return table(f"Visual anagrams ({class_run.run_dir.name}, CFG {args.guidance:g} per view, {args.sampler} {args.steps} steps, "
          f"{args.anagram_num} samples per pair)", ["pair", "reading A right", "reading B right", "both right", "seconds"],
          rows)


def part_inversion(run, x, args) -> str:
    rows = []
    for iters in args.fixed_point_iters:
        t0 = time.perf_counter()
        rec = []
        for s, n in chunks(len(x), args.batch):
            z = E.invert(run.denoiser, x[s:s + n], steps=args.steps, fixed_point_iters=iters).x
            rec.append(E.reconstruct(run.denoiser, z, steps=args.steps).x)
        rec = torch.cat(rec)
        rows.append([iters, float((rec - x).abs().mean()), float((rec - x).abs().max()), time.perf_counter() - t0])
    return table(f"DDIM inversion then reconstruction ({run.run_dir.name}, {args.steps} steps, {len(x)} test digits, "
          "images in [-1, 1])", ["fixed-point iterations", "mean abs error", "max abs error", "seconds"], rows)


def part_timing(class_run, run, x, args) -> str:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        np.save(d / "x.npy", x[:16].numpy())
        np.save(d / "a.npy", x[:2].numpy())
        np.save(d / "b.npy", x[2:4].numpy())
        c, u = str(class_run.run_dir), str((run or class_run).run_dir)
        st = ["--steps", str(args.steps)]
        cmds = [
            ("denoise", ["denoise", u, "--input", str(d / "x.npy")]),
            ("sdedit (strength 0.6)", ["sdedit", u, "--input", str(d / "x.npy"), "--strength", "0.6"]),
            ("sdedit (class, CFG, strength 1)", ["sdedit", c, "--input", str(d / "x.npy"), "--strength", "1", "--class", "3"]),
            ("inpaint", ["inpaint", u, "--input", str(d / "x.npy"), "--mask-box", "14,0,28,28"]),
            ("anagram (CFG)", ["anagram", c, "--class", "6", "--view-class", "9", "--view", "rot180", "--num", "16"]),
            ("hybrid (CFG)", ["hybrid", c, "--low-class", "1", "--high-class", "7", "--num", "16"]),
            ("invert", ["invert", u, "--input", str(d / "x.npy"), "--out", str(d / "z.npy")]),
            ("reconstruct", ["reconstruct", u, "--noise", str(d / "z.npy")]),
            ("interpolate (2 pairs x 8 frames)", ["interpolate", u, "--input", str(d / "a.npy"), "--input", str(d / "b.npy"),
                                                  "--frames", "8"]),
        ]
        rows = []
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
        for name, cmd in cmds:
            out = [] if "--out" in cmd else ["--out", str(d / "o.npy")]
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "denoiselab.cli", "edit", *cmd, *st, *out], env=env,
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode:
                raise SystemExit(f"{name} failed: {p.stderr.strip().splitlines()[-1]}")
            rows.append([name, wall, "yes" if wall <= 30 else "NO"])
    return table(f"Wall time of each `denoiselab edit` command, 16 images, {args.steps} steps, whole command "
          f"(torch threads {torch.get_num_threads()}, load average at start {os.getloadavg()[0]:.1f})",
          ["edit", "seconds", "<= 30 s"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class-run", default="runs/mnist-class", help="class-conditional run (anagrams)")
    ap.add_argument("--run", default="runs/mnist", help="unconditional run (inpainting, SDEdit, inversion); "
                    "the class run's null class if it does not exist")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--num", type=int, default=200, help="test digits")
    ap.add_argument("--anagram-num", type=int, default=100)
    ap.add_argument("--pairs", nargs="+", default=list(ANAGRAM_PAIRS), metavar="A:B:VIEW")
    ap.add_argument("--guidance", type=float, default=ANAGRAM_GUIDANCE,
                    help="CFG scale of each anagram view (default: `edit anagram`'s)")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--strengths", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    ap.add_argument("--jump-length", type=int, default=10)
    ap.add_argument("--jump-count", type=int, default=E.REPAINT_JUMP_COUNT)
    ap.add_argument("--fixed-point-iters", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--batch", type=int, default=100, help="images per call (memory only; results do not depend on it)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--save", default=None, help="folder for anagram grids")
    add_write_flag(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    class_run = load_run(Path(args.class_run))
    run = load_run(Path(args.run)) if (Path(args.run) / "checkpoint.safetensors").is_file() else None
    if run is None:
        print(f"note: {args.run} has no checkpoint; the unconditional parts use {args.class_run} without a label",
              file=sys.stderr)
    base = run or class_run
    x, y = test_digits(args.num)
    net = None
    if set(args.parts) - {"timing", "inversion"}:
        net, info = judge()
        print(f"classifier: the feature network (held-out accuracy {info['heldout_accuracy']:.4f} on "
              f"{info['num_heldout']} digits); test digits: the first {len(x)} of them")
    t_all = time.perf_counter()
    jobs = {"inpaint": lambda: part_inpaint(base, x, y, net, args), "sdedit": lambda: part_sdedit(base, x, y, net, args),
            "anagram": lambda: part_anagram(class_run, net, args), "inversion": lambda: part_inversion(base, x, args),
            "timing": lambda: part_timing(class_run, run, x, args)}
    texts = {part: jobs[part]() for part in dict.fromkeys(args.parts)}  # in the order asked, each once
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    for name, parts in SECTIONS.items() if args.write_results else ():
        if all(p in texts for p in parts):
            write_table("editing", name, "\n\n".join(texts[p] for p in parts))
        else:
            print(f"not written: the section {name!r} needs the parts {', '.join(parts)}", file=sys.stderr)


if __name__ == "__main__":
    main()
