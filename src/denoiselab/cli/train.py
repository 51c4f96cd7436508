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
    data = runs.build_data(cfg)
    cfg = runs.resolve_config(cfg, data)  # e.g. num_classes -1 -> the data's class count
    trainer = runs.make_trainer(cfg, out, data, progress=not args.quiet, runtime=runtime)
    net = trainer.net
    if args.resume:
        if trainer.resume():
            log(f"resuming {out} at step {trainer.step}")
        else:
            log(f"{out} holds no checkpoint yet: starting the run")
    from ..io import atomic_write

    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / runs.CONFIG, lambda tmp: Path(tmp).write_text(cfg.to_json()))
    n_params = sum(p.numel() for p in net.parameters())
    where = f"{runtime.device}" + (f" x {runtime.num_processes} processes" if runtime.num_processes > 1 else "")
    if runtime.is_main:
        log(f"training {cfg.preset}: {cfg.model.name} ({n_params / 1e6:.2f}M parameters) on {cfg.data.name}, "
             f"{cfg.train.steps} steps, batch {cfg.train.batch_size}, on {where}")
    result = trainer.fit()
    if not runtime.is_main:  # pictures, sweeps and the report: once, by the main process
        return 0
    log(f"done: step {result['steps']}, loss {result.get('loss', float('nan')):.4f}, "
         f"{result['seconds']:.1f} s; checkpoint {trainer.checkpoint_path}")
    if not args.no_pictures:
        for p in runs.run_pictures(out, data, device=runtime.device):
            log(f"wrote {p}")
        from .guidance import training_sweep

        sweep = training_sweep(out, data, device=runtime.device)
        if sweep is not None:
            log(f"wrote {sweep}")
    from ..viz.report import write_run_report

    log(f"report: {write_run_report(out)}")
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
