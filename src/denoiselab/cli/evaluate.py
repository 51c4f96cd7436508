"""`denoiselab evaluate` and `denoiselab benchmark-samplers`: metrics with their floors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import DenoiselabError
from ..io import log
from ..runs.sampler_sweep import SWEEP_GRIDS, SWEEP_NFES, SWEEP_SAMPLERS
from .common import add_device, add_sampling, add_start, draw, plan_from_args, plural


def _image_reference(ref: str, sample_shape: tuple):
    """--ref for images: a data-set name or an image folder read at the samples' size."""
    from ..data import DATASETS, SIZED
    from ..evaluation.report import check_reference
    from ..runs import open_dataset

    check_reference("images", ref, tuple(sample_shape))
    # A name that is also a path was refused by checks.resolve_data_ref: names first.
    if ref in DATASETS:
        data = open_dataset(ref, {"image_size": sample_shape[-1]} if ref in SIZED else None)
    elif Path(ref).is_dir():
        data = open_dataset("folder", {"path": ref, "image_size": sample_shape[-1], "channels": sample_shape[0]})
    else:
        raise DenoiselabError(f"reference {ref!r} is neither an image data set (mnist, digits, ...) nor a folder")
    if data.kind != "images" or len(data) == 0:
        raise DenoiselabError(f"reference {ref!r} holds no images: name an image data set or a folder of images")
    return data


def _evaluate_images(x: torch.Tensor, args, labels) -> dict:
    from ..evaluation.images import domain_extractor, evaluate_images, inception_extractor
    from ..io import cache_folder

    ref = _image_reference(args.ref, tuple(x.shape[1:]))
    from ..evaluation.images import check_images

    check_images(x, ref)  # before a feature network is trained for minutes
    cache = Path(args.cache_dir) if args.cache_dir else cache_folder()
    domain = None
    if labels is not None or not args.inception_weights:
        domain = domain_extractor(ref, cache, log=log, device=args.device)
    extractor = (
        inception_extractor(Path(args.inception_weights), device=args.device) if args.inception_weights else domain
    )
    return evaluate_images(x, ref, args.ref, extractor, cache_dir=cache, labels=labels, classifier=domain,
                           bootstrap=args.bootstrap, seed=args.seed, log=log)


def read_labels(path) -> np.ndarray:
    """--labels: one class id (an integer >= 0) per sample."""
    from ..io import load_npy

    return load_npy(path, "--labels", ndims=(1,), integer=True, value_range=(0, float("inf")))


def samples_of(args):
    """(samples, the run they were drawn from or None): a run directory is sampled as it stores it
    (runs.sampling_plan) unless the flags say otherwise; a .npy is read as it is."""
    src = Path(args.samples)
    if src.is_dir():
        from ..runs import load_run

        run = load_run(src, device=args.device)
        args.class_weights = reference_class_counts(args, run)
        plan = plan_from_args(run, args)
        log(f"sampling {args.num} {run.kind} from {src} ({plan.describe()}{plan.start_note()})")
        x, _, _, _ = draw(run, args, args.num)
        return x, run
    if src.suffix == ".npy" and src.is_file():
        from ..io import load_npy

        return torch.from_numpy(load_npy(src, "samples", ndims=(2, 4)).astype(np.float32)), None
    raise DenoiselabError(f"{src} is neither a run directory nor a .npy file of samples")


def labels_of(args, x, run):
    """The class each sample was asked for: --labels, --class, or, for a class-conditional (or
    classifier-guided) run's images, every class in turn in the reference's proportions
    (``reference_class_counts``); None when there is none."""
    if args.labels:
        labels = read_labels(args.labels)
        if len(labels) != len(x):
            raise DenoiselabError(
                f"--labels {args.labels} has {len(labels)} class ids for {len(x)} samples: give one per sample"
            )
        return labels
    if args.cls is not None:
        return np.full(len(x), args.cls)
    if run is not None and x.ndim == 4:
        from ..runs import class_labels

        k = asked_classes(args, run)
        return class_labels(len(x), k, weights=getattr(args, "class_weights", None)).numpy() if k else None
    return None


def asked_classes(args, run) -> int:
    """How many classes the samples are asked for: the guiding classifier's, else the run's (0: none)."""
    from ..runs import load_classifier, num_classes

    return num_classes(load_classifier(args.classifier)) if getattr(args, "classifier", None) else num_classes(run)


def reference_class_counts(args, run) -> list[int] | None:
    """How many images of each class the reference holds, when the run draws every class in turn
    (no --class) and the reference is labelled with the run's classes: FID compares the samples
    with the reference, so they are drawn in its proportions (equal counts give the usual cycle)."""
    if args.cls is not None or args.labels or run.kind != "images":
        return None
    k = asked_classes(args, run)
    if not k:
        return None
    ref = _image_reference(args.ref, tuple(run.image_shape))  # a latent run is scored on its decoded images
    if ref.y is None or ref.num_classes != k:
        return None
    counts = torch.bincount(ref.y.long(), minlength=k).tolist()
    if len(set(counts)) > 1:
        log(f"drawing the {k} classes in the proportions of {args.ref} ({', '.join(map(str, counts))} images)")
    return counts


def is_autoencoder_run(path: Path) -> bool:
    from ..runs import CONFIG, read_config

    return (path / CONFIG).is_file() and read_config(path).diffusion.kind == "autoencoder"


def evaluate_autoencoder(args) -> dict:
    """An autoencoder run: PSNR, SSIM and reconstruction FID of the reference's held-out images (its
    own held-out split where it has one, as emoji), up to --num of them."""
    from ..evaluation.images import domain_extractor
    from ..evaluation.reconstruction import evaluate_reconstruction
    from ..io import cache_folder
    from ..runs import load_run

    run = load_run(Path(args.samples), device=args.device)
    ref = _image_reference(args.ref, run.sample_shape)
    held = getattr(ref, "heldout", None)
    images, split = (held.x, "held-out") if held is not None and len(held) else (ref.x, "reference")
    if tuple(images.shape[1:]) != tuple(run.sample_shape):
        raise DenoiselabError(f"{args.ref} holds {tuple(images.shape[1:])} images but {args.samples} encodes "
                              f"{tuple(run.sample_shape)} ones: evaluate it against the data it was trained on "
                              f"(--ref data:{run.config.data.name})")
    cache = Path(args.cache_dir) if args.cache_dir else cache_folder()
    extractor = domain_extractor(ref, cache, log=log, device=args.device)
    log(f"reconstructing {min(args.num, len(images))} {split} images of {args.ref} through {args.samples}")
    return evaluate_reconstruction(run.net, images[:args.num], args.ref, extractor, split=split)


def cmd_evaluate(args) -> int:
    from ..evaluation.report import evaluate_points, format_results

    if Path(args.samples).is_dir() and is_autoencoder_run(Path(args.samples)):
        from ..evaluation.reconstruction import format_reconstruction

        results = evaluate_autoencoder(args)
        print(json.dumps(results, indent=2) if args.json else format_reconstruction(results))
        return record_evaluation(args, results)
    x, run = samples_of(args)
    labels = labels_of(args, x, run)
    if x.ndim == 2:
        results = evaluate_points(x, args.ref, seed=args.ref_seed)
    elif x.ndim == 4:
        results = _evaluate_images(x, args, labels)
    else:
        raise DenoiselabError(
            f"samples of shape {tuple(x.shape)}: expected (N, 2) points or (N, C, H, W) images in [-1, 1]"
        )
    for w in results.get("warnings", []):
        log(f"warning: {w}")
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return record_evaluation(args, results) if run is not None else 0


def record_evaluation(args, results: dict) -> int:
    """Append a run's evaluation to its metrics.jsonl and refresh its evaluation.md and page."""
    from ..evaluation.report import append_metrics, write_metrics_report

    src = Path(args.samples)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    record = {"evaluate": results, "sampler": args.sampler, "steps": args.steps, "grid": args.grid, "time": when}
    append_metrics(src, record)
    log(f"appended to {src / 'metrics.jsonl'}; report {write_metrics_report(src)}")
    if (src / "report.html").is_file():  # keep the run's page in step with its metrics
        from ..viz.report import write_run_report

        write_run_report(src)
    return 0


def cmd_benchmark_samplers(args) -> int:
    from ..io import atomic_write
    from ..runs import load_run
    from ..runs import sampler_sweep as B

    run = load_run(Path(args.run_dir), device=args.device)
    torch.set_num_threads(args.threads) if args.threads else None
    if run.kind == "points":
        scorer, metric = None, "chamfer"
    else:
        from ..io import cache_folder

        scorer, metric = B.image_scorer(run, cache_folder(), log=log), "FID"
    references = {}
    for ref in args.reference:
        label, eq, value = ref.rpartition("=")
        try:
            references[label] = float(value)
        except ValueError:
            eq = ""
        if not eq or not label:
            raise DenoiselabError(f'--reference {ref!r}: write LABEL=NUMBER, e.g. "ddpm 1000=2.41"')
    rows = B.run_benchmark(run, samplers=args.samplers, grids=args.grids, nfes=args.nfe, seeds=args.seeds, num=args.num,
                           scorer=scorer, batch_size=args.batch_size, log=log, start=args.start)
    if not rows:
        raise DenoiselabError("no sampler and grid in the list can run on this model: widen --samplers/--grids")
    table = B.format_table(rows, metric)
    best = B.best_by_nfe(rows)
    summary = "\n".join(
        f"best within NFE {n}: {r.sampler} on {r.grid} (NFE {r.nfe}), {metric} {r.mean:.3f} +- {r.sd:.3f}"
        for n, r in sorted(best.items())
    )
    print(table)
    print()
    print(summary)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samplers"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "samplers.md", lambda tmp: Path(tmp).write_text(table + "\n\n" + summary + "\n"))
    p = B.plot(
        rows,
        out / "samplers.png",
        metric,
        title=f"{run.config.preset}: {metric} against NFE "
        f"({plural(len(args.seeds), 'seed')}, {plural(args.num, 'sample')} each)",
        references=references,
    )
    log(f"wrote {out / 'samplers.md'} and {p}")
    return 0


def add_parser(sub) -> None:
    add_evaluate_parser(sub)
    add_benchmark_parser(sub)


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score samples or a run against reference data")
    p.add_argument("samples", help="a .npy file of samples or a run directory (sampled first)")
    p.add_argument(
        "--ref",
        required=True,
        help="reference: a data-set name (swiss-roll, mnist, digits, ...), "
        "an image folder, or a .npy file of 2D points. A name that is also a path here (a run folder "
        "called mnist) is refused: write data:mnist for the data set, ./mnist for the folder",
    )
    p.add_argument("--ref-seed", type=int, default=10_000,
                   help="2D data sets: seed of the reference draw (the floor draws with the next seed)")
    p.add_argument("--num", type=int, default=2048, help="samples to draw when given a run directory (default 2048)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument(
        "--inception-weights",
        default=None,
        metavar="PATH",
        help="pytorch-fid's pt_inception-2015-12-05 .pth: FID in the standard Inception space "
        "(default: the domain feature network, trained once on --ref and cached)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="feature network and reference feature cache (default $DENOISELAB_CACHE or ~/.cache/denoiselab)",
    )
    p.add_argument("--labels", default=None, metavar="NPY",
                   help="intended class of each sample (.npy of ints): adds the conditional accuracy")
    p.add_argument("--bootstrap", type=int, default=20, help="bootstrap resamples for the intervals (0: none)")
    add_sampling(p)
    p.set_defaults(fn=cmd_evaluate)


def add_benchmark_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark-samplers", help="table and plot of sample quality against NFE for every sampler and grid"
    )
    p.add_argument("run_dir", help="a run directory made by `denoiselab train`")
    p.add_argument("--samplers", nargs="+", default=list(SWEEP_SAMPLERS), metavar="NAME",
                   help="sampler names, or NAME:KEY=NUMBER for an option, e.g. dpmpp-2m-sde:eta=2")
    p.add_argument("--grids", nargs="+", default=list(SWEEP_GRIDS), metavar="GRID",
                   help="grid names, or NAME:SIGMA_MIN:SIGMA_MAX for a karras/logsnr grid with narrowed ends")
    p.add_argument("--nfe", nargs="+", type=int, default=list(SWEEP_NFES),
                   help="budgets: network evaluations (NFE) per sample; each sampler runs at the steps that fit")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="sampling seeds (scores are averaged)")
    p.add_argument("--num", type=int, default=2048, help="samples per seed")
    p.add_argument("--batch-size", type=int, default=0, help="samples per forward pass (memory only; 0: automatic)")
    add_start(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    add_device(p)
    p.add_argument("--out", default=None, help="directory for samplers.md and samplers.png (default RUN_DIR/samplers)")
    p.add_argument("--reference", action="append", default=[], metavar="LABEL=VALUE",
                   help='a horizontal line on the plot, e.g. "ddpm 1000=2.41" (repeatable)')
    p.set_defaults(fn=cmd_benchmark_samplers)
