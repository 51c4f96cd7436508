"""Every argument checked before any work starts: one clear line per problem, never a traceback.

``check_args(args)`` runs before a command does anything. Its rules come from two tables, so a
new command is covered by naming its arguments the way the others do:
- ``COMMON``: rules by argument name for every command (``num`` > 0, ``steps`` > 0, ``seed``
  >= 0, every float finite, ``out`` writable, ``run_dir`` a run directory, ...);
- ``COMMANDS``: what is special to one command (which output suffixes it writes, which counts
  may be 0 because 0 means "the default", which inputs must exist).

Also here: the one rule that tells a data-set name from a path (``resolve_data_ref``). A user's
``.npy`` is read by ``io.load_npy`` alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import DenoiselabError
from ..io import existing_file

DATA_PREFIX = "data:"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def positive(name: str, value, allow_zero: bool = False, zero_means: str = "") -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        need = ">= 0" + (f" ({zero_means})" if zero_means else "") if allow_zero else "> 0"
        raise DenoiselabError(f"{_flag(name)} must be {need}, got {value}")


def finite(name: str, value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise DenoiselabError(f"{_flag(name)} must be a finite number, got {value}")


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_dir(path, what: str) -> Path:
    """A directory that exists and is writable, or can be created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DenoiselabError(f"{what} {p} exists and is not a directory: choose another path")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise DenoiselabError(f"{what} {p} cannot be created: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise DenoiselabError(f"{what} {p} is not writable ({base} does not allow writing): choose another path")
    return p


def output_file(path, suffixes: tuple[str, ...], what: str = "--out") -> Path:
    """An output file: a known suffix, not a directory, in a directory that is (or can be made) writable."""
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise DenoiselabError(f"{what} {p}: unknown output type {p.suffix or '(none)'!r}, use "
                              f"{' or '.join(suffixes)}")
    if p.is_dir():
        raise DenoiselabError(f"{what} {p} is a directory: name a file, e.g. {p / ('out' + (suffixes or ('.png',))[0])}")
    if p.exists() and not os.access(p, os.W_OK):
        raise DenoiselabError(f"{what} {p} exists and is not writable: choose another path")
    writable_dir(p.parent if str(p.parent) else Path("."), f"the folder of {what}")
    return p


def run_dir(path, what: str = "run directory") -> Path:
    """A directory made by ``denoiselab train`` that holds a checkpoint, or a diffusers folder."""
    from ..runs import CONFIG
    from ..runs.diffusers_io import is_diffusers_folder
    from ..training.checkpoint import candidates

    p = Path(path)
    if not p.exists():
        raise DenoiselabError(f"{what} not found: {p} (train one with `denoiselab train --preset NAME --out {p}`)")
    if not p.is_dir():
        raise DenoiselabError(f"{what} {p} is not a directory: pass the folder `denoiselab train --out` wrote")
    if is_diffusers_folder(p):
        return p  # read as a run by runs.load_run, which checks it
    if not (p / CONFIG).is_file():
        raise DenoiselabError(f"{p} has no {CONFIG}: is it a run directory made by `denoiselab train`?")
    if not candidates(p):
        raise DenoiselabError(f"{p} has no checkpoint yet: train it (or resume it with "
                              f"`denoiselab train --out {p} --resume`)")
    return p


def resolve_data_ref(text: str, what: str = "--ref", kinds: Optional[set] = None) -> tuple[str, str]:
    """("data", NAME) or ("path", PATH) for an argument that takes either a data-set name or a path.

    A word that names both a data set and an existing path in the working directory (``mnist``
    beside a run folder ``mnist/``) is an error naming both readings: ``data:mnist`` is always the
    data set, and a path with a slash (``./mnist``) or a file suffix always the path.
    """
    from ..data import DATASETS

    names = ", ".join(n for n in DATASETS if n not in ("folder", "idx", "cifar10"))
    if text.startswith(DATA_PREFIX):
        name = text[len(DATA_PREFIX):]
        if name not in DATASETS or name in ("folder", "idx", "cifar10"):
            raise DenoiselabError(f"{what} {text}: unknown data set {name!r}, choose one of {names}")
        return "data", name
    looks_like_path = os.sep in text or "/" in text or text.startswith(".") or Path(text).suffix != ""
    if text in DATASETS and not looks_like_path:
        if Path(text).exists():
            raise DenoiselabError(
                f"{what} {text} is ambiguous: it names the data set {text!r} and the path ./{text}; "
                f"write {what} {DATA_PREFIX}{text} for the data set or {what} ./{text} for the path")
        return "data", text
    p = Path(text)
    if not p.exists():
        raise DenoiselabError(f"{what} {text} is neither a data set ({names}) nor an existing path")
    return "path", str(p)


# Counts: (must be > 0) unless the command lists the name in its "zero_ok".
POSITIVE = ("num", "steps", "frames", "batch_size", "T", "image_size", "nfe", "num_batches", "rho", "sigma_min",
            "sigma_max")


NON_NEGATIVE = ("seed", "seeds", "ref_seed", "bootstrap", "threads", "eta", "eta_low", "eta_switch", "churn")


# Default output suffixes by command (a command not listed only needs a writable folder).
IMAGE_OUT = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def _check_counts(args, zero_ok: dict[str, str]) -> None:
    for name in POSITIVE + NON_NEGATIVE:
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                finite(name, v)
                positive(name, v, allow_zero=name in NON_NEGATIVE or name in zero_ok, zero_means=zero_ok.get(name, ""))
    for name, value in vars(args).items():
        if isinstance(value, float):
            finite(name, value)
    lo, hi = getattr(args, "sigma_min", None), getattr(args, "sigma_max", None)
    if lo is not None and hi is not None and lo >= hi:
        raise DenoiselabError(f"--sigma-min {lo} must be below --sigma-max {hi}")


def _check_train(args) -> None:
    from ..presets import get_preset

    if args.preset is not None:
        get_preset(args.preset)  # a shipped name, or a user's .toml file that loads: else its one-line error
    writable_dir(args.out, "--out")
    for item in args.set:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise DenoiselabError(f"--set expects KEY=VALUE, got {item!r} (e.g. --set steps=2000)")


def _check_sample(args) -> None:
    run_dir(args.run_dir)
    output_file(args.out, (".npy", ".png"))


def _check_evaluate(args) -> None:
    src = Path(args.samples)
    if not src.exists():
        raise DenoiselabError(f"samples not found: {src} is neither a run directory nor a .npy file of samples")
    if src.is_dir():
        run_dir(src, "samples")
    else:
        existing_file(src, "samples", (".npy",))
    kind, value = resolve_data_ref(args.ref, "--ref")
    args.ref = value  # unambiguous from here on: a data-set name, or a path that is not one
    if kind == "path" and Path(value).is_file() and Path(value).suffix.lower() != ".npy":
        raise DenoiselabError(f"--ref {value} is a file but not .npy: pass a .npy of points, an image folder "
                              "or a data-set name")
    if src.is_dir():
        from ..data import TOY_DATASETS
        from ..evaluation.report import check_reference
        from ..runs import read_config

        # The run's kind from its config (its data set), so a mismatched --ref fails before sampling.
        check_reference("points" if read_config(src).data.name in TOY_DATASETS else "images", value)
    if kind == "path" and Path(value).suffix.lower() == ".npy":
        from ..evaluation.report import read_reference_points

        read_reference_points(value)  # read again after sampling: a bad file fails now, not then
    if args.labels:
        from .evaluate import read_labels

        existing_file(args.labels, "--labels", (".npy",))
        n = len(read_labels(args.labels))
        if src.is_dir() and n != args.num:
            raise DenoiselabError(f"--labels {args.labels} has {n} class ids for --num {args.num} samples: "
                                  "give one per sample")
    if args.inception_weights:
        existing_file(args.inception_weights, "--inception-weights")
    if args.cache_dir:
        writable_dir(args.cache_dir, "--cache-dir")


def _check_plot(args) -> None:
    if args.out:
        output_file(args.out, IMAGE_OUT)
    if args.what == "loss":
        if not args.target:
            raise DenoiselabError("plot loss needs a run directory: denoiselab plot loss RUN_DIR")
        if not (Path(args.target) / "metrics.jsonl").is_file():
            raise DenoiselabError(f"{Path(args.target) / 'metrics.jsonl'} not found: is {args.target} a run directory?")
        if not args.out:
            output_file(Path(args.target) / "loss.png", IMAGE_OUT)
    elif args.what in ("histogram", "schedule-images") and args.target:
        kind, value = resolve_data_ref(args.target, "target")
        args.target = value
    elif args.what == "guidance":
        if not args.target:
            raise DenoiselabError("plot guidance needs a run directory: denoiselab plot guidance RUN_DIR")
        run_dir(args.target)
    elif args.what == "forward" and args.target:
        from ..data import TOY_DATASETS

        if args.target not in TOY_DATASETS:
            raise DenoiselabError(f"plot forward: unknown 2D data set {args.target!r}, choose one of "
                                  f"{', '.join(TOY_DATASETS)}")
    if hasattr(args, "schedule"):
        _check_schedule(args.schedule)


def _check_schedule(name: str) -> None:
    from ..schedules import SCHEDULES

    if name not in SCHEDULES:
        raise DenoiselabError(f"--schedule {name!r}: choose one of {', '.join(SCHEDULES)}")


def _check_animate(args) -> None:
    output_file(args.out, (".gif",))
    if args.run_dir == "forward":
        kind, value = resolve_data_ref(args.data, "--data")
        args.data = value
        _check_schedule(args.schedule)
    else:
        run_dir(args.run_dir)


def _check_benchmark_samplers(args) -> None:
    run_dir(args.run_dir)
    if args.out:
        writable_dir(args.out, "--out")


def _check_edit(args) -> None:
    run_dir(args.run_dir)
    output_file(args.out, (".npy", ".png"))
    for path in getattr(args, "input", None) or []:
        existing_file(path, "--input")
    for flag in ("mask", "noise"):
        if getattr(args, flag, None):
            existing_file(getattr(args, flag), f"--{flag}")
    for s in getattr(args, "strength", None) or []:
        if not 0 <= s <= 1:
            raise DenoiselabError(f"--strength {s} is outside [0, 1] (0 = the input, 1 = pure noise)")
    for s in getattr(args, "levels", None) or []:
        if not 0 < s <= 1:
            raise DenoiselabError(f"--levels must be fractions in (0, 1] of the 1000 steps, got {s}")
    for flag in ("jump_length", "jump_count", "fixed_point_iters"):
        positive(flag, getattr(args, flag, None))


def _check_report(args) -> None:
    p = Path(args.path)
    if not p.is_dir():
        raise DenoiselabError(f"report: {p} is not a directory: pass a run directory or a folder of runs")
    if args.out:
        output_file(args.out, (".html",))
    else:
        output_file(p / "report.html", (".html",))


def _check_demo(args) -> None:
    writable_dir(args.out, "--out")


# name -> (check, counts that may be 0 and what 0 means)
COMMANDS: dict[str, tuple[Callable[[Any], None], dict[str, str]]] = {
    "train": (_check_train, {}),
    "sample": (_check_sample, {}),
    "evaluate": (_check_evaluate, {"steps": "0: the default for the run"}),
    "plot": (_check_plot, {}),
    "animate": (_check_animate, {}),
    "benchmark-samplers": (_check_benchmark_samplers, {"batch_size": "0: automatic"}),
    "demo": (_check_demo, {}),
    "edit": (_check_edit, {}),
    "report": (_check_report, {}),
}


def _check_guidance(args) -> None:
    """A guidance scale w < 0 would steer away from the condition: refused, as no recipe uses it."""
    for name in ("guidance", "scales"):
        value = getattr(args, name, None)
        for w in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(w, (int, float)) and w < 0:
                raise DenoiselabError(f"{_flag(name)} {w:g} is negative: give a guidance scale >= 0 (0 = unconditional, "
                                      "1 = the conditional model, > 1 stronger adherence to the condition)")


def check_args(args) -> None:
    """Check a parsed command line before the command starts; raises DenoiselabError."""
    check, zero_ok = COMMANDS.get(getattr(args, "cmd", None) or "", (None, {}))
    _check_counts(args, zero_ok)
    _check_guidance(args)
    if isinstance(getattr(args, "classifier", None), str):
        run_dir(args.classifier, "--classifier")
    if check is not None:
        check(args)
        return
    # A command without its own entry: the rules every command shares.
    if isinstance(getattr(args, "run_dir", None), str):
        run_dir(args.run_dir)
    if isinstance(getattr(args, "out", None), str):
        writable_dir(Path(args.out).parent if Path(args.out).suffix else Path(args.out), "--out")
