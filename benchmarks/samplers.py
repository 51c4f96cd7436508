"""Sample quality against NFE for every sampler and time grid (issue 5 targets).

Takes trained run directories (train them first, e.g.
``denoiselab train --preset swiss-roll --out runs/swiss`` and ``--preset swiss-roll-flow``),
scores every sampler on every grid at each NFE budget over three sampling seeds, prints the
table and the best sampler per budget, and writes samplers.md and samplers.png into
RUN_DIR/samplers. 2D runs: chamfer distance of 2048 samples against 2048 fresh points
(seed 10_000 + s); image runs: FID in the domain feature space (evaluation.images).

    python benchmarks/samplers.py runs/swiss runs/swiss-flow
    python benchmarks/samplers.py runs/swiss --nfe 10 20 --grids logsnr logsnr:0.08:10
"""

from __future__ import annotations

import argparse
import sys

import torch

from denoiselab.cli import main as cli_main
from denoiselab.sampler_benchmark import DEFAULT_GRIDS, DEFAULT_NFES, DEFAULT_SAMPLERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS))
    ap.add_argument("--grids", nargs="+", default=list(DEFAULT_GRIDS))
    ap.add_argument("--nfe", nargs="+", default=[str(n) for n in DEFAULT_NFES])
    ap.add_argument("--threads", default="1", help="torch threads (1: many small evaluations)")
    args = ap.parse_args()
    for run in args.runs:
        print(f"\n## {run}\n", flush=True)
        code = cli_main(["benchmark-samplers", run, "--samplers", *args.samplers, "--grids", *args.grids,
                         "--nfe", *args.nfe, "--threads", args.threads])
        if code:
            sys.exit(code)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)


if __name__ == "__main__":
    main()
