"""CLI for conditioning and guidance: the sampling flags (--class, --guidance, --classifier,
--classifier-scale) and ``denoiselab plot guidance RUN``, the grid over guidance scales x classes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DenoiselabError
from ..runs.sweeps import plot_guidance

GUIDANCE_HELP = ("classifier-free guidance scale w >= 0 in eps = eps_u + w (eps_c - eps_u): 1 = the conditional "
                 "model, 0 = unconditional, > 1 stronger adherence to the condition (default: the run's "
                 "sample.guidance)")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """Flags of every command that samples a run (sample, evaluate, animate)."""
    p.add_argument("--class", dest="cls", type=int, default=None, metavar="K",
                   help="class to sample (class-conditional runs, or with --classifier); default: every class in turn")
    p.add_argument("--guidance", type=float, default=None, metavar="W", help=GUIDANCE_HELP)
    p.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                   help="text-conditional runs: the prompt, e.g. \"a red seven\" (repeat for several: sample i "
                        "gets prompt i mod P)")
    p.add_argument("--negative-prompt", default=None, metavar="TEXT",
                   help="text-conditional runs: guidance steers away from this prompt instead of the empty one")
    p.add_argument("--classifier", default=None, metavar="CLF_RUN",
                   help="classifier guidance (Dhariwal & Nichol 2021) with a noise-aware classifier run "
                        "(e.g. of the mnist-classifier preset) trained on this run's schedule")
    p.add_argument("--classifier-scale", type=float, default=None, metavar="S",
                   help="classifier guidance: eps - s_t S grad log p(y | x_t) (default: the classifier run's "
                        "sample.guidance; 0 = off)")


def conditioning(run, args, num: int):
    """(denoiser, labels) for ``num`` samples of ``run`` as the flags ask (see ``runs.guided_run``)."""
    from ..runs import guided_run

    return guided_run(run, num, cls=getattr(args, "cls", None), guidance=getattr(args, "guidance", None),
                      classifier=getattr(args, "classifier", None),
                      classifier_scale=getattr(args, "classifier_scale", None), prompts=getattr(args, "prompt", None),
                      negative_prompt=getattr(args, "negative_prompt", None),
                      class_weights=getattr(args, "class_weights", None))


def add_plot_options(p: argparse.ArgumentParser) -> None:
    """Options of ``plot guidance`` (the plot parser is shared by every plot kind)."""
    from ..runs import START_MODES
    from ..samplers import SAMPLERS

    g = p.add_argument_group("plot guidance RUN")
    g.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0, 7.0], metavar="W",
                   help="guidance scales w >= 0, one row each (w = 1 conditional, 0 unconditional)")
    g.add_argument("--classes", type=int, nargs="+", default=None, metavar="K",
                   help="classes, one column block each (default: all)")
    g.add_argument("--prompts", nargs="+", default=None, metavar="TEXT",
                   help="text-conditional runs: prompts, one column block each (default: a few colour-digit prompts)")
    g.add_argument("--negative-prompt", default=None, metavar="TEXT",
                   help="text-conditional runs: guidance steers away from this prompt instead of the empty one")
    g.add_argument("--batch-size", type=int, default=4, help="samples per batch in each cell")
    g.add_argument("--num-batches", type=int, default=1, help="batches per cell (cell = batch size x batches samples)")
    g.add_argument("--sampler", default=None, metavar="NAME",
                   help=f"sampler: {', '.join(SAMPLERS)} (default: the run's own, config.sample)")
    g.add_argument("--steps", type=int, default=None,
                   help="solver steps (default: the run's own for its sampler, else the sampler's usual count)")
    g.add_argument("--seed", type=int, default=0, help="sample i of every cell uses the noise of (seed, i)")
    g.add_argument("--start", default="auto", choices=START_MODES,
                   help="where sampling starts, as for `denoiselab sample --start` (default auto)")






def cmd_plot_guidance(args, log) -> Path:
    from ..runs import load_run, require_sampler

    if not args.target:
        raise DenoiselabError("plot guidance needs a run directory: denoiselab plot guidance RUN_DIR")
    run = load_run(Path(args.target), device=getattr(args, "device", None))
    require_sampler(run)
    out = Path(args.out) if args.out else Path(args.target) / "guidance.png"
    return plot_guidance(run, out, scales=args.scales, classes=args.classes, batch_size=args.batch_size,
                         num_batches=args.num_batches, sampler=args.sampler, steps=args.steps, seed=args.seed, log=log,
                         prompts=args.prompts, negative_prompt=args.negative_prompt,
                         start=getattr(args, "start", "auto"))
