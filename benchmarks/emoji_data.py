"""The emoji data set (issue 34, the data part): how long the cache takes to build and to read back,
how many images each split and category holds, and the domain feature network that scores it
(held-out accuracy on emoji it never saw, the real-vs-real floor of domain FID at 1000 images).

Usage: python benchmarks/emoji_data.py [--sizes 32 64] [--cache-dir DIR] [--write-results]
(``--write-results``: the tables into docs/results/emoji.md, sections ``emoji-cache``,
``emoji-split``, ``emoji-domain`` and ``emoji-reader``, the share of each category's real emoji
the domain network reads as that category.)

The cache timings build into a fresh temporary folder, so the first load decodes every PNG; the
domain network is trained in (or read from) the cache folder ``denoiselab evaluate --ref
data:emoji`` uses, so the benchmark leaves it trained for later evaluations.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch

from denoiselab.data import build_dataset
from denoiselab.data import emoji as E
from denoiselab.evaluation.feature_metrics import evaluate_features
from denoiselab.evaluation.images import domain_extractor, evaluate_images, reference_features, reference_halves
from denoiselab.io import cache_folder, log
from results import add_write_flag, markdown_table, write_table


def cache_rows(sizes: list[int]) -> list[list]:
    """Per size: seconds to build the set into an empty cache, then to build it again from it."""
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            opts = {"cache": tmp, "image_size": size, "split": "all"}
            t0 = time.perf_counter()
            data = build_dataset("emoji", opts)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            build_dataset("emoji", opts)
            again = time.perf_counter() - t0
            mb = sum(p.stat().st_size for p in Path(tmp).rglob("*.npy")) / 2**20
        rows.append([f"{size}x{size}", len(data), f"{first:.2f}", f"{again:.3f}", f"{mb:.1f}"])
        log(f"{size}x{size}: first load {first:.2f} s, again {again:.3f} s, cache {mb:.1f} MiB")
    return rows


def split_rows() -> list[list]:
    """Images and base emoji per category on each side of the split."""
    entries = E.catalogue()
    held = E.heldout_mask(entries)
    count = collections.Counter((e.category, bool(h)) for e, h in zip(entries, held))
    bases = {(k, h): len({e.base for e, hh in zip(entries, held) if e.category == k and bool(hh) == h})
             for k in range(len(E.CATEGORIES)) for h in (False, True)}
    rows = [[name, count[k, False], bases[k, False], count[k, True], bases[k, True]]
            for k, name in enumerate(E.CATEGORIES)]
    total = [sum(r[i] for r in rows) for i in range(1, 5)]
    return rows + [["all", *total]]


def domain_rows(cache: Path, num: int) -> list[list]:
    """The emoji domain network (trained on the training split, measured on the held-out one) and
    the floors of domain FID, computed as ``denoiselab evaluate --ref data:emoji`` computes them."""
    ref = build_dataset("emoji")
    t0 = time.perf_counter()
    ex = domain_extractor(ref, cache, log=log)
    seconds = ex.info.get("seconds", time.perf_counter() - t0)
    fr = reference_features(ex, ref, cache, log)
    half_a, half_b = reference_halves(len(fr))
    n = min(num, len(half_a))
    floor = evaluate_features(fr[half_a[:n]], fr[half_b], bootstrap=0)["metrics"]
    # The held-out emoji scored as if they were samples: a generator that drew new emoji as well as
    # the artists did would score about this.
    unseen = evaluate_images(ref.heldout.x, ref, "emoji", ex, cache_dir=cache, bootstrap=0)["metrics"]
    acc = ex.info["heldout_accuracy"]
    majority = float((ref.heldout.y == torch.mode(ref.y).values).double().mean())
    return [["training images (the training split)", ex.info["num_train"]],
            ["held-out images (base emoji never trained on)", ex.info["num_heldout"]],
            ["classifier: held-out accuracy (9 categories)", f"{100 * acc:.1f}%"],
            ["classifier: held-out share of the largest category (People & Body)", f"{100 * majority:.1f}%"],
            ["classifier: training accuracy", f"{100 * ex.info['train_accuracy']:.1f}%"],
            ["classifier: training time, one thread (s)", f"{seconds:.0f}"],
            [f"domain FID floor, real vs real, {n} images", f"{floor['FID']['value']:.3f}"],
            [f"domain KID floor, real vs real, {n} images", f"{floor['KID']['value']:.4f}"],
            [f"domain FID of the {len(ref.heldout)} held-out emoji (floor {unseen['FID']['floor']:.3f})",
             f"{unseen['FID']['value']:.3f}"]]


def reader_rows(cache: Path) -> list[list]:
    """Per category, the share of real emoji the domain network reads as their own category: on
    the training split (what a generator that redrew the training emoji would score on the
    asked-category targets) and on the held-out one (emoji of bases it never saw)."""
    ref = build_dataset("emoji")
    ex = domain_extractor(ref, cache, log=log)
    rows, sides = [], []
    for data in (ref, ref.heldout):
        with torch.no_grad():
            read = torch.cat([ex.classify(data.x[i:i + 500]).argmax(1) for i in range(0, len(data.x), 500)])
        sides.append((data.y, read == data.y))
    for k, name in enumerate(E.CATEGORIES):
        row = [name]
        for y, right in sides:
            row += [int((y == k).sum()), f"{100 * float(right[y == k].double().mean()):.1f}"]
        rows.append(row)
    mean = [f"{sum(float(r[i]) for r in rows) / len(rows):.1f}" for i in (2, 4)]
    overall = [f"{100 * float(right.double().mean()):.1f}" for _, right in sides]
    rows.append(["mean over categories", "", mean[0], "", mean[1]])
    rows.append(["all images", len(sides[0][0]), overall[0], len(sides[1][0]), overall[1]])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="image sizes to time the cache at")
    ap.add_argument("--num", type=int, default=1000, help="images on the real side of the floor")
    ap.add_argument("--cache-dir", default=None, help="where the domain network is cached (default: the cache folder)")
    ap.add_argument("--skip-domain", action="store_true", help="only the cache timings and the split")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tables = {"emoji-cache": markdown_table(["size", "images", "first load (s)", "load again (s)", "cache (MiB)"],
                                            cache_rows(args.sizes)),
              "emoji-split": markdown_table(["category", "train images", "train bases", "held-out images",
                                             "held-out bases"], split_rows())}
    if not args.skip_domain:
        cache = Path(args.cache_dir) if args.cache_dir else cache_folder()
        tables["emoji-domain"] = markdown_table(["what", "measured"], domain_rows(cache, args.num))
        tables["emoji-reader"] = markdown_table(["category", "training images", "read as it (%)", "held-out images",
                                                 "read as it, held out (%)"], reader_rows(cache))
    for name, table in tables.items():
        print(f"\n{name}\n{table}")
        if args.write_results:
            write_table("emoji", name, table)


if __name__ == "__main__":
    main()
