"""Fingerprints of short trainings and their samples: the same seeds must give the same bits
before and after a change that should not alter behaviour (a refactor).

    python benchmarks/identity.py --out /tmp/ident > before.txt   # on the old commit
    python benchmarks/identity.py --out /tmp/ident2 > after.txt   # on the new one; diff the two
    python benchmarks/identity.py --out /tmp/ident --write-results  # docs/results/reliability.md

Each preset trains a few steps on one thread (float sums depend on the thread count), then
samples 16 points or images with its stored sampler; the SHA-256 of every checkpoint tensor
(weights, EMA, optimizer state, RNG states) and of the samples is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from results import add_write_flag, markdown_table, write_table

RUNS = {
    "swiss-roll": ["--set", "steps=40", "--set", "batch_size=64"],
    "kaist": ["--set", "steps=40"],
    "mnist": ["--set", "steps=6", "--set", "batch_size=16"],
    "mnist-class": ["--set", "steps=6", "--set", "batch_size=16"],
}


def cli(*args: str) -> None:
    cmd = [sys.executable, "-c", "import sys; from denoiselab.cli import main; sys.exit(main())", *args]
    subprocess.run(cmd, check=True, capture_output=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--presets", nargs="+", default=list(RUNS))
    add_write_flag(ap)
    args = ap.parse_args()
    rows = []
    for preset in args.presets:
        run = args.out / preset
        cli("train", "--preset", preset, "--out", str(run), "--quiet", "--no-pictures", "--set", "train.threads=1",
            *RUNS[preset])
        tensors = load_file(str(run / "checkpoint.safetensors"))
        cli("sample", str(run), "--num", "16", "--seed", "3", "--out", str(run / "s.npy"))
        rows.append([preset, digest(tensors), digest({"x": np.load(run / "s.npy")})])
        print(f"{preset:12s} checkpoint {rows[-1][1]} samples {rows[-1][2]}")
    if args.write_results:
        # The fingerprints of this commit on this machine: a later commit that should not change
        # behaviour rewrites the same digests (float sums differ between CPUs, so compare on one).
        write_table("reliability", "fingerprints", markdown_table(["preset", "checkpoint SHA-256", "samples SHA-256"],
                                                                  [[f"`{c}`" for c in r] for r in rows]))


if __name__ == "__main__":
    main()
