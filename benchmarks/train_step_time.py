"""Seconds per training step of a preset through the real trainer (runs.make_trainer), on
the CPU: the check that a change to the training loop leaves the CPU path no slower.

Times the steps after the first logged ones (start-up and warm-up left out), from the run's
metrics.jsonl. Point PYTHONPATH at two checkouts to compare them, rounds interleaved:

    for r in 1 2 3; do for src in /work/main/src src; do \
        PYTHONPATH=$src python benchmarks/train_step_time.py --preset mnist --steps 150; done; done

``--write-results`` writes the row into docs/results/throughput.md, section ``train-step-time``:

    python benchmarks/train_step_time.py --preset mnist --steps 150 --write-results
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

import denoiselab
from denoiselab import runs
from denoiselab.config import apply_overrides
from denoiselab.presets import get_preset
from results import add_write_flag, markdown_row, markdown_table, write_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mnist")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--skip", type=int, default=50, help="steps left out at the start")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="preset overrides, as for `denoiselab train` (e.g. train.autocast=bf16)")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = apply_overrides(get_preset(args.preset), [*args.set, f"steps={args.steps}", f"log_every={args.skip}",
                                                         "preview_every=0"])
    data = runs.build_data(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        out.mkdir()
        (out / runs.CONFIG).write_text(cfg.to_json())
        runs.make_trainer(cfg, out, data, progress=False).fit()
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    (s0, t0), (s1, t1) = (lines[0]["step"], lines[0]["time"]), (lines[-1]["step"], lines[-1]["time"])
    per = (t1 - t0) / (s1 - s0)
    row = [f"{args.preset} {' '.join(args.set)}", f"steps {s0}-{s1}", f"{per * 1000:.1f} ms/step",
           f"{cfg.train.batch_size / per:.0f} img/s", f"loss {lines[-1]['loss']:.4f}"]
    print(markdown_row([Path(denoiselab.__file__).parents[1], *row]), flush=True)
    if args.write_results:
        write_table("throughput", "train-step-time",
                    markdown_table(["preset", "steps timed", "per step", "images/s", "last loss"], [row]))


if __name__ == "__main__":
    main()
