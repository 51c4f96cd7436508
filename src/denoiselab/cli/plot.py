"""`denoiselab plot`: schedules, loss, forward process, histograms, guidance sweeps.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DenoiselabError
from ..io import log
from ..schedules import SCHEDULES
from .common import add_device


def image_data(target: str | None, image_size: int):
    """A data set by name (mnist, digits, ...) or an image folder by path, for the image plots."""
    from ..data import DATASETS
    from ..runs import open_dataset

    # A name that is also a path was refused by validate.resolve_data_ref: names first.
    if target and target not in DATASETS and Path(target).is_dir():
        data = open_dataset("folder", {"path": target, "image_size": image_size})
    else:
        data = open_dataset(target or "mnist", {}, 2048, 0)
    if data.kind != "images":
        raise DenoiselabError(f"{target!r} is not an image data set: name mnist, digits or an image folder")
    return data


def cmd_plot(args) -> int:
    from ..viz import plots

    out = Path(args.out) if args.out else None
    if args.what in ("histogram", "schedule-images"):
        from ..schedules import make_schedule
        from ..viz import images

        data = image_data(args.target, args.image_size)
        if args.what == "histogram":
            p, st = images.plot_pixel_histograms(data.x[:1000], make_schedule(args.schedule, args.T),
                                                 out or Path("histogram.png"))
            for key in ("data", "x_T"):
                for ch, v in st[key].items():
                    print(f"{key:5s} {ch:6s} mean {v['mean']:+.4f}  std {v['std']:.4f}  KS {v['ks']:.4f}")
        else:
            p, st = images.plot_schedule_images(data.x[:1], out or Path("schedule_images.png"), T=args.T,
                                                batch=data.x[:256])
            for name, v in st.items():
                print(f"{name:10s} steps with corr(x_t, x_0) > 0.5: {v['steps_corr_above_0.5']:5d}   "
                      f"corr at T/2: {v['corr_at_T_half']:.3f}")
    elif args.what == "guidance":
        from .guidance import cmd_plot_guidance

        p = cmd_plot_guidance(args, log)
    elif args.what == "schedules":
        p = plots.plot_schedules(out or Path("schedules.png"), T=args.T)
    elif args.what == "loss":
        if not args.target:
            raise DenoiselabError("plot loss needs a run directory: denoiselab plot loss RUN_DIR")
        metrics = Path(args.target) / "metrics.jsonl"
        if not metrics.is_file():
            raise DenoiselabError(f"{metrics} not found: is {args.target} a run directory?")
        p = plots.plot_loss(metrics, out or Path(args.target) / "loss.png")
    elif args.what == "forward":
        from ..data import load_toy
        from ..schedules import make_schedule

        p = plots.plot_forward_points(load_toy(args.target or "swiss-roll", 2048, 0), make_schedule(args.schedule, args.T),
                                      out or Path("forward.png"))
    else:  # argparse restricts choices
        raise DenoiselabError(f"unknown plot {args.what!r}")
    log(f"wrote {p}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="plots: schedules, loss, forward, histogram, schedule-images, guidance")
    p.add_argument("what", choices=["schedules", "loss", "forward", "histogram", "schedule-images", "guidance"],
                   help="which plot: schedules (beta_t, alpha_bar_t, log-SNR), loss (a run's curve), forward (q(x_t | x_0) "
                        "of a 2D set), histogram (pixels of x_0 and x_T), schedule-images (one image under each "
                        "schedule), guidance (samples over guidance scales x classes)")
    p.add_argument("target", nargs="?", help="run directory (loss, guidance), data set (forward) or image data set / "
                   "image folder (histogram, schedule-images; default mnist)")
    p.add_argument("--image-size", type=int, default=64, help="side of images read from a folder")
    p.add_argument("--out", default=None, help="the picture to write (default: PLOT.png here; loss: RUN/loss.png)")
    p.add_argument("--T", type=int, default=1000, help="the schedule's number of steps (default 1000)")
    p.add_argument("--schedule", default="linear", metavar="NAME",
                   help=f"noise schedule of forward and histogram: {', '.join(SCHEDULES)} (default linear)")
    from .guidance import add_plot_options

    add_plot_options(p)
    add_device(p)
    p.set_defaults(fn=cmd_plot)
