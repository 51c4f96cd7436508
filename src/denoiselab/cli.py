"""The command line: the only layer that parses argv and reads or writes files by name."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import DenoiselabError

SAMPLER_HELP = "sampler name (ddpm, ddim, ...; see `denoiselab sample --help`)"


# -- helpers --------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _save_array(path: Path, x: torch.Tensor, kind: str) -> None:
    from .training.checkpoint import atomic_save_npy

    path = Path(path)
    if path.suffix == ".npy":
        atomic_save_npy(path, x.float().numpy().astype(np.float32))
    elif path.suffix == ".png":
        if kind == "points":
            from .viz.plots import plot_samples_over_data

            plot_samples_over_data(x, None, path, title=f"{len(x)} samples")
        else:
            from .viz.images import save_grid

            save_grid(x, path)
    else:
        raise DenoiselabError(f"unknown output type {path.suffix!r} for {path}: use .npy or .png")


def _sampler_opts(args) -> dict:
    from .samplers import SAMPLERS, takes_option

    opts = {}
    for option in ("eta", "eta_low", "eta_switch"):
        if args.sampler in SAMPLERS and takes_option(args.sampler, option) and getattr(args, option, None) is not None:
            opts[option] = getattr(args, option)
    if args.sampler == "ddpm" and args.variance:
        opts["variance"] = args.variance
    if args.sampler in ("euler", "heun") and args.churn:
        opts["s_churn"] = args.churn
    return opts


def _grid_opts(args) -> dict:
    """--sigma-min/--sigma-max/--rho; a grid that takes none of them says so (grids.make_grid)."""
    return {k: getattr(args, k) for k in ("sigma_min", "sigma_max", "rho") if getattr(args, k, None) is not None}


def _plan(run, args):
    """What the command line leaves out comes from the run (pipeline.sampling_plan); the
    resolved sampler, steps and grid are written back into args for the log and the metrics."""
    from .pipeline import sampling_plan

    plan = sampling_plan(run, sampler=args.sampler, steps=args.steps or None, grid=args.grid or args.spacing,
                         grid_opts=_grid_opts(args), start=getattr(args, "start", None))
    args.sampler, args.steps, args.grid = plan.sampler, plan.steps, plan.grid
    plan.opts.update(_sampler_opts(args))
    if getattr(args, "precision", None):
        plan.precision = args.precision
    return plan


def _draw(run, args, num: int, callback=None):
    from .samplers.api import generate

    plan = _plan(run, args)

    from .commands.guidance import conditioning
    from .device import module_device, sampling_batch_size

    kind, shape = run.kind, run.sample_shape
    denoiser, cond = conditioning(run, args, num)
    batch_size = args.batch_size or sampling_batch_size(kind, module_device(denoiser))
    x, nfe = generate(denoiser, num, shape, seed=args.seed, cond=cond, callback=callback,
                      batch_size=batch_size, progress=True, **plan.kwargs())
    return x, nfe, kind, plan


# -- commands -------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from . import pipeline

    out = Path(args.out)
    cfg = pipeline.resolve_train_config(out, args.preset, args.set, args.resume, log=_log)
    if args.dry_run:
        print(cfg.to_json())
        return 0
    from .commands.distributed import launch, make_runtime

    def refuse_existing() -> None:
        if not args.resume and (out / pipeline.CONFIG).exists():
            raise DenoiselabError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")

    if args.launcher != "none":
        refuse_existing()  # before any process starts
        return launch(args)
    runtime = make_runtime(args.device)
    if runtime.is_main:
        refuse_existing()
    runtime.wait()  # the main process looks before any process writes
    data = pipeline.build_data(cfg)
    cfg = pipeline.resolve_config(cfg, data)  # e.g. num_classes -1 -> the data's class count
    trainer = pipeline.make_trainer(cfg, out, data, progress=not args.quiet, runtime=runtime)
    net = trainer.net
    if args.resume:
        if trainer.resume():
            _log(f"resuming {out} at step {trainer.step}")
        else:
            _log(f"{out} holds no checkpoint yet: starting the run")
    from .training.checkpoint import atomic_write

    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / pipeline.CONFIG, lambda tmp: Path(tmp).write_text(cfg.to_json()))
    n_params = sum(p.numel() for p in net.parameters())
    where = f"{runtime.device}" + (f" x {runtime.num_processes} processes" if runtime.num_processes > 1 else "")
    if runtime.is_main:
        _log(f"training {cfg.preset}: {cfg.model.name} ({n_params / 1e6:.2f}M parameters) on {cfg.data.name}, "
             f"{cfg.train.steps} steps, batch {cfg.train.batch_size}, on {where}")
    result = trainer.fit()
    if not runtime.is_main:  # pictures, sweeps and the report: once, by the main process
        return 0
    _log(f"done: step {result['steps']}, loss {result.get('loss', float('nan')):.4f}, "
         f"{result['seconds']:.1f} s; checkpoint {trainer.checkpoint_path}")
    if not args.no_pictures:
        for p in pipeline.run_pictures(out, data, device=runtime.device):
            _log(f"wrote {p}")
        from .commands.guidance import training_sweep

        sweep = training_sweep(out, data, device=runtime.device)
        if sweep is not None:
            _log(f"wrote {sweep}")
    from .viz.report import write_run_report

    _log(f"report: {write_run_report(out)}")
    return 0


def cmd_sample(args) -> int:
    from .pipeline import load_run

    run = load_run(Path(args.run_dir), device=args.device)
    t0 = time.perf_counter()
    x, nfe, kind, plan = _draw(run, args, args.num)
    if not torch.isfinite(x).all():
        raise DenoiselabError("sampling produced NaN or inf: the model may be diverged; retrain with a lower lr")
    _save_array(Path(args.out), x, kind)
    ends = f", {plan.ends()}" if plan.ends() else ""
    _log(f"wrote {args.num} samples to {args.out}: sampler {plan.describe()}, NFE {nfe}{ends}{plan.start_note()}, "
         f"{time.perf_counter() - t0:.1f} s")
    return 0


def _image_reference(ref: str, sample_shape: tuple):
    """--ref for images: a data-set name or an image folder read at the samples' size."""
    from .data import DATASETS, build_dataset

    from .data import TOY_DATASETS

    if ref in TOY_DATASETS:
        raise DenoiselabError(f"the samples are images {tuple(sample_shape)} but --ref {ref} is a 2D point set: "
                              "compare images with an image data set (mnist, digits) or an image folder")
    # A name that is also a path was refused by validate.resolve_data_ref: names first.
    if ref in DATASETS:
        data = build_dataset(ref)
    elif Path(ref).is_dir():
        data = build_dataset("folder", {"path": ref, "image_size": sample_shape[-1], "channels": sample_shape[0]})
    else:
        raise DenoiselabError(f"reference {ref!r} is neither an image data set (mnist, digits, ...) nor a folder")
    if data.kind != "images" or len(data) == 0:
        raise DenoiselabError(f"reference {ref!r} holds no images: name an image data set or a folder of images")
    return data


def _evaluate_images(x: torch.Tensor, args, labels) -> dict:
    from .evaluation.featurenet import default_cache_dir
    from .evaluation.images import domain_extractor, evaluate_images, inception_extractor

    ref = _image_reference(args.ref, tuple(x.shape[1:]))
    from .evaluation.images import check_images

    check_images(x, ref)  # before a feature network is trained for minutes
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    domain = None
    if labels is not None or not args.inception_weights:
        domain = domain_extractor(ref, cache, log=_log, device=args.device)
    extractor = (inception_extractor(Path(args.inception_weights), device=args.device) if args.inception_weights
                 else domain)
    return evaluate_images(x, ref, args.ref, extractor, cache_dir=cache, labels=labels, classifier=domain,
                           bootstrap=args.bootstrap, seed=args.seed, log=_log)


def cmd_evaluate(args) -> int:
    from .evaluation.report import append_metrics, evaluate_points, format_results, write_report

    src = Path(args.samples)
    if src.is_dir():
        from .pipeline import load_run

        run = load_run(src, device=args.device)
        # The run's own sampler, steps and grid unless asked otherwise (pipeline.sampling_plan).
        plan = _plan(run, args)
        _log(f"sampling {args.num} {run.kind} from {src} ({plan.describe()}{plan.start_note()})")
        x, _, kind, _ = _draw(run, args, args.num)
    elif src.suffix == ".npy" and src.is_file():
        from .validate import load_npy

        x = torch.from_numpy(load_npy(src, "samples", ndims=(2, 4)).astype(np.float32))
    else:
        raise DenoiselabError(f"{src} is neither a run directory nor a .npy file of samples")
    labels = None
    if args.labels:
        from .validate import load_npy

        labels = load_npy(args.labels, "--labels", ndims=(1,), integer=True, value_range=(0, float("inf")))
        if len(labels) != len(x):
            raise DenoiselabError(f"--labels {args.labels} has {len(labels)} class ids for {len(x)} samples: "
                                  "give one per sample")
    elif args.cls is not None:
        labels = np.full(len(x), args.cls)
    elif src.is_dir() and x.ndim == 4:
        from .conditioning import class_labels, load_classifier, num_classes

        # Class-conditional (or classifier-guided) sampling asked for every class in turn: score those labels.
        k = num_classes(load_classifier(args.classifier)) if getattr(args, "classifier", None) else num_classes(run)
        labels = class_labels(len(x), k).numpy() if k else None
    if x.ndim == 2:
        results = evaluate_points(x, args.ref, seed=args.ref_seed)
    elif x.ndim == 4:
        results = _evaluate_images(x, args, labels)
    else:
        raise DenoiselabError(f"samples of shape {tuple(x.shape)}: expected (N, 2) points or (N, C, H, W) images in [-1, 1]")
    for w in results.get("warnings", []):
        _log(f"warning: {w}")
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    if src.is_dir():
        append_metrics(src, {"evaluate": results, "sampler": args.sampler, "steps": args.steps, "grid": args.grid,
                             "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        _log(f"appended to {src / 'metrics.jsonl'}; report {write_report(src)}")
        if (src / "report.html").is_file():  # keep the run's page in step with its metrics
            from .viz.report import write_run_report

            write_run_report(src)
    return 0


def _image_data(target: str | None, image_size: int):
    """A data set by name (mnist, digits, ...) or an image folder by path, for the image plots."""
    from .data import build_dataset

    from .data import DATASETS

    # A name that is also a path was refused by validate.resolve_data_ref: names first.
    if target and target not in DATASETS and Path(target).is_dir():
        data = build_dataset("folder", {"path": target, "image_size": image_size})
    else:
        data = build_dataset(target or "mnist", {}, 2048, 0)
    if data.kind != "images":
        raise DenoiselabError(f"{target!r} is not an image data set: name mnist, digits or an image folder")
    return data


def cmd_plot(args) -> int:
    from .viz import plots

    out = Path(args.out) if args.out else None
    if args.what in ("histogram", "schedule-images"):
        from .schedules import make_schedule
        from .viz import images

        data = _image_data(args.target, args.image_size)
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
        from .commands.guidance import cmd_plot_guidance

        p = cmd_plot_guidance(args, _log)
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
        from .data import load_toy
        from .schedules import make_schedule

        p = plots.plot_forward_points(load_toy(args.target or "swiss-roll", 2048, 0), make_schedule(args.schedule, args.T),
                                      out or Path("forward.png"))
    else:  # argparse restricts choices
        raise DenoiselabError(f"unknown plot {args.what!r}")
    _log(f"wrote {p}")
    return 0


def cmd_animate(args) -> int:
    from .pipeline import load_run, reverse_gif

    if args.run_dir == "forward":
        from .schedules import make_schedule
        from .viz.images import gif_forward_images

        data = _image_data(args.data, args.image_size)
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))[:min(args.num, 64)]
        p = gif_forward_images(data.x[idx], make_schedule(args.schedule, args.T), Path(args.out), frames=args.frames,
                               seed=args.seed)
        _log(f"wrote {p}")
        return 0
    from .commands.guidance import conditioning

    run = load_run(Path(args.run_dir), device=args.device)
    plan = _plan(run, args)
    den, cond = conditioning(run, args, args.num)
    p = reverse_gif(run, Path(args.out), seed=args.seed, num=args.num, frames=args.frames, denoiser=den, cond=cond,
                    plan=plan)
    _log(f"wrote {p}")
    return 0


def cmd_benchmark_samplers(args) -> int:
    from . import sampler_benchmark as B
    from .pipeline import load_run
    from .training.checkpoint import atomic_write

    run = load_run(Path(args.run_dir), device=args.device)
    torch.set_num_threads(args.threads) if args.threads else None
    if run.kind == "points":
        scorer, metric = None, "chamfer"
    else:
        from .evaluation.featurenet import default_cache_dir

        scorer, metric = B.image_scorer(run, default_cache_dir(), log=_log), "FID"
    references = {}
    for ref in args.reference:
        label, eq, value = ref.rpartition("=")
        try:
            references[label] = float(value)
        except ValueError:
            eq = ""
        if not eq or not label:
            raise DenoiselabError(f"--reference {ref!r}: write LABEL=NUMBER, e.g. \"ddpm 1000=2.41\"")
    rows = B.run_benchmark(run, samplers=args.samplers, grids=args.grids, nfes=args.nfe, seeds=args.seeds,
                           num=args.num, scorer=scorer, batch_size=args.batch_size, log=_log, start=args.start)
    if not rows:
        raise DenoiselabError("no sampler and grid in the list can run on this model: widen --samplers/--grids")
    table = B.format_table(rows, metric)
    best = B.best_by_nfe(rows)
    summary = "\n".join(f"best within NFE {n}: {r.sampler} on {r.grid} (NFE {r.nfe}), {metric} {r.mean:.3f} +- {r.sd:.3f}"
                         for n, r in sorted(best.items()))
    print(table)
    print()
    print(summary)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samplers"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "samplers.md", lambda tmp: Path(tmp).write_text(table + "\n\n" + summary + "\n"))
    p = B.plot(rows, out / "samplers.png", metric, title=f"{run.config.preset}: {metric} against NFE "
               f"({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}, {args.num} samples each)",
               references=references)
    _log(f"wrote {out / 'samplers.md'} and {p}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


# -- parser ---------------------------------------------------------------------------------

def _add_sampling(p: argparse.ArgumentParser, steps: int | None = None, sampler: str | None = None) -> None:
    from .device import AUTOCAST_MODES
    from .samplers import DEFAULT_STEPS, GRIDS, SAMPLERS, SPACINGS

    own = sampler is None
    p.add_argument("--sampler", default=sampler, choices=sorted(SAMPLERS),
                   help=SAMPLER_HELP + ("; default: the run's own (its preset's measured best, config.sample)"
                                        if own else f"; default {sampler}"))
    named = ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items())
    p.add_argument("--steps", type=int, default=steps,
                   help="solver steps (the output reports the NFE); default: "
                        + (f"the run's stored steps for its own sampler; another --sampler takes its usual count "
                           f"(ddpm the model's T, {named})" if steps is None else str(steps)))
    p.add_argument("--seed", type=int, default=0, help="sample i depends only on (seed, i)")
    p.add_argument("--grid", default=None, choices=list(GRIDS),
                   help="time grid: uniform, quadratic, karras (rho 7), logsnr, logsnr-trailing (logsnr whose last "
                        "step strides to clean data), or a DDPM spacing (leading, trailing, linspace); default: the "
                        "run's stored grid for its own sampler, else leading for ddpm/ddim, logsnr-trailing for the "
                        "other solvers, quadratic for flows")
    p.add_argument("--sigma-min", type=float, default=None,
                   help="karras/logsnr grids: smallest sigma before the final denoising step; logsnr-trailing: where "
                        "a further step would land (default: the data's "
                        "resolution: one pixel level for images, the nearest-neighbour spacing of 2D points)")
    p.add_argument("--sigma-max", type=float, default=None,
                   help="karras/logsnr grids: largest sigma, where sampling starts (default: the largest distance "
                        "between two training samples, Song & Ermon 2020; both ends stored with the run)")
    p.add_argument("--rho", type=float, default=None, help="karras grid: the spacing exponent (default 7)")
    p.add_argument("--spacing", default=None, choices=SPACINGS, help="older name of --grid for the DDPM spacings")
    p.add_argument("--eta", type=float, default=None,
                   help="ddim: stochasticity (default 0; 1 = DDPM posterior); euler-ancestral, dpmpp-2m-sde, dpmpp-3m-sde: "
                        "how much noise each step re-injects (default 1; 0 = the ODE; the dpmpp SDE solvers take any "
                        "eta >= 0)")
    p.add_argument("--eta-low", type=float, default=None,
                   help="dpmpp-2m-sde, dpmpp-3m-sde: the eta of the steps that start at or below --eta-switch "
                        "(default: the run's stored one, else 0)")
    p.add_argument("--eta-switch", type=float, default=None, metavar="SIGMA",
                   help="dpmpp-2m-sde, dpmpp-3m-sde: the noise level at and below which steps use --eta-low "
                        "(0 = --eta everywhere; default: the run's stored one, else 0; mnist at 10 steps: "
                        "--eta-low 8 --eta-switch 3)")
    _add_start(p)
    p.add_argument("--churn", type=float, default=0.0, help="euler/heun: S_churn of Karras et al. 2022 (0 = deterministic)")
    p.add_argument("--variance", choices=["beta_tilde", "beta"], default=None, help="DDPM variance choice")
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per forward pass (memory and speed only; default 256 images on a CPU, else 4096)")
    p.add_argument("--precision", default=None, choices=AUTOCAST_MODES,
                   help="the network's autocast while sampling (the solver stays float32): none, bf16, auto (bf16 "
                        "on a CUDA GPU), fp16 (CUDA only); default: the run's stored one (mnist: bf16, else none)")
    _add_device(p)
    from .commands.guidance import add_sampling_options

    add_sampling_options(p)


def _add_start(p: argparse.ArgumentParser) -> None:
    from .pipeline import START_MODES

    p.add_argument("--start", default="auto", choices=START_MODES,
                   help="where sampling starts: moments (the Gaussian with the noised data's mean and covariance at "
                        "the grid's first point, stored with the run), gaussian (N(0, I)), or auto (default): "
                        "moments for deterministic samplers (ODE solvers carry a mismatched start to their samples), "
                        "gaussian for stochastic ones")


def _add_device(p: argparse.ArgumentParser) -> None:
    from .device import DEVICE_HELP

    if not any("--device" in a.option_strings for a in p._actions):
        p.add_argument("--device", default="auto", help=DEVICE_HELP)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS

    ap = _Parser(prog="denoiselab", description="Train, sample, watch, edit and evaluate diffusion models.")
    ap.add_argument("--version", action="version", version=f"denoiselab {__version__}")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a preset")
    p.add_argument("--preset", default=None, help=f"one of: {', '.join(PRESETS)} (default swiss-roll)")
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
    _add_device(p)
    from .commands.distributed import add_launch_options

    add_launch_options(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("run_dir")
    p.add_argument("--num", type=int, default=2048)
    p.add_argument("--out", required=True, help=".npy (float32, the data's frame) or .png (a picture)")
    _add_sampling(p)
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("evaluate", help="score samples or a run against reference data")
    p.add_argument("samples", help="a .npy file of samples or a run directory (sampled first)")
    p.add_argument("--ref", required=True, help="reference: a data-set name (swiss-roll, mnist, digits, ...), "
                   "an image folder, or a .npy file of 2D points. A name that is also a path here (a run folder "
                   "called mnist) is refused: write data:mnist for the data set, ./mnist for the folder")
    p.add_argument("--ref-seed", type=int, default=10_000, help="seed of the reference draw")
    p.add_argument("--num", type=int, default=2048, help="samples to draw when given a run directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="pytorch-fid's pt_inception-2015-12-05 .pth: FID in the standard Inception space "
                        "(default: the domain feature network, trained once on --ref and cached)")
    p.add_argument("--cache-dir", default=None, help="feature network and reference feature cache "
                   "(default $DENOISELAB_CACHE or ~/.cache/denoiselab)")
    p.add_argument("--labels", default=None, metavar="NPY",
                   help="intended class of each sample (.npy of ints): adds the conditional accuracy")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap resamples for the intervals (0: none)")
    _add_sampling(p)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("plot", help="plots: schedules, loss, forward, histogram, schedule-images, guidance")
    p.add_argument("what", choices=["schedules", "loss", "forward", "histogram", "schedule-images", "guidance"])
    p.add_argument("target", nargs="?", help="run directory (loss, guidance), data set (forward) or image data set / "
                   "image folder (histogram, schedule-images; default mnist)")
    p.add_argument("--image-size", type=int, default=64, help="side of images read from a folder")
    p.add_argument("--out", default=None)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--schedule", default="linear")
    from .commands.guidance import add_plot_options

    add_plot_options(p)
    _add_device(p)
    p.set_defaults(fn=cmd_plot)

    p = sub.add_parser("animate", help="GIF of the reverse process of a trained run, or `animate forward`")
    p.add_argument("run_dir", help="a run directory (reverse process), or the word forward (forward process of --data)")
    p.add_argument("--data", default="mnist", help="animate forward: image data set name or image folder")
    p.add_argument("--image-size", type=int, default=64, help="animate forward: side of images read from a folder")
    p.add_argument("--schedule", default="linear", help="animate forward: noise schedule")
    p.add_argument("--T", type=int, default=1000, help="animate forward: number of steps")
    p.add_argument("--out", required=True, help="output .gif")
    p.add_argument("--num", type=int, default=1024)
    p.add_argument("--frames", type=int, default=50, help="frames recorded along the trajectory")
    _add_sampling(p)
    p.set_defaults(fn=cmd_animate)

    from .sampler_benchmark import DEFAULT_GRIDS, DEFAULT_NFES, DEFAULT_SAMPLERS

    p = sub.add_parser("benchmark-samplers", help="table and plot of sample quality against NFE for every sampler and grid")
    p.add_argument("run_dir")
    p.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS), metavar="NAME",
                   help="sampler names, or NAME:KEY=NUMBER for an option, e.g. dpmpp-2m-sde:eta=2")
    p.add_argument("--grids", nargs="+", default=list(DEFAULT_GRIDS), metavar="GRID",
                   help="grid names, or NAME:SIGMA_MIN:SIGMA_MAX for a karras/logsnr grid with narrowed ends")
    p.add_argument("--nfe", nargs="+", type=int, default=list(DEFAULT_NFES), help="evaluation budgets")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="sampling seeds (scores are averaged)")
    p.add_argument("--num", type=int, default=2048, help="samples per seed")
    p.add_argument("--batch-size", type=int, default=0, help="samples per forward pass (memory only)")
    _add_start(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    _add_device(p)
    p.add_argument("--out", default=None, help="directory for samplers.md and samplers.png (default RUN_DIR/samplers)")
    p.add_argument("--reference", action="append", default=[], metavar="LABEL=VALUE",
                   help="a horizontal line on the plot, e.g. \"ddpm 1000=2.41\" (repeatable)")
    p.set_defaults(fn=cmd_benchmark_samplers)

    from .commands import edit as edit_commands

    edit_commands.add_parser(sub)

    p = sub.add_parser("demo", help="train and evaluate the default models, write pictures and numbers")
    p.add_argument("--out", default="demo-output")
    p.add_argument("--quick", action="store_true", help="a short run for smoke tests")
    p.set_defaults(fn=cmd_demo)

    from .commands import report as report_cmd

    report_cmd.add_parser(sub)
    return ap


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # A warning (a skipped unreadable image, ...) is one line on stderr, like an error.
    return f"denoiselab: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    ap = build_parser()
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `--launcher` hands on to the launched processes
    if not getattr(args, "fn", None):
        ap.print_help()
        return 0
    format_before, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        from .validate import check_args

        check_args(args)  # every argument, before any work starts
        if hasattr(args, "device"):
            from .device import enable_fast_math, resolve_device

            # The one place the device is decided; everything below is handed it.
            args.device = resolve_device(args.device)
            enable_fast_math(args.device)
        return args.fn(args) or 0
    except DenoiselabError as e:
        print(f"denoiselab: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("denoiselab: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = format_before


if __name__ == "__main__":
    sys.exit(main())
