"""The emoji-ae autoencoder (issue 34, the autoencoder part): held-out PSNR, SSIM and
reconstruction FID of a KL-f4 autoencoder (32x32x3 -> 8x8x4) trained at its preset settings.

Usage: python benchmarks/autoencoder.py [--run RUN_DIR] [--preset emoji-ae] [--set KEY=VALUE ...]
       [--threads 1] [--write-results]
(``--write-results``: the table into docs/results/autoencoder.md, section ``autoencoder-emoji``.)

Without ``--run`` it trains the preset into a temporary folder first (``denoiselab train
--preset emoji-ae --set train.threads=1``), timing the training; with ``--run`` it scores a run
trained already (its training time read from its metrics). Scoring is ``denoiselab evaluate RUN
--ref data:emoji``: every held-out emoji (split by base emoji, never trained on) reconstructed
through the posterior mean; reconstruction FID in the emoji domain network's features, whose
cache ``evaluate`` shares.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from denoiselab.cli import main as cli
from denoiselab.data import build_dataset
from denoiselab.evaluation.images import domain_extractor
from denoiselab.evaluation.reconstruction import evaluate_reconstruction, format_reconstruction
from denoiselab.io import cache_folder, log
from denoiselab.runs import load_run
from results import add_write_flag, markdown_table, write_table

TARGET_PSNR = 28.0  # issue 34; the KL-f4 of Rombach et al. 2022 reached 27.5 dB on photographs (Table 8)


def train(preset: str, sets: list[str], threads: int, out: Path) -> float:
    t0 = time.perf_counter()
    argv = ["train", "--preset", preset, "--out", str(out), "--quiet", "--set", f"train.threads={threads}"]
    for s in sets:
        argv += ["--set", s]
    if cli(argv) != 0:
        raise SystemExit(f"training {preset} failed")
    return time.perf_counter() - t0


def train_seconds(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = [r["time"] for r in rows if isinstance(r, dict) and "time" in r and "loss" in r]
    return float(times[-1]) if times else float("nan")


def score(run: Path, cache: Path) -> dict:
    loaded = load_run(run)
    size = loaded.sample_shape[-1]
    ref = build_dataset("emoji", {"image_size": size})
    extractor = domain_extractor(ref, cache, log=log)
    return evaluate_reconstruction(loaded.net, ref.heldout.x, "emoji", extractor), loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=None, help="score this autoencoder run instead of training one")
    ap.add_argument("--preset", default="emoji-ae")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset setting")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training and scoring")
    ap.add_argument("--cache-dir", default=None, help="where the domain network is cached (default: the cache folder)")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache_dir) if args.cache_dir else cache_folder()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run = Path(args.run)
            seconds = train_seconds(run)
        else:
            run = Path(tmp) / "run"
            seconds = train(args.preset, args.set, args.threads, run)
        res, loaded = score(run, cache)
    print(format_reconstruction(res))
    cfg, m = loaded.config, res["metrics"]
    n_params = sum(p.numel() for p in loaded.net.parameters())
    z = loaded.net.latent_shape(loaded.sample_shape)
    psnr = m["PSNR"]
    rows = [[cfg.preset, f"{n_params / 1e6:.2f}M", f"{'x'.join(map(str, loaded.sample_shape[::-1][:2]))}x"
             f"{loaded.sample_shape[0]} -> {z[1]}x{z[2]}x{z[0]}", cfg.train.steps, cfg.train.batch_size,
             f"{seconds / 60:.1f}", f"{psnr['value']:.2f} +- {psnr['se']:.2f}",
             f"{m['SSIM']['value']:.4f} +- {m['SSIM']['se']:.4f}", f"{m['reconstruction FID']['value']:.3f}",
             f"{float(loaded.net.latent_scale):.4g}", "met" if psnr["value"] >= TARGET_PSNR else "not met"]]
    table = markdown_table(["preset", "parameters", "image -> latent", "steps", "batch", "training (min)",
                            f"held-out PSNR (dB), {res['num']} images", "SSIM", "reconstruction FID",
                            "latent scale", f"PSNR >= {TARGET_PSNR:g} dB"], rows)
    print(table)
    if args.write_results:
        write_table("autoencoder", "autoencoder-emoji", table)


if __name__ == "__main__":
    main()
