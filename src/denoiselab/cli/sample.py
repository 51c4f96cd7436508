"""`denoiselab sample` and `denoiselab animate`: draw samples, watch the reverse process.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..errors import DenoiselabError
from ..io import log
from .common import GivenStart, add_sampling, draw, plan_from_args, plural, read_noise, save_array
from .plot import image_data


def cmd_sample(args) -> int:
    from ..runs import load_run

    run = load_run(Path(args.run_dir), device=args.device)
    num, start = args.num, None
    if args.noise:
        start = GivenStart(read_noise(args.noise, run.sample_shape))
        num = len(start.x_T)
        if num != args.num and any(a == "--num" or a.startswith("--num=") for a in getattr(args, "argv", [])):
            raise DenoiselabError(f"--noise {args.noise} holds {num} starting points but --num asks for {args.num}: "
                                  "drop --num (the file sets the count)")
    t0 = time.perf_counter()
    x, nfe, kind, plan = draw(run, args, num, start=start)
    if not torch.isfinite(x).all():
        raise DenoiselabError("sampling produced NaN or inf: the model may be diverged; retrain with a lower lr")
    save_array(Path(args.out), x, kind)
    ends = f", {plan.ends()}" if plan.ends() else ""
    note = f", starting from x_T in {args.noise}" if start is not None else plan.start_note()
    log(f"wrote {plural(num, 'sample')} to {args.out}: sampler {plan.describe()}, NFE {nfe}{ends}{note}, "
         f"{time.perf_counter() - t0:.1f} s")
    return 0


def cmd_animate(args) -> int:
    from ..runs import load_run, reverse_gif

    if args.run_dir == "forward":
        from ..schedules import make_schedule
        from ..viz.images import gif_forward_images

        data = image_data(args.data, args.image_size)
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))[:min(args.num, 64)]
        p = gif_forward_images(data.x[idx], make_schedule(args.schedule, args.T), Path(args.out), frames=args.frames,
                               seed=args.seed)
        log(f"wrote {p}")
        return 0
    from .guidance import conditioning

    run = load_run(Path(args.run_dir), device=args.device)
    plan = plan_from_args(run, args)
    den, cond = conditioning(run, args, args.num)
    p = reverse_gif(run, Path(args.out), seed=args.seed, num=args.num, frames=args.frames, denoiser=den, cond=cond,
                    plan=plan)
    log(f"wrote {p}")
    return 0


def add_parser(sub) -> None:
    from ..schedules import SCHEDULES

    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("run_dir", help="a run directory made by `denoiselab train`")
    p.add_argument("--num", type=int, default=2048, help="number of samples to draw (default 2048)")
    p.add_argument("--out", required=True,
                   help=".npy (float32, in the data's frame: normalised 2D points, or [-1, 1] NCHW images) or "
                        ".png (a scatter plot of the points, or a grid of the images)")
    p.add_argument("--noise", default=None, metavar="FILE.npy",
                   help="start from this x_T, shape (N, *sample shape), instead of drawing it (as diffusers "
                        "pipelines' latents=): N sets the number of samples; later noise still comes from --seed")
    add_sampling(p)
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("animate", help="GIF of the reverse process of a trained run, or `animate forward`")
    p.add_argument("run_dir", help="a run directory (reverse process), or the word forward (forward process of --data)")
    p.add_argument("--data", default="mnist", help="animate forward: image data set name or image folder")
    p.add_argument("--image-size", type=int, default=64, help="animate forward: side of images read from a folder")
    p.add_argument("--schedule", default="linear",
                   help=f"animate forward: noise schedule, one of {', '.join(SCHEDULES)} (default linear)")
    p.add_argument("--T", type=int, default=1000, help="animate forward: the schedule's number of steps T")
    p.add_argument("--out", required=True, help="output .gif")
    p.add_argument("--num", type=int, default=1024,
                   help="samples drawn: the particles of a 2D run; an image run's GIF shows the first 16; "
                        "animate forward: images shown (at most 64)")
    p.add_argument("--frames", type=int, default=50, help="frames recorded along the trajectory")
    add_sampling(p)
    p.set_defaults(fn=cmd_animate)

