"""`denoiselab edit ...`: the editing commands (CS180 project 5, part A) on any trained image run.

Every command writes three files: the result OUT (``.npy``: the images as they are, in the
data's frame; ``.png``: a grid of them), OUT_grid.png (the inputs beside the results, one
image per row, one stage or setting per column) and OUT.gif (the process: x_t beside the
predicted x0). Sampling flags are the ``sample`` command's (``cli._add_sampling``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..errors import DenoiselabError
from ..io import log
from .common import plural

GRID_ROWS = 16  # images shown in the overview grid




# -- the run, its inputs and its conditions ---------------------------------------------------

def _load(args):
    from ..runs import load_run, require_sampler

    run = load_run(Path(args.run_dir), device=args.device)
    require_sampler(run)
    if run.kind != "images":
        raise DenoiselabError(f"{args.run_dir} is a {run.kind} model: the edits work on image models")
    return run


def _value_range(run) -> tuple[float, float]:
    return (0.0, 1.0) if str(run.config.data.options.get("range", "-1,1")).replace(" ", "") == "0,1" else (-1.0, 1.0)


def _inputs(run, paths, negate: bool = False) -> torch.Tensor:
    from ..image_io import read_images

    return read_images(paths, run.sample_shape, _value_range(run), negate=negate)


def _conditional(run) -> str:
    """'class', 'text' or '' for this run's network."""
    from ..runs import num_classes

    if num_classes(run):
        return "class"
    if run.config.model.options.get("cond_dim"):
        return "text"
    return ""


def _condition(run, args, num: int, cls=None, prompt=None, flag: str = "--class"):
    """(cond, uncond) for one class label or one prompt (None, None: unconditional). Classes are
    checked as `sample` checks them (``conditioning.class_labels``); with --classifier they are
    the classifier's."""
    from ..runs import class_labels, load_classifier, num_classes

    kind = _conditional(run)
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
        from ..models.text_encoder import prompt_condition

        return prompt_condition(run.net.null_cond, [prompt] if isinstance(prompt, str) else list(prompt), num,
                                getattr(args, "negative_prompt", None))
    return None, None


def _guided(run, args, uncond=None, default: float | None = None):
    """The run's denoiser with the guidance the flags ask for (``conditioning.guided_run``, as
    `sample`): classifier-free at --guidance (default: the run's sample.guidance; ``default``
    overrides it, 1 for the inversion edits, where a scale other than 1 breaks the round trip),
    classifier guidance with --classifier. Each edit hands its own conditions to the denoiser."""
    from ..guidance import guided
    from ..runs import guided_run

    kind = _conditional(run)
    scale = getattr(args, "guidance", None)
    if scale is None and kind:
        scale = default
    if kind == "text":
        return guided(run.denoiser, scale=run.config.sample.guidance if scale is None else scale, uncond=uncond)
    den, _ = guided_run(run, 1, guidance=scale, classifier=getattr(args, "classifier", None),
                        classifier_scale=getattr(args, "classifier_scale", None))
    return den


def _opts(args) -> dict:
    from .common import grid_opts, sampler_opts

    return {"sampler": args.sampler, "steps": args.steps, "grid": args.grid or args.spacing,
            "grid_opts": grid_opts(args), **sampler_opts(args)}


def _prompt(args, name: str = "prompt"):
    p = getattr(args, name, None)
    if isinstance(p, list):
        return p[0] if len(p) == 1 else p
    return p


# -- writing ----------------------------------------------------------------------------------

def _overview(rows: dict, value_range, path: Path) -> Path:
    """One image per row, one column per entry of ``rows``, labels above the columns."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ..viz.images import make_grid, save_png

    labels = list(rows)
    n = min(GRID_ROWS, *(len(v) for v in rows.values()))
    side = next(iter(rows.values())).shape[-1]
    scale = max(1, 84 // side) if side < 84 else 1
    tiles = torch.stack([rows[k][:n].float() for k in labels], dim=1).reshape(n * len(labels), *rows[labels[0]].shape[1:])
    grid = make_grid(tiles, nrow=len(labels), scale=scale, value_range=value_range)
    col = side * scale + 2
    strip = Image.new("RGB", (grid.shape[1], 14), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for j, lab in enumerate(labels):
        draw.text((2 + j * col, 1), lab[: max(3, col // 6)], fill=(0, 0, 0))
    return save_png(np.concatenate([np.asarray(strip), grid], axis=0), path)


def _write(result, out: Path, run, what: str) -> None:
    from ..viz.images import gif_reverse_images, save_grid
    from .common import save_array

    out = Path(out)
    if out.suffix not in (".npy", ".png"):
        raise DenoiselabError(f"unknown output type {out.suffix!r} for {out}: use .npy or .png")
    if not torch.isfinite(result.x).all():
        raise DenoiselabError("the edit produced NaN or inf: the model may be diverged")
    vr = _value_range(run)
    if out.suffix == ".npy":
        save_array(out, result.x, "images")
    else:
        save_grid(result.x, out, value_range=vr)
    grid = _overview(result.rows, vr, out.with_name(out.stem + "_grid.png"))
    written = [out, grid]
    if result.shots:
        shots = [(round(float(t), 2) if t is not None and float(t) >= 0 else -1, x, x0) for t, x, x0 in result.shots]
        if vr != (-1.0, 1.0):  # the GIF helper draws [-1, 1]
            shots = [(t, x * 2 - 1, x0 * 2 - 1) for t, x, x0 in shots]
        written.append(gif_reverse_images(shots, out.with_name(out.stem + ".gif")))
    log(f"{what}: wrote " + ", ".join(str(p) for p in written))


# -- commands ---------------------------------------------------------------------------------

def cmd_denoise(args) -> int:
    from .. import editing as E

    run = _load(args)
    x0 = _inputs(run, args.input, args.negate_input)
    cond, uncond = _condition(run, args, len(x0), args.cls, _prompt(args))
    t0 = time.perf_counter()
    res = E.denoise(_guided(run, args, uncond), x0, args.levels, seed=args.seed, cond=cond, **_opts(args))
    for level, m in res.info["mse"].items():
        log(f"{level}: MSE to the input: blur {m['blur']:.4f}, one step {m['one step']:.4f}, "
             f"iterative {m['iterative']:.4f}")
    _write(res, args.out, run, f"denoise ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_sdedit(args) -> int:
    from .. import editing as E

    run = _load(args)
    for s in args.strength:
        E.core.check_level(s)
    x0 = _inputs(run, args.input, args.negate_input)
    cond, uncond = _condition(run, args, len(x0), args.cls, _prompt(args))
    t0 = time.perf_counter()
    res = E.sdedit(_guided(run, args, uncond), x0, args.strength, seed=args.seed, cond=cond, **_opts(args))
    _write(res, args.out, run, f"sdedit, strengths {', '.join(f'{s:g}' for s in args.strength)} "
                               f"({plural(len(x0), 'image')} each, strength-major; {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_inpaint(args) -> int:
    from .. import editing as E
    from ..image_io import mask_box, picture_size, read_mask

    run = _load(args)
    if (args.mask is None) == (args.mask_box is None):
        raise DenoiselabError("inpaint needs a mask: --mask FILE (PNG or .npy, 1 = keep) or --mask-box x0,y0,x1,y1")
    x0 = _inputs(run, args.input, args.negate_input)
    if args.mask_box is not None:
        mask = mask_box(args.mask_box, run.sample_shape)
    else:
        mask = read_mask(args.mask, run.sample_shape, len(x0), source_size=picture_size(args.input[0]))
    cond, uncond = _condition(run, args, len(x0), args.cls, _prompt(args))
    t0 = time.perf_counter()
    res = E.inpaint(_guided(run, args, uncond), x0, mask, jump_length=args.jump_length, jump_count=args.jump_count,
                    seed=args.seed, cond=cond, **_opts(args))
    _write(res, args.out, run, f"inpaint ({res.info['nfe_steps']} solver steps with resampling; "
                               f"{time.perf_counter() - t0:.1f} s)")
    return 0


# Each view of an anagram is guided on its own, and the two views pull against each other, so a
# view needs a stronger scale than plain sampling: on the mnist-class run, 7 upright / 2 rot180 had
# both readings right for 59% of 100 samples at w = 3 and 69% at w = 5 (benchmarks/editing.py).
ANAGRAM_GUIDANCE = 5.0


def cmd_anagram(args) -> int:
    from .. import editing as E

    run = _load(args)
    E.get_view(args.view)
    c1, u1 = _condition(run, args, args.num, args.cls, _prompt(args))
    c2, _ = _condition(run, args, args.num, args.view_class, _prompt(args, "view_prompt"), flag="--view-class")
    if c1 is None or c2 is None:
        if _conditional(run):
            raise DenoiselabError("an anagram needs two conditions: --class A --view-class B "
                                  "(or --prompt and --view-prompt)")
        log("anagram on an unconditional model: both readings unconditioned (only the view's symmetry is imposed)")
    t0 = time.perf_counter()
    res = E.anagram(_guided(run, args, u1, default=ANAGRAM_GUIDANCE), args.num, run.sample_shape, c1, c2, args.view,
                    seed=args.seed, **_opts(args))
    _write(res, args.out, run, f"anagram under {args.view} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_hybrid(args) -> int:
    from .. import editing as E

    run = _load(args)
    lo, u = _condition(run, args, args.num, args.low_class, _prompt(args, "low_prompt"), flag="--low-class")
    hi, _ = _condition(run, args, args.num, args.high_class, _prompt(args, "high_prompt"), flag="--high-class")
    if (lo is None or hi is None) and _conditional(run):
        raise DenoiselabError("a hybrid needs two conditions: --low-class A --high-class B "
                              "(or --low-prompt and --high-prompt)")
    t0 = time.perf_counter()
    res = E.hybrid(_guided(run, args, u), args.num, run.sample_shape, lo, hi, seed=args.seed, **_opts(args))
    _write(res, args.out, run, f"hybrid ({time.perf_counter() - t0:.1f} s)")
    return 0


def _inversion_opts(args) -> dict:
    from .common import grid_opts

    return {"steps": args.steps, "grid": args.grid or args.spacing, "grid_opts": grid_opts(args)}


def cmd_invert(args) -> int:
    from .. import editing as E

    run = _load(args)
    x0 = _inputs(run, args.input, args.negate_input)
    cond, uncond = _condition(run, args, len(x0), args.cls, _prompt(args))
    t0 = time.perf_counter()
    res = E.invert(_guided(run, args, uncond, default=1.0), x0, cond=cond, fixed_point_iters=args.fixed_point_iters,
                   **_inversion_opts(args))
    _write(res, args.out, run, f"invert ({time.perf_counter() - t0:.1f} s; decode with "
                               f"`denoiselab edit reconstruct {args.run_dir} --noise {args.out} --steps {args.steps}`)")
    return 0


def cmd_reconstruct(args) -> int:
    from .. import editing as E
    from ..image_io import as_nchw
    from ..io import load_npy

    run = _load(args)
    path = Path(args.noise)
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise DenoiselabError(f"--noise {path}: give the .npy written by `denoiselab edit invert`")
    z = as_nchw(load_npy(path, "--noise").astype("float32"), run.sample_shape, path, "--noise")
    cond, uncond = _condition(run, args, len(z), args.cls, _prompt(args))
    t0 = time.perf_counter()
    res = E.reconstruct(_guided(run, args, uncond, default=1.0), z, cond=cond, **_inversion_opts(args))
    _write(res, args.out, run, f"reconstruct ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_interpolate(args) -> int:
    from .. import editing as E

    run = _load(args)
    if len(args.input) != 2:
        raise DenoiselabError(f"interpolate takes two inputs (--input A --input B), got {len(args.input)}")
    xa = _inputs(run, args.input[:1], args.negate_input)
    xb = _inputs(run, args.input[1:], args.negate_input)
    if len(xa) != len(xb):
        raise DenoiselabError(f"--input A holds {len(xa)} images and B {len(xb)}: give the same number")
    cond, uncond = _condition(run, args, 1, args.cls, _prompt(args))
    t0 = time.perf_counter()
    res = E.interpolate(_guided(run, args, uncond, default=1.0), xa, xb, frames=args.frames,
                        cond=None if cond is None else int(cond[0]), fixed_point_iters=args.fixed_point_iters,
                        **_inversion_opts(args))
    _write(res, args.out, run, f"interpolate, {args.frames} frames per pair, pair-major ({time.perf_counter() - t0:.1f} s)")
    return 0


# -- parser -----------------------------------------------------------------------------------

def _add_once(p: argparse.ArgumentParser, flag: str, **kw) -> None:
    """Add a flag unless the shared sampling flags already define it (--guidance, --prompt)."""
    if flag not in p._option_string_actions:
        p.add_argument(flag, **kw)


def _common(p: argparse.ArgumentParser, inputs: bool = True) -> None:
    from .common import add_sampling

    p.add_argument("run_dir", metavar="RUN", help="a trained image run directory")
    p.add_argument("--out", required=True, help=".npy (the images, data's frame) or .png; OUT_grid.png and OUT.gif beside")
    if inputs:
        p.add_argument("--input", action="append", required=True, metavar="IMG",
                       help="a PNG/JPEG of any size and mode (resized and converted to the model's frame) or an "
                            ".npy of N images in the data's frame; repeatable")
        p.add_argument("--negate-input", action="store_true",
                       help="swap dark and light in pictures (dark ink on white paper for a model of light digits on black)")
    add_sampling(p, steps=50, sampler="ddim")
    _add_once(p, "--guidance", type=float, default=None, metavar="W",
              help="classifier-free guidance scale (default: the preset's; 5 for anagram, "
                   "each of whose views is guided; 1 for invert/reconstruct/interpolate)")
    _add_once(p, "--prompt", default=None, metavar="TEXT", help="text models: the prompt")


def add_parser(sub) -> None:
    """Register `denoiselab edit ...` on the top-level subparsers."""
    from .. import editing as E

    top = sub.add_parser("edit", help="edit images with a trained run: denoise, sdedit, inpaint, anagram, hybrid, "
                                      "invert, reconstruct, interpolate")
    esub = top.add_subparsers(dest="edit_cmd", metavar="EDIT", required=True)

    p = esub.add_parser("denoise", help="noise an image to t = 250/500/750 of 1000 and denoise it three ways")
    _common(p)
    p.add_argument("--levels", nargs="+", type=float, default=list(E.DENOISE_LEVELS),
                   help="noise levels as fractions of the DDPM reference's 1000 steps, matched by sigma on any schedule")
    p.set_defaults(fn=cmd_denoise)

    p = esub.add_parser("sdedit", help="image-to-image (Meng et al. 2022): noise to a strength and denoise")
    _common(p)
    p.add_argument("--strength", nargs="+", type=float, default=list(E.SDEDIT_STRENGTHS),
                   help="strengths in [0, 1] (0 = the input, 1 = pure noise); a sweep gives one column each")
    p.set_defaults(fn=cmd_sdedit)

    p = esub.add_parser("inpaint", help="RePaint (Lugmayr et al. 2022) with resampling")
    _common(p)
    p.add_argument("--mask", default=None, help="PNG (white = keep, black = fill) or .npy (1 = keep), one or one per image")
    p.add_argument("--mask-box", default=None, metavar="x0,y0,x1,y1", help="fill this box (pixels, x1/y1 exclusive)")
    p.add_argument("--jump-length", type=int, default=10, help="RePaint: grid points per jump back up")
    p.add_argument("--jump-count", type=int, default=E.REPAINT_JUMP_COUNT,
                   help=f"RePaint: passes over each jump (1 = no resampling; default {E.REPAINT_JUMP_COUNT})")
    p.set_defaults(fn=cmd_inpaint)

    p = esub.add_parser("anagram", help="visual anagrams (Geng et al. 2024): one reading upright, another under a view")
    _common(p, inputs=False)
    p.add_argument("--view", default="rot180", help=f"one of {', '.join(E.USER_VIEWS)}")
    p.add_argument("--view-class", type=int, default=None, help="class seen under the view")
    p.add_argument("--view-prompt", default=None, help="text models: prompt seen under the view")
    p.add_argument("--num", type=int, default=16)
    p.set_defaults(fn=cmd_anagram)

    p = esub.add_parser("hybrid", help="hybrid images: low frequencies from one condition, high from another")
    _common(p, inputs=False)
    p.add_argument("--low-class", type=int, default=None)
    p.add_argument("--high-class", type=int, default=None)
    p.add_argument("--low-prompt", default=None)
    p.add_argument("--high-prompt", default=None)
    p.add_argument("--num", type=int, default=16)
    p.set_defaults(fn=cmd_hybrid)

    p = esub.add_parser("invert", help="DDIM inversion: image -> noise (decode with `edit reconstruct`)")
    _common(p)
    p.add_argument("--fixed-point-iters", type=int, default=1, help="re-evaluations per inversion step (Pan et al. 2023)")
    p.set_defaults(fn=cmd_invert)

    p = esub.add_parser("reconstruct", help="decode inverted noise with deterministic DDIM")
    _common(p, inputs=False)
    p.add_argument("--noise", required=True, help="the .npy written by `edit invert`")
    p.set_defaults(fn=cmd_reconstruct)

    p = esub.add_parser("interpolate", help="slerp between two images' inverted noises, decoded: a strip and a GIF")
    _common(p)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--fixed-point-iters", type=int, default=1, help="re-evaluations per inversion step")
    p.set_defaults(fn=cmd_interpolate)
