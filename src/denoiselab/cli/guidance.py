"""CLI for conditioning and guidance: the sampling flags (--class, --guidance, --classifier,
--classifier-scale) and ``denoiselab plot guidance RUN``, the grid over guidance scales x classes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..errors import DenoiselabError

GUIDANCE_HELP = ("classifier-free guidance scale w in eps = eps_u + w (eps_c - eps_u): 1 = the conditional model, "
                 "0 = unconditional, > 1 stronger adherence to the condition (default: the run's sample.guidance)")


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
    """(denoiser, labels) for ``num`` samples of ``run`` as the flags ask (see ``conditioning.guided_run``)."""
    from ..runs import guided_run

    return guided_run(run, num, cls=getattr(args, "cls", None), guidance=getattr(args, "guidance", None),
                      classifier=getattr(args, "classifier", None),
                      classifier_scale=getattr(args, "classifier_scale", None), prompts=getattr(args, "prompt", None),
                      negative_prompt=getattr(args, "negative_prompt", None))


def add_plot_options(p: argparse.ArgumentParser) -> None:
    """Options of ``plot guidance`` (the plot parser is shared by every plot kind)."""
    from ..runs import START_MODES

    g = p.add_argument_group("plot guidance RUN")
    g.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0, 7.0], metavar="W",
                   help="guidance scales, one row each (w = 1 conditional, 0 unconditional)")
    g.add_argument("--classes", type=int, nargs="+", default=None, metavar="K",
                   help="classes, one column block each (default: all)")
    g.add_argument("--prompts", nargs="+", default=None, metavar="TEXT",
                   help="text-conditional runs: prompts, one column block each (default: a few colour-digit prompts)")
    g.add_argument("--negative-prompt", default=None, metavar="TEXT",
                   help="text-conditional runs: guidance steers away from this prompt instead of the empty one")
    g.add_argument("--batch-size", type=int, default=4, help="samples per batch in each cell")
    g.add_argument("--num-batches", type=int, default=1, help="batches per cell (cell = batch size x batches samples)")
    g.add_argument("--sampler", default=None, help="sampler (default: the run's own, config.sample)")
    g.add_argument("--steps", type=int, default=None,
                   help="solver steps (default: the run's own for its sampler, else the sampler's usual count)")
    g.add_argument("--seed", type=int, default=0, help="sample i of every cell uses the noise of (seed, i)")
    g.add_argument("--start", default="auto", choices=START_MODES,
                   help="where sampling starts, as for `denoiselab sample --start` (default auto)")


def plot_guidance(run, out: Path, *, scales, classes=None, batch_size: int = 4, num_batches: int = 1,
                  sampler: Optional[str] = None, steps: Optional[int] = None, seed: int = 0, log=None, prompts=None,
                  negative_prompt=None, start: str = "auto") -> Path:
    """Rows: guidance scales; columns: classes (or prompts, for a text run), each a block of
    batch_size x num_batches samples. Every cell uses the same noise (sample i from (seed, i)), so
    along a column one sees the same starting noise pulled harder towards its class as w grows."""
    from ..runs import class_labels, guided_run, is_text, num_classes, sampling_plan
    from ..samplers.api import generate
    from ..viz.images import make_grid, save_png

    k = num_classes(run)
    text = is_text(run)
    if prompts is not None and not text:
        raise DenoiselabError(f"{run.run_dir} is not a text-conditional model: drop --prompts"
                              + (" and choose --classes" if k else ""))
    if not k and not text:
        raise DenoiselabError(f"{run.run_dir} is an unconditional model: plot guidance needs a class- or "
                              "text-conditional run")
    if batch_size < 1 or num_batches < 1:
        raise DenoiselabError("--batch-size and --num-batches must be at least 1")
    if not scales:
        raise DenoiselabError("no guidance scales: give --scales W [W ...]")
    if text:
        if classes:
            raise DenoiselabError(f"{run.run_dir} is a text-conditional model: choose columns with --prompts, not --classes")
        from ..data.captioned import DEMO_PROMPTS

        names = list(DEMO_PROMPTS) if prompts is None else list(prompts)
        columns = [dict(prompts=[p], negative_prompt=negative_prompt) for p in names]
    else:
        classes = list(range(k)) if not classes else [int(c) for c in classes]
        for c in classes:
            class_labels(1, k, c, f"{run.run_dir}")  # range check, one clear line
        class_names = list(run.info.get("class_names") or [])
        names = [str(class_names[c]) if c < len(class_names) else str(c) for c in classes]
        columns = [dict(cls=c) for c in classes]
    per = batch_size * num_batches
    plan = sampling_plan(run, sampler=sampler, steps=steps, start=start)  # the run's own unless told otherwise
    rows = []
    for w in scales:
        cells = []
        for column in columns:
            den, labels = guided_run(run, per, guidance=w, **column)
            x, _ = generate(den, per, run.sample_shape, seed=seed, cond=labels, batch_size=batch_size, progress=True,
                            **plan.kwargs())
            cells.append(x)
        rows.append(cells)
        if log:
            log(f"guidance {w:g}: {len(columns)} {'prompts' if text else 'classes'} x {per} samples")
    # One image per cell (a near-square tile of its samples), laid out scales x classes.
    import numpy as np

    from ..viz.images import _auto_scale, _label

    scale = _auto_scale(run.sample_shape[-1])
    side = max(1, int(np.ceil(np.sqrt(per))))
    tiles = [[make_grid(x, side, scale=scale) for x in cells] for cells in rows]
    h, wd = tiles[0][0].shape[:2]
    gap = 6
    canvas = np.full((len(rows) * (h + 16 + gap), len(columns) * (wd + gap) + 70, 3), 255, np.uint8)
    for i, (w, row) in enumerate(zip(scales, tiles)):
        for j, (name, tile) in enumerate(zip(names, row)):
            cap = _label(tile, name)
            y0, x0 = i * (h + 16 + gap), 70 + j * (wd + gap)
            canvas[y0:y0 + cap.shape[0], x0:x0 + cap.shape[1]] = cap
        strip = _label(np.full((h, 64, 3), 255, np.uint8), f"w = {w:g}")
        canvas[i * (h + 16 + gap):i * (h + 16 + gap) + strip.shape[0], :64] = strip
    return save_png(canvas, out)


def training_sweep(out: Path, data, device=None) -> Optional[Path]:
    """Class-conditional image runs get their guidance sweep (``guidance.png``, one sample per class
    and scale, the run's own sampler) after training, so the run's page shows what the scale trades."""
    from ..runs import is_text, load_run, num_classes

    if data.kind != "images":
        return None
    run = load_run(Path(out), device=device)
    if run.denoiser is None or is_text(run) or not num_classes(run):
        return None
    return plot_guidance(run, Path(out) / "guidance.png", scales=[0.0, 1.0, 2.0, 3.0, 5.0, 7.0], batch_size=1)


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
