"""`denoiselab distill`: a few-step student from a trained run (consistency distillation or
training; reflow for a flow).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DenoiselabError
from .common import add_device


def cmd_distill(args) -> int:
    from .. import runs
    from ..runs.distill import student_config
    from .distributed import make_runtime

    out = Path(args.out)
    if args.resume and (out / runs.CONFIG).is_file():
        cfg = runs.resolve_train_config(out, None, args.set, True)
    else:
        if (out / runs.CONFIG).exists():
            raise DenoiselabError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        if Path(args.run).resolve() == out.resolve():
            raise DenoiselabError("--out is the teacher's own directory: choose another --out for the student")
        sets = list(args.set)
        if args.guidance_range:
            lo, hi = args.guidance_range
            sets += [f"distill.guidance_min={lo}", f"distill.guidance_max={hi}"]
        cfg = student_config(Path(args.run), args.method, sets)
    if args.dry_run:
        print(cfg.to_json())
        return 0
    runs.fit_run(cfg, out, runtime=make_runtime(args.device), resume=args.resume, progress=not args.quiet,
                 pictures=not args.no_pictures)
    if args.levels != "no" and cfg.distill.method != "reflow":  # a reflow student's Euler grid starts from noise
        measure_student_levels(out, images=args.levels == "yes")
    return 0


def measure_student_levels(out: Path, images: bool = False) -> None:
    """A student's sampling levels, measured and stored with it (``runs.distill.measure_levels``):
    a 2D student's always, an unconditional image student's with ``images``."""
    from .. import runs
    from ..io import log
    from ..runs.distill import measure_levels

    run = runs.load_run(out)
    if run.kind != "points" and not images:
        return
    log("measuring the student's sampling levels")
    record = measure_levels(run, log=log, images=images)
    if record is None:
        if images and run.kind == "images":
            log("no levels measured: the search scores 2D and unconditional pixel-image students only")
        return
    log(f"{runs.LEVELS}: {record['steps']} steps by default; {record['metric']} by steps: "
        + ", ".join(f"{k}: {v:.3g}" for k, v in record["scores"].items()))


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="distil a few-step student from a trained run (consistency, or reflow for a flow)")
    p.add_argument("run", help="the teacher: a diffusion or flow run directory")
    p.add_argument("--out", required=True, help="the student's run directory")
    p.add_argument("--method", default="cd", choices=("cd", "ct", "reflow"),
                   help="cd: consistency distillation from the teacher's ODE (Song et al. 2023, default); "
                        "ct: consistency training without the teacher's ODE (Song & Dhariwal 2023), "
                        "started from its weights; reflow: a flow teacher retrained on the noise -> sample "
                        "pairs of its own ODE, sampled with Euler (Liu et al. 2023)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: steps, lr, distill.target_decay, distill.solver, "
                        "distill.teacher_guidance, sample.steps, ...")
    p.add_argument("--guidance-range", nargs=2, type=float, metavar=("W_MIN", "W_MAX"),
                   help="a conditional teacher: the student takes the guidance scale as an input and learns "
                        "every w in the range, sampled with --guidance W (default: one w, the teacher's "
                        "sample.guidance or --set distill.teacher_guidance=W)")
    p.add_argument("--levels", choices=("auto", "yes", "no"), default="auto",
                   help="after distilling, measure the student's sampling levels and store them as its default "
                        "(levels.json): auto (default) for 2D students; yes also for unconditional pixel-image "
                        "students (domain FID of 500 samples per level set, some minutes); no: keep the grid")
    p.add_argument("--resume", action="store_true", help="continue the student in --out from its newest checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the student's config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-pictures", action="store_true", help="skip the pictures after distillation")
    add_device(p)
    p.set_defaults(fn=cmd_distill)
