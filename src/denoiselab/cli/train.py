"""`denoiselab train`: train a run from a preset, or resume one.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DenoiselabError
from ..io import log
from ..presets import PRESETS
from .common import add_device


def cmd_train(args) -> int:
    from .. import runs

    out = Path(args.out)
    cfg = runs.resolve_train_config(out, args.preset, args.set, args.resume, log=log)
    if args.dry_run:
        print(cfg.to_json())
        return 0
    from .distributed import launch, make_runtime

    def refuse_existing() -> None:
        if not args.resume and (out / runs.CONFIG).exists():
            raise DenoiselabError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")

    if args.launcher != "none":
        refuse_existing()  # before any process starts
        return launch(args)
    runtime = make_runtime(args.device)
    if runtime.is_main:
        refuse_existing()
    runtime.wait()  # the main process looks before any process writes
    runs.fit_run(cfg, out, runtime=runtime, resume=args.resume, progress=not args.quiet, pictures=not args.no_pictures)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model from a preset")
    p.add_argument("--preset", default=None, help=f"one of: {', '.join(PRESETS)} (default swiss-roll); or your "
                   "own preset file, FILE.toml or FILE.toml:NAME (`denoiselab presets` lists them)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: steps, batch_size, lr, seed, train.ema_decay, model.width, ...")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest whole checkpoint, or start it if --out holds "
                        "none: one command a preemptible job can repeat. The run keeps its own config; --preset "
                        "and --set may restate it, or change train.steps, lr and other training settings, never "
                        "the model, data or diffusion")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-pictures", action="store_true", help="skip the pictures after training")
    add_device(p)
    from .distributed import add_launch_options

    add_launch_options(p)
    p.set_defaults(fn=cmd_train)
