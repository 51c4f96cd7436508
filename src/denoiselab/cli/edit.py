"""`denoiselab edit ...`: the editing commands (CS180 project 5, part A) on any trained image run.

Every command writes three files: the result OUT (``.npy``: the images as they are, in the
data's frame; ``.png``: a grid of them), OUT_grid.png (the inputs beside the results, one
image per row, one stage or setting per column) and OUT.gif (the process: x_t beside the
predicted x0). Sampling flags are the ``sample`` command's (``common.add_sampling``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import DenoiselabError
from ..io import log
from .common import plural
from .edit_io import (
    EDIT_SAMPLER,
    EDIT_STEPS,
    condition_kind,
    edit_condition,
    edit_denoiser,
    flag_prompt,
    inversion_kwargs,
    load_image_run,
    read_inputs,
    read_keep_mask,
    sampling_kwargs,
    write_result,
)

# -- commands ---------------------------------------------------------------------------------

def cmd_denoise(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    x0 = read_inputs(run, args.input, args.negate_input)
    cond, uncond = edit_condition(run, args, len(x0), args.cls, flag_prompt(args))
    t0 = time.perf_counter()
    res = E.denoise(edit_denoiser(run, args, uncond), x0, args.levels, seed=args.seed, cond=cond, **sampling_kwargs(args, run))
    for level, m in res.info["mse"].items():
        log(f"{level}: MSE to the input: blur {m['blur']:.4f}, one step {m['one step']:.4f}, "
             f"iterative {m['iterative']:.4f}")
    write_result(res, args.out, run, f"denoise ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_sdedit(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    for s in args.strength:
        E.core.check_level(s)
    x0 = read_inputs(run, args.input, args.negate_input)
    cond, uncond = edit_condition(run, args, len(x0), args.cls, flag_prompt(args))
    t0 = time.perf_counter()
    res = E.sdedit(edit_denoiser(run, args, uncond), x0, args.strength, seed=args.seed, cond=cond, **sampling_kwargs(args, run))
    write_result(res, args.out, run, f"sdedit, strengths {', '.join(f'{s:g}' for s in args.strength)} "
                               f"({plural(len(x0), 'image')} each, strength-major; {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_inpaint(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    if (args.mask is None) == (args.mask_box is None):
        raise DenoiselabError("inpaint needs a mask: --mask FILE (PNG or .npy, 1 = keep) or --mask-box x0,y0,x1,y1")
    x0 = read_inputs(run, args.input, args.negate_input)
    mask = read_keep_mask(run, args, len(x0))
    cond, uncond = edit_condition(run, args, len(x0), args.cls, flag_prompt(args))
    t0 = time.perf_counter()
    res = E.inpaint(edit_denoiser(run, args, uncond), x0, mask, jump_length=args.jump_length, jump_count=args.jump_count,
                    seed=args.seed, cond=cond, **sampling_kwargs(args, run))
    write_result(res, args.out, run, f"inpaint ({res.info['nfe_steps']} solver steps with resampling; "
                               f"{time.perf_counter() - t0:.1f} s)")
    return 0


# Each view of an anagram is guided on its own, and the two views pull against each other, so a
# view needs a stronger scale than plain sampling: on the mnist-class run, 7 upright / 2 rot180 had
# both readings right for 59% of 100 samples at w = 3 and 69% at w = 5 (benchmarks/editing.py).
ANAGRAM_GUIDANCE = 5.0


def cmd_anagram(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    E.get_view(args.view)
    c1, u1 = edit_condition(run, args, args.num, args.cls, flag_prompt(args))
    c2, _ = edit_condition(run, args, args.num, args.view_class, flag_prompt(args, "view_prompt"), flag="--view-class")
    if c1 is None or c2 is None:
        if condition_kind(run):
            raise DenoiselabError("an anagram needs two conditions: --class A --view-class B "
                                  "(or --prompt and --view-prompt)")
        log("anagram on an unconditional model: both readings unconditioned (only the view's symmetry is imposed)")
    t0 = time.perf_counter()
    res = E.anagram(edit_denoiser(run, args, u1, default=ANAGRAM_GUIDANCE), args.num, run.sample_shape, c1, c2, args.view,
                    seed=args.seed, **sampling_kwargs(args, run))
    write_result(res, args.out, run, f"anagram under {args.view} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_hybrid(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    lo, u = edit_condition(run, args, args.num, args.low_class, flag_prompt(args, "low_prompt"), flag="--low-class")
    hi, _ = edit_condition(run, args, args.num, args.high_class, flag_prompt(args, "high_prompt"), flag="--high-class")
    if (lo is None or hi is None) and condition_kind(run):
        raise DenoiselabError("a hybrid needs two conditions: --low-class A --high-class B "
                              "(or --low-prompt and --high-prompt)")
    t0 = time.perf_counter()
    res = E.hybrid(edit_denoiser(run, args, u), args.num, run.sample_shape, lo, hi, seed=args.seed, **sampling_kwargs(args, run))
    write_result(res, args.out, run, f"hybrid ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_invert(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    x0 = read_inputs(run, args.input, args.negate_input)
    cond, uncond = edit_condition(run, args, len(x0), args.cls, flag_prompt(args))
    t0 = time.perf_counter()
    res = E.invert(edit_denoiser(run, args, uncond, default=1.0), x0, cond=cond, fixed_point_iters=args.fixed_point_iters,
                   **inversion_kwargs(args))
    write_result(res, args.out, run, f"invert ({time.perf_counter() - t0:.1f} s; decode with "
                               f"`denoiselab edit reconstruct {args.run_dir} --noise {args.out} --steps {args.steps or EDIT_STEPS}`)",
                 noise=True)
    return 0


def cmd_reconstruct(args) -> int:
    from .. import editing as E
    from ..image_io import as_nchw
    from ..io import load_npy

    run = load_image_run(args)
    path = Path(args.noise)
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise DenoiselabError(f"--noise {path}: give the .npy written by `denoiselab edit invert`")
    z = as_nchw(load_npy(path, "--noise").astype("float32"), run.sample_shape, path, "--noise")
    cond, uncond = edit_condition(run, args, len(z), args.cls, flag_prompt(args))
    t0 = time.perf_counter()
    res = E.reconstruct(edit_denoiser(run, args, uncond, default=1.0), z, cond=cond, **inversion_kwargs(args))
    write_result(res, args.out, run, f"reconstruct ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_interpolate(args) -> int:
    from .. import editing as E

    run = load_image_run(args)
    if len(args.input) != 2:
        raise DenoiselabError(f"interpolate takes two inputs (--input A --input B), got {len(args.input)}")
    xa = read_inputs(run, args.input[:1], args.negate_input)
    xb = read_inputs(run, args.input[1:], args.negate_input)
    if len(xa) != len(xb):
        raise DenoiselabError(f"--input A holds {len(xa)} images and B {len(xb)}: give the same number")
    cond, uncond = edit_condition(run, args, 1, args.cls, flag_prompt(args))
    t0 = time.perf_counter()
    res = E.interpolate(edit_denoiser(run, args, uncond, default=1.0), xa, xb, frames=args.frames,
                        cond=None if cond is None else int(cond[0]), fixed_point_iters=args.fixed_point_iters,
                        **inversion_kwargs(args))
    write_result(res, args.out, run, f"interpolate, {args.frames} frames per pair, pair-major ({time.perf_counter() - t0:.1f} s)")
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
    add_sampling(p, default_text=f"{EDIT_SAMPLER}, {EDIT_STEPS} steps; a consistency student: its own sampler and "
                                 "steps")
    _add_once(p, "--guidance", type=float, default=None, metavar="W",
              help="classifier-free guidance scale (default: the preset's; 5 for anagram, "
                   "each of whose views is guided; 1 for invert/reconstruct/interpolate)")
    _add_once(p, "--prompt", default=None, metavar="TEXT", help="text models: the prompt")


def add_parser(sub) -> None:
    """Register `denoiselab edit ...` on the top-level subparsers."""
    top = sub.add_parser("edit", help="edit images with a trained run: denoise, sdedit, inpaint, anagram, hybrid, "
                                      "invert, reconstruct, interpolate")
    esub = top.add_subparsers(dest="edit_cmd", metavar="EDIT", required=True)
    _add_input_edits(esub)
    _add_generated_edits(esub)
    _add_inversion_edits(esub)


def _add_input_edits(esub) -> None:
    """denoise, sdedit, inpaint: edits of the images given with --input."""
    from .. import editing as E

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


def _add_generated_edits(esub) -> None:
    """anagram, hybrid: images generated under two conditions at once."""
    from .. import editing as E

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


def _add_inversion_edits(esub) -> None:
    """invert, reconstruct, interpolate: image -> noise and back (DDIM inversion)."""
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
