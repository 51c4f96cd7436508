"""What every `denoiselab edit ...` command shares: the image run it edits, its inputs, its
conditions and guidance (as `sample` sets them), and the three files it writes (OUT, OUT_grid.png
and OUT.gif; see ``edit.py``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DenoiselabError
from ..io import log

GRID_ROWS = 16  # images shown in the overview grid


# -- the run, its inputs and its conditions ---------------------------------------------------

def load_image_run(args):
    from ..runs import load_run, require_sampler

    run = load_run(Path(args.run_dir), device=args.device)
    require_sampler(run)
    if run.kind != "images":
        raise DenoiselabError(f"{args.run_dir} is a {run.kind} model: the edits work on image models")
    return run


def run_value_range(run) -> tuple[float, float]:
    return (0.0, 1.0) if str(run.config.data.options.get("range", "-1,1")).replace(" ", "") == "0,1" else (-1.0, 1.0)


def read_inputs(run, paths, negate: bool = False) -> torch.Tensor:
    """The input images in the space the run samples in (a latent run's encoded latents)."""
    from ..image_io import read_images

    return run.encode(read_images(paths, run.image_shape, run_value_range(run), negate=negate))


def read_keep_mask(run, args, num: int) -> torch.Tensor:
    """inpaint's keep-mask (--mask or --mask-box) on the run's sampling grid: a latent run's is
    taken down to its latent cells (``runs.latent.latent_mask``)."""
    from ..image_io import mask_box, picture_size, read_mask

    if (args.mask is None) == (args.mask_box is None):
        raise DenoiselabError("inpaint needs a mask: --mask FILE (PNG or .npy, 1 = keep) or --mask-box x0,y0,x1,y1")
    if args.mask_box is not None:
        mask = mask_box(args.mask_box, run.image_shape)
    else:
        mask = read_mask(args.mask, run.image_shape, num, source_size=picture_size(args.input[0]))
    if run.codec is not None:
        from ..runs.latent import latent_mask

        mask = latent_mask(mask, run.codec.factor)
    return mask


def condition_kind(run) -> str:
    """'class', 'text' or '' for this run's network."""
    from ..runs import num_classes

    if num_classes(run):
        return "class"
    if run.config.model.options.get("cond_dim"):
        return "text"
    return ""


def edit_condition(run, args, num: int, cls=None, prompt=None, flag: str = "--class"):
    """(cond, uncond) for one class label or one prompt (None, None: unconditional). Classes are
    checked as `sample` checks them (``conditioning.class_labels``); with --classifier they are
    the classifier's."""
    from ..runs import class_labels, load_classifier, num_classes

    kind = condition_kind(run)
    if cls is not None and prompt is not None:
        raise DenoiselabError(f"give either {flag} or its prompt, not both")
    if cls is not None:
        k = num_classes(run)
        if not k and getattr(args, "classifier", None):
            k = num_classes(load_classifier(args.classifier))
        if not k:
            raise DenoiselabError(f"{run.run_dir} is {'a text-conditional model: use a prompt' if kind else 'an unconditional model'}"
                                  f": drop {flag}" + ("" if kind else " (or guide it with --classifier CLF_RUN)"))
        return class_labels(num, k, cls, f"{run.run_dir} ({flag})"), None
    if prompt is not None:
        if kind != "text":
            raise DenoiselabError(f"{run.run_dir} is {'class-conditional: use --class K' if kind else 'an unconditional model'}"
                                  ": drop the prompt")
        from ..runs.conditions import prompt_embeddings

        return prompt_embeddings(run, [prompt] if isinstance(prompt, str) else list(prompt), num,
                                 getattr(args, "negative_prompt", None))
    return None, None


def edit_denoiser(run, args, uncond=None, default: float | None = None):
    """The run's denoiser with the guidance the flags ask for (``conditioning.guided_run``, as
    `sample`): classifier-free at --guidance (default: the run's sample.guidance; ``default``
    overrides it, 1 for the inversion edits, where a scale other than 1 breaks the round trip),
    classifier guidance with --classifier. Each edit hands its own conditions to the denoiser."""
    from ..guidance import guided
    from ..runs import guided_run

    kind = condition_kind(run)
    scale = getattr(args, "guidance", None)
    if scale is None and kind:
        scale = default
    if kind == "text":
        return guided(run.denoiser, scale=run.config.sample.guidance if scale is None else scale, uncond=uncond)
    den, _ = guided_run(run, 1, guidance=scale, classifier=getattr(args, "classifier", None),
                        classifier_scale=getattr(args, "classifier_scale", None))
    return den


# What an edit samples with when no --sampler is named: DDIM at 50 steps, or a student's own.
EDIT_SAMPLER, EDIT_STEPS = "ddim", 50


def sampling_kwargs(args, run=None) -> dict:
    from .common import grid_opts, levels_args, sampler_opts

    levels_args(args)
    sampler, steps = args.sampler, args.steps
    own = run is not None and run.config.distill.method and sampler in (None, run.config.sample.sampler)
    if own:  # a consistency student edits in its own few steps
        sampler, steps = run.config.sample.sampler, steps or run.config.sample.steps
    args.sampler, args.steps = sampler or EDIT_SAMPLER, steps or EDIT_STEPS  # what sampler_opts reads
    return {"sampler": args.sampler, "steps": args.steps, "grid": args.grid or args.spacing,
            "grid_opts": grid_opts(args), **sampler_opts(args)}


def inversion_kwargs(args) -> dict:
    from .common import grid_opts, levels_args

    levels_args(args)
    return {"steps": args.steps or EDIT_STEPS, "grid": args.grid or args.spacing, "grid_opts": grid_opts(args)}


def flag_prompt(args, name: str = "prompt"):
    p = getattr(args, name, None)
    if isinstance(p, list):
        return p[0] if len(p) == 1 else p
    return p


# -- writing ----------------------------------------------------------------------------------

def write_overview(rows: dict, value_range, path: Path) -> Path:
    """One image per row, one column per entry of ``rows``, labels above the columns."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ..viz.images import save_png, tile_images

    labels = list(rows)
    n = min(GRID_ROWS, *(len(v) for v in rows.values()))
    side = next(iter(rows.values())).shape[-1]
    scale = max(1, 84 // side) if side < 84 else 1
    tiles = torch.stack([rows[k][:n].float() for k in labels], dim=1).reshape(n * len(labels), *rows[labels[0]].shape[1:])
    grid = tile_images(tiles, nrow=len(labels), scale=scale, value_range=value_range)
    col = side * scale + 2
    strip = Image.new("RGB", (grid.shape[1], 14), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j, lab in enumerate(labels):
        draw.text((2 + j * col, 1), lab[: max(3, col // 6)], fill=(0, 0, 0))
    return save_png(np.concatenate([np.asarray(strip), grid], axis=0), path)


def decoded(result, run, noise: bool = False):
    """A latent run's edit with its latents decoded to images: the result (unless it is inverted
    ``noise``, which stays in the run's space for `edit reconstruct`), the rows and the frames."""
    if run.codec is None:
        return result
    import dataclasses

    shape = tuple(run.sample_shape)

    def dec(x):
        return run.decode(x) if tuple(x.shape[1:]) == shape else x

    return dataclasses.replace(result, x=result.x if noise else dec(result.x),
                               rows={k: dec(v) for k, v in result.rows.items()},
                               shots=[(t, dec(x), dec(x0)) for t, x, x0 in result.shots])


def write_result(result, out: Path, run, what: str, noise: bool = False) -> None:
    from ..viz.images import gif_reverse_images, save_grid
    from .common import save_array

    out = Path(out)
    if out.suffix not in (".npy", ".png"):
        raise DenoiselabError(f"unknown output type {out.suffix!r} for {out}: use .npy or .png")
    result = decoded(result, run, noise)
    if not torch.isfinite(result.x).all():
        raise DenoiselabError("the edit produced NaN or inf: the model may be diverged")
    vr = run_value_range(run)
    if out.suffix == ".npy":
        save_array(out, result.x, "images")
    else:
        save_grid(result.x, out, value_range=vr)
    grid = write_overview(result.rows, vr, out.with_name(out.stem + "_grid.png"))
    written = [out, grid]
    if result.shots:
        shots = [(round(float(t), 2) if t is not None and float(t) >= 0 else -1, x, x0) for t, x, x0 in result.shots]
        if vr != (-1.0, 1.0):  # the GIF helper draws [-1, 1]
            shots = [(t, x * 2 - 1, x0 * 2 - 1) for t, x, x0 in shots]
        written.append(gif_reverse_images(shots, out.with_name(out.stem + ".gif")))
    log(f"{what}: wrote " + ", ".join(str(p) for p in written))
