"""Never lose a run, never crash on bad input: the three measurements of issue 11.

1. kill -9 at random moments of a short MNIST run (class-conditional UNet with dropout 0.1 and
   label dropout, EMA, warm-up + cosine LR; a checkpoint every few steps): the first kills land
   during start-up, the rest anywhere; after each kill the same `train ... --resume` command runs
   again. Checked: every resume works, the final checkpoint (weights, EMA, optimizer, RNG states)
   is bit-identical to an uninterrupted run's, and no corrupt checkpoint is left behind.
2. The latest checkpoint truncated, or one bit flipped (in the tensors, in the header): detected,
   the previous whole checkpoint used, the run finishes on the uninterrupted run's bits.
3. Malformed inputs across every command (the table ``CASES``): each must end with exit code
   != 0 and one clear line on stderr, no traceback, no file lost or half-written.

    python benchmarks/reliability.py                 # all three (about 5 minutes on a 2-core CPU)
    python benchmarks/reliability.py --only inputs   # the malformed-input table alone
    python benchmarks/reliability.py --kills 5 --only kill
    python benchmarks/reliability.py --write-results  # all three, the table into docs/results/reliability.md

Adding a case: append ``Case(command, what, argv)`` to ``CASES``; ``{NAME}`` in argv is replaced
by the fixture of that name (see ``make_fixtures``): ``{run}`` a trained 2D run, ``{img}`` an
unconditional image run, ``{cls}`` a class-conditional image run, ``{tmp}`` the sandbox (also
the working directory, which holds a folder named ``mnist``), and the broken files listed there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from denoiselab.training.checkpoint import HISTORY, LATEST, candidates, history, load_checkpoint  # noqa: E402
from results import add_write_flag, markdown_table, write_table  # noqa: E402

# -- 1 and 2: kill -9 and corrupt checkpoints -------------------------------------------------

KILL_STEPS = 48
KILL_RUN = ["--preset", "mnist-class", "--set", f"steps={KILL_STEPS}", "--set", "batch_size=16", "--set", "ckpt_every=3",
            "--set", "log_every=3", "--set", "warmup=5", "--set", "model.dropout=0.1", "--set", "preview_every=0",
            "--set", "threads=1", "--set", "keep_checkpoints=2", "--quiet", "--no-pictures"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def train_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "denoiselab.cli", "train", *KILL_RUN, "--out", str(out), "--resume"]


def all_tensors(out: Path) -> dict:
    ck = load_checkpoint(out / LATEST)
    flat = {f"model.{k}": v for k, v in ck["model"].items()}
    flat.update({f"ema.{k}": v for k, v in (ck["ema"] or {}).items()})
    for idx, st in ck["optimizer"]["state"].items():
        flat.update({f"optim.{idx}.{k}": v for k, v in st.items() if hasattr(v, "shape")})
    flat.update({f"rng.{k}": v for k, v in ck["rng"].items()})
    return {"step": ck["step"], "tensors": flat}


def identical(a: dict, b: dict) -> bool:
    import torch

    return (a["step"] == b["step"] and a["tensors"].keys() == b["tensors"].keys()
            and all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"]))


def corrupt_files(out: Path) -> list[str]:
    """Checkpoint files that fail verification (size, SHA-256), and temp files left behind."""
    bad = []
    for p in candidates(out):
        try:
            load_checkpoint(p)
        except Exception as e:  # noqa: BLE001 - any failure counts
            bad.append(f"{p.name}: {type(e).__name__}")
    return bad


def stale_temps(out: Path) -> list[Path]:
    return [p for d in (out, out / HISTORY) if d.is_dir() for p in d.iterdir() if p.name.endswith(".tmp")]


def kill_benchmark(root: Path, kills: int, seed: int, log) -> dict:
    ref = root / "uninterrupted"
    t0 = time.perf_counter()
    r = subprocess.run(train_argv(ref), env=_env(), capture_output=True, text=True)
    total = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"uninterrupted run failed: {r.stderr.strip().splitlines()[-1]}")
    # Start-up: from launch to the first checkpoint (imports, data, model), measured once more.
    probe = root / "probe"
    t0 = time.perf_counter()
    p = subprocess.Popen(train_argv(probe), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not history(probe) and p.poll() is None:
        time.sleep(0.02)
    startup = time.perf_counter() - t0
    p.kill()
    p.wait()
    train_time = max(total - startup, 1.0)
    log(f"uninterrupted: {total:.1f} s (start-up to first checkpoint {startup:.1f} s)")

    rng = random.Random(seed)
    run = root / "killed"
    rows, n_startup, temps_seen, corrupt_seen, resumed = [], 0, 0, [], 0
    early = max(1, kills // 4)
    window = train_time / max(1, kills - early)
    share = KILL_STEPS / 2 / max(1, kills - early)  # steps a later life should add, on average
    for i in range(kills):
        # The first quarter of the kills land during start-up. Each later life gets past start-up
        # and trains for a random share of the run, half of it over all of them on average, so
        # most later kills land after a checkpoint (often while one is written) and the run is
        # still unfinished at the last kill.
        if i < early:
            at = rng.uniform(0.05, startup)
        else:
            at = startup + rng.uniform(0, window)
        before = max((s for s, _ in history(run)), default=0)
        p = subprocess.Popen(train_argv(run), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(at)
        finished = p.poll() is not None
        if not finished:
            p.kill()  # SIGKILL: no handler runs, no cleanup
        err = p.communicate()[1]
        after = max((s for s, _ in history(run)), default=0)
        resumed += "resuming" in err
        temps = stale_temps(run)
        temps_seen += len(temps)
        bad = corrupt_files(run)
        corrupt_seen += bad
        n_startup += after == before
        # The window is calibrated once, on a machine whose load moves: a life that got well past
        # its share of the run narrows it and one that stalled widens it, so the run stays
        # unfinished at the last kill (measured: a calibration under load let lives 14-20 find
        # the run already finished).
        if i >= early:
            window *= 0.7 if after - before > 2 * share else 1.15 if after == before else 1.0
        rows.append((i + 1, f"{at:5.2f}", before, after, "finished" if finished else "killed", len(temps), len(bad)))
        log(f"kill {i + 1:2d} at {at:5.2f} s: step {before} -> {after}{' (finished first)' if finished else ''}"
            f"{f', {len(temps)} temp file(s)' if temps else ''}{f', CORRUPT {bad}' if bad else ''}")
    r = subprocess.run(train_argv(run), env=_env(), capture_output=True, text=True)
    final_ok = r.returncode == 0
    same = final_ok and identical(all_tensors(ref), all_tensors(run))
    left = corrupt_files(run) + [str(p) for p in stale_temps(run)]
    return {"kills": kills, "killed": sum(r[4] == "killed" for r in rows), "no_progress": n_startup,
            "final_rc": r.returncode, "identical": same, "corrupt_left": left, "corrupt_seen": corrupt_seen,
            "temps_seen": temps_seen, "rows": rows, "ref": ref, "seconds": total}


def _flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ 0x10]))


def corruption_benchmark(root: Path, ref: Path, log) -> list[tuple]:
    """Break the newest checkpoint of a finished run (the public file is a link to it, so both
    names break), then run the same --resume command."""
    import struct

    rows = []
    for mode in ("truncated to half", "truncated by 1 byte", "bit flip in the tensors", "bit flip in the header"):
        d = root / f"broken-{mode.replace(' ', '-')}"
        shutil.copytree(ref, d)
        (d / LATEST).unlink()
        newest = history(d)[0][1]
        os.link(newest, d / LATEST)
        size = newest.stat().st_size
        header = struct.unpack("<Q", newest.read_bytes()[:8])[0]
        if mode == "truncated to half":
            os.truncate(newest, size // 2)
        elif mode == "truncated by 1 byte":
            os.truncate(newest, size - 1)
        elif mode == "bit flip in the tensors":
            _flip_bit(newest, 8 + header + (size - 8 - header) // 2)
        else:
            _flip_bit(newest, 8 + header // 2)
        r = subprocess.run(train_argv(d), env=_env(), capture_output=True, text=True)
        lines = [ln for ln in r.stderr.splitlines() if "corrupt" in ln or "previous" in ln]
        same = r.returncode == 0 and identical(all_tensors(ref), all_tensors(d))
        rows.append((mode, bool(lines), r.returncode, same, lines[0] if lines else r.stderr.strip()[-200:]))
        log(f"{mode}: rc {r.returncode}, identical {same}; {lines[:2]}")
    return rows


# -- 3: malformed inputs ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    command: str
    what: str
    argv: tuple[str, ...]

    def __init__(self, command: str, what: str, argv):
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "what", what)
        object.__setattr__(self, "argv", tuple(argv.split() if isinstance(argv, str) else argv))


S = "sample {run} --num 8 --steps 5 --out {tmp}/o.npy"  # a valid sample command the cases break one part of
CASES: list[Case] = [
    # train
    Case("train", "unknown preset", "train --preset nope --out {tmp}/new"),
    Case("train", "--set without =", "train --out {tmp}/new --set steps"),
    Case("train", "--set with an empty key", "train --out {tmp}/new --set =3"),
    Case("train", "unknown setting", "train --out {tmp}/new --set bogus=1"),
    Case("train", "unknown section", "train --out {tmp}/new --set foo.steps=1"),
    Case("train", "zero steps", "train --out {tmp}/new --set steps=0"),
    Case("train", "negative steps", "train --out {tmp}/new --set steps=-5"),
    Case("train", "steps not a number", "train --out {tmp}/new --set steps=abc"),
    Case("train", "fractional batch size", "train --out {tmp}/new --set batch_size=2.5"),
    Case("train", "zero batch size", "train --out {tmp}/new --set batch_size=0"),
    Case("train", "negative lr", "train --out {tmp}/new --set lr=-1"),
    Case("train", "NaN lr", "train --out {tmp}/new --set lr=nan"),
    Case("train", "infinite lr", "train --out {tmp}/new --set lr=inf"),
    Case("train", "unknown optimizer", "train --out {tmp}/new --set train.optimizer=sgd"),
    Case("train", "unknown lr schedule", "train --out {tmp}/new --set train.lr_schedule=step"),
    Case("train", "unknown data set", "train --out {tmp}/new --set data.name=spiral"),
    Case("train", "unknown model", "train --out {tmp}/new --set model.name=resnet"),
    Case("train", "unknown noise schedule", "train --out {tmp}/new --set diffusion.schedule=exp"),
    Case("train", "beta_end > 1", "train --out {tmp}/new --set diffusion.beta_end=1.5"),
    Case("train", "T = 0", "train --out {tmp}/new --set diffusion.T=0"),
    Case("train", "EMA decay > 1", "train --out {tmp}/new --set train.ema_decay=1.5"),
    Case("train", "keep 0 checkpoints", "train --out {tmp}/new --set train.keep_checkpoints=0"),
    Case("train", "negative seed", "train --out {tmp}/new --set seed=-1"),
    Case("train", "bad adam betas", "train --out {tmp}/new --set train.adam_betas=2"),
    Case("train", "unknown parameterization", "train --out {tmp}/new --set diffusion.parameterization=score"),
    Case("train", "model option not a number", "train --out {tmp}/new --set model.width=abc"),
    Case("train", "unknown model option", "train --out {tmp}/new --set model.bogus=1"),
    Case("train", "option a 2D set does not take", "train --out {tmp}/new --set data.path=/x"),
    Case("train", "--out is a file", "train --out {file}"),
    Case("train", "--out under a file", "train --out {file}/run"),
    Case("train", "existing run without --resume", "train --out {run}"),
    Case("train", "--resume with another preset", "train --preset kaist --out {run} --resume"),
    Case("train", "--resume changing the model", "train --out {run} --resume --set model.width=64"),
    Case("train", "--resume, every checkpoint corrupt", "train --out {run_flip} --resume"),
    Case("train", "--resume, config.json garbage", "train --out {run_badconfig} --resume"),
    Case("train", "image folder that does not exist", "train --preset pokemon --out {tmp}/new --set data.path={tmp}/nope"),
    Case("train", "image folder of corrupt images", "train --preset pokemon --out {tmp}/new --set data.path={imgdir_corrupt}"),
    Case("train", "empty image folder", "train --preset pokemon --out {tmp}/new --set data.path={imgdir_empty}"),
    Case("train", "--steps is not a train flag", "train --out {tmp}/new --steps 5"),
    # sample
    Case("sample", "--num 0", S.replace("--num 8", "--num 0")),
    Case("sample", "negative --num", S.replace("--num 8", "--num -3")),
    Case("sample", "--num not a number", S.replace("--num 8", "--num abc")),
    Case("sample", "--steps 0", S.replace("--steps 5", "--steps 0")),
    Case("sample", "negative --steps", S.replace("--steps 5", "--steps -1")),
    Case("sample", "--out .txt", S.replace("o.npy", "samples.txt")),
    Case("sample", "--out without suffix", S.replace("o.npy", "samples")),
    Case("sample", "--out is a directory", S.replace("{tmp}/o.npy", "{tmp}/adir.npy")),
    Case("sample", "--out under a file", S.replace("{tmp}/o.npy", "{file}/o.npy")),
    Case("sample", "run directory missing", S.replace("{run}", "{tmp}/nope")),
    Case("sample", "run directory is a file", S.replace("{run}", "{file}")),
    Case("sample", "directory without config.json", S.replace("{run}", "{imgdir_empty}")),
    Case("sample", "run without a checkpoint", S.replace("{run}", "{run_nockpt}")),
    Case("sample", "every checkpoint truncated", S.replace("{run}", "{run_trunc}")),
    Case("sample", "every checkpoint bit-flipped", S.replace("{run}", "{run_flip}")),
    Case("sample", "config.json garbage", S.replace("{run}", "{run_badconfig}")),
    Case("sample", "unknown sampler", S + " --sampler ddpm2"),
    Case("sample", "unknown grid", S + " --grid cubic"),
    Case("sample", "negative seed", S + " --seed -1"),
    Case("sample", "NaN eta", S + " --eta nan"),
    Case("sample", "negative eta", S + " --sampler ddim --eta -1"),
    Case("sample", "--batch-size 0", S + " --batch-size 0"),
    Case("sample", "sigma-min above sigma-max", S + " --grid karras --sigma-min 5 --sigma-max 1"),
    Case("sample", "rho 0", S + " --grid karras --rho 0"),
    Case("sample", "--class on an unconditional model", S + " --class 3"),
    Case("sample", "--class out of range", S.replace("{run}", "{cls}").replace("--num 8", "--num 2") + " --class 99"),
    Case("sample", "NaN guidance", S.replace("{run}", "{cls}").replace("--num 8", "--num 2") + " --class 1 --guidance nan"),
    # evaluate
    Case("evaluate", "samples file missing", "evaluate {tmp}/nope.npy --ref swiss-roll"),
    Case("evaluate", "samples not .npy", "evaluate {file} --ref swiss-roll"),
    Case("evaluate", "samples of shape (N, 3)", "evaluate {npy_n3} --ref swiss-roll"),
    Case("evaluate", "samples 1-D", "evaluate {npy_1d} --ref swiss-roll"),
    Case("evaluate", "samples with NaN", "evaluate {npy_nan} --ref swiss-roll"),
    Case("evaluate", "samples with inf", "evaluate {npy_inf} --ref swiss-roll"),
    Case("evaluate", "samples a pickled object array", "evaluate {npy_obj} --ref swiss-roll"),
    Case("evaluate", "samples of strings", "evaluate {npy_str} --ref swiss-roll"),
    Case("evaluate", "samples complex", "evaluate {npy_complex} --ref swiss-roll"),
    Case("evaluate", "samples empty", "evaluate {npy_empty} --ref swiss-roll"),
    Case("evaluate", "samples truncated", "evaluate {npy_trunc} --ref swiss-roll"),
    Case("evaluate", "samples a text file named .npy", "evaluate {npy_text} --ref swiss-roll"),
    Case("evaluate", "samples an .npz named .npy", "evaluate {npy_npz} --ref swiss-roll"),
    Case("evaluate", "unknown --ref", "evaluate {npy_ok} --ref spiral"),
    Case("evaluate", "--ref both a data set and ./mnist", "evaluate {npy_img} --ref mnist"),
    Case("evaluate", "--ref data: with an unknown set", "evaluate {npy_ok} --ref data:spiral"),
    Case("evaluate", "--ref path missing", "evaluate {npy_ok} --ref {tmp}/nope.npy"),
    Case("evaluate", "--ref a text file", "evaluate {npy_ok} --ref {file}"),
    Case("evaluate", "--ref points of shape (N, 3)", "evaluate {npy_ok} --ref {npy_n3}"),
    Case("evaluate", "images against 2D points", "evaluate {npy_img} --ref swiss-roll"),
    Case("evaluate", "image size unlike the reference", "evaluate {npy_img16} --ref data:mnist"),
    Case("evaluate", "--labels missing", "evaluate {npy_img} --ref data:mnist --labels {tmp}/nope.npy"),
    Case("evaluate", "--labels float", "evaluate {npy_img} --ref data:mnist --labels {npy_labels_float}"),
    Case("evaluate", "--labels wrong length", "evaluate {npy_img} --ref data:mnist --labels {npy_labels_short}"),
    Case("evaluate", "--labels negative", "evaluate {npy_img} --ref data:mnist --labels {npy_labels_neg}"),
    Case("evaluate", "--num 0 for a run", "evaluate {run} --ref swiss-roll --num 0"),
    Case("evaluate", "negative --bootstrap", "evaluate {npy_ok} --ref swiss-roll --bootstrap -1"),
    Case("evaluate", "--inception-weights missing", "evaluate {npy_img} --ref data:mnist --inception-weights {tmp}/no.pth"),
    Case("evaluate", "--cache-dir under a file", "evaluate {npy_img} --ref data:mnist --cache-dir {file}/cache"),
    Case("evaluate", "run with corrupt checkpoints", "evaluate {run_trunc} --ref swiss-roll"),
    Case("evaluate", "--ref missing", "evaluate {npy_ok}"),
    # plot
    Case("plot", "unknown plot", "plot histograms"),
    Case("plot", "loss without a run", "plot loss"),
    Case("plot", "loss of a folder without metrics", "plot loss {imgdir_empty}"),
    Case("plot", "--out .txt", "plot schedules --out {tmp}/p.txt"),
    Case("plot", "--T 0", "plot schedules --T 0 --out {tmp}/p.png"),
    Case("plot", "unknown schedule", "plot forward --schedule exp --out {tmp}/p.png"),
    Case("plot", "forward of an unknown 2D set", "plot forward spiral --out {tmp}/p.png"),
    Case("plot", "histogram target both a set and ./mnist", "plot histogram mnist --out {tmp}/p.png"),
    Case("plot", "histogram of a missing folder", "plot histogram {tmp}/nope --out {tmp}/p.png"),
    Case("plot", "--image-size 0", "plot histogram {imgdir_corrupt} --image-size 0 --out {tmp}/p.png"),
    Case("plot", "guidance without a run", "plot guidance --out {tmp}/p.png"),
    Case("plot", "guidance of a missing run", "plot guidance {tmp}/nope --out {tmp}/p.png"),
    # animate
    Case("animate", "--out .png", "animate {run} --out {tmp}/a.png"),
    Case("animate", "--frames 0", "animate {run} --out {tmp}/a.gif --frames 0"),
    Case("animate", "--num 0", "animate {run} --out {tmp}/a.gif --num 0"),
    Case("animate", "--steps 0", "animate {run} --out {tmp}/a.gif --steps 0"),
    Case("animate", "run missing", "animate {tmp}/nope --out {tmp}/a.gif"),
    Case("animate", "forward of an unknown set", "animate forward --data spiral --out {tmp}/a.gif"),
    Case("animate", "forward, --data both a set and ./mnist", "animate forward --data mnist --out {tmp}/a.gif"),
    Case("animate", "forward, unknown schedule", "animate forward --data data:mnist --schedule exp --out {tmp}/a.gif"),
    Case("animate", "forward, --T 0", "animate forward --data data:mnist --T 0 --out {tmp}/a.gif"),
    # benchmark-samplers
    Case("benchmark-samplers", "run missing", "benchmark-samplers {tmp}/nope"),
    Case("benchmark-samplers", "--nfe 0", "benchmark-samplers {run} --nfe 0 --out {tmp}/b"),
    Case("benchmark-samplers", "negative seed", "benchmark-samplers {run} --seeds -1 --out {tmp}/b"),
    Case("benchmark-samplers", "--num 0", "benchmark-samplers {run} --num 0 --out {tmp}/b"),
    Case("benchmark-samplers", "--out a file", "benchmark-samplers {run} --out {file}"),
    Case("benchmark-samplers", "bad --reference", "benchmark-samplers {run} --reference x --out {tmp}/b"),
    # edit (one command family, eight edits)
    Case("edit", "no edit named", "edit {img}"),
    Case("edit", "--input missing", "edit sdedit {img} --out {tmp}/e.npy --input {tmp}/nope.png"),
    Case("edit", "--input a text file", "edit sdedit {img} --out {tmp}/e.npy --input {file}"),
    Case("edit", "--input a corrupt PNG", "edit sdedit {img} --out {tmp}/e.npy --input {imgdir_corrupt}/cls/a.png"),
    Case("edit", "--input .npy of the wrong shape", "edit sdedit {img} --out {tmp}/e.npy --input {npy_1d}"),
    Case("edit", "--input .npy with NaN", "edit sdedit {img} --out {tmp}/e.npy --input {npy_img_nan}"),
    Case("edit", "--strength 1.5", "edit sdedit {img} --out {tmp}/e.npy --input {npy_img} --strength 1.5"),
    Case("edit", "--out .txt", "edit sdedit {img} --out {tmp}/e.txt --input {npy_img}"),
    Case("edit", "a 2D run", "edit sdedit {run} --out {tmp}/e.npy --input {npy_img}"),
    Case("edit", "--levels 0", "edit denoise {img} --out {tmp}/e.npy --input {npy_img} --levels 0"),
    Case("edit", "--mask-box malformed", "edit inpaint {img} --out {tmp}/e.npy --input {npy_img} --mask-box 1,2"),
    Case("edit", "--mask missing", "edit inpaint {img} --out {tmp}/e.npy --input {npy_img} --mask {tmp}/nope.png"),
    Case("edit", "--jump-count 0", "edit inpaint {img} --out {tmp}/e.npy --input {npy_img} --jump-count 0"),
    Case("edit", "--noise of the wrong shape", "edit reconstruct {img} --out {tmp}/e.npy --noise {npy_n3}"),
    Case("edit", "--noise a text file", "edit reconstruct {img} --out {tmp}/e.npy --noise {file}"),
    Case("edit", "interpolate with one input", "edit interpolate {img} --out {tmp}/e.npy --input {npy_img}"),
    Case("edit", "interpolate --frames 0",
         "edit interpolate {img} --out {tmp}/e.npy --input {npy_img} --input {npy_img} --frames 0"),
    Case("edit", "unknown anagram view", "edit anagram {cls} --out {tmp}/e.npy --view sideways"),
    Case("edit", "anagram --num 0", "edit anagram {cls} --out {tmp}/e.npy --num 0"),
    Case("edit", "hybrid of an unconditional run", "edit hybrid {img} --out {tmp}/e.npy --low-class 1 --high-class 7"),
    # report
    Case("report", "missing folder", "report {tmp}/nope"),
    Case("report", "a file", "report {file}"),
    Case("report", "--out .txt", "report {run} --out {tmp}/r.txt"),
    Case("report", "--out under a file", "report {run} --out {file}/r.html"),
    Case("report", "a folder holding no run", "report {imgdir_empty}"),
    # text prompts
    Case("sample", "--prompt to a run without text", S.replace("{run}", "{img}") + " --prompt seven"),
    # demo and the command line itself
    Case("demo", "--out a file", "demo --out {file}"),
    Case("cli", "unknown command", "sampel {run}"),
    Case("cli", "unknown flag", "sample {run} --out {tmp}/o.npy --nmu 3"),
]


def make_fixtures(tmp: Path, log=lambda m: None) -> dict[str, str]:
    """The sandbox every case runs in: small trained runs and broken files of every kind."""
    from denoiselab.cli import main

    tiny2d = ["--set", "data.num=2048", "--set", "model.width=16", "--set", "model.depth=1", "--set", "steps=6",
              "--set", "batch_size=32", "--set", "log_every=3", "--set", "ckpt_every=3", "--quiet", "--no-pictures"]
    tinyimg = ["--set", "steps=2", "--set", "batch_size=4", "--set", "model.ch=8", "--set", "model.groups=4",
               "--set", "log_every=1", "--set", "preview_every=0", "--quiet", "--no-pictures"]
    fx = {"tmp": str(tmp)}
    with contextlib.redirect_stderr(io.StringIO()):
        for name, argv in (("run", ["--preset", "swiss-roll", *tiny2d]), ("img", ["--preset", "mnist", *tinyimg]),
                           ("cls", ["--preset", "mnist-class", *tinyimg])):
            assert main(["train", *argv, "--out", str(tmp / name)]) == 0, name
            fx[name] = str(tmp / name)
    for name in ("run_trunc", "run_flip", "run_badconfig", "run_nockpt"):
        shutil.copytree(tmp / "run", tmp / name)
    for p in candidates(tmp / "run_trunc"):
        os.truncate(p, p.stat().st_size // 2)
    for p in candidates(tmp / "run_flip"):
        _flip_bit(p, p.stat().st_size - 5)
    (tmp / "run_badconfig" / "config.json").write_text("{not json")
    for p in candidates(tmp / "run_nockpt"):
        p.unlink()
    fx.update({k: str(tmp / k) for k in ("run_trunc", "run_flip", "run_badconfig", "run_nockpt")})
    (tmp / "mnist").mkdir()  # a folder named like a data set, as `train --out mnist` makes
    (tmp / "mnist" / "step0000500.png").write_bytes(b"")
    (tmp / "adir.npy").mkdir()
    (tmp / "notes.txt").write_text("not an array\n")
    fx["file"] = str(tmp / "notes.txt")
    arrays = {
        "npy_ok": np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32),
        "npy_n3": np.zeros((10, 3), np.float32),
        "npy_1d": np.zeros(10, np.float32),
        "npy_nan": np.array([[0.0, 1.0], [np.nan, 2.0]] * 8, np.float32),
        "npy_inf": np.array([[0.0, 1.0], [np.inf, 2.0]] * 8, np.float32),
        "npy_str": np.array(["a", "b"]),
        "npy_complex": np.zeros((10, 2), np.complex64),
        "npy_empty": np.zeros((0, 2), np.float32),
        "npy_img": np.zeros((8, 1, 28, 28), np.float32),
        "npy_img16": np.zeros((8, 1, 16, 16), np.float32),
        "npy_img_nan": np.full((2, 1, 28, 28), np.nan, np.float32),
        "npy_labels_float": np.zeros(8, np.float32),
        "npy_labels_short": np.zeros(3, np.int64),
        "npy_labels_neg": -np.ones(8, np.int64),
    }
    for k, a in arrays.items():
        np.save(tmp / f"{k}.npy", a)
        fx[k] = str(tmp / f"{k}.npy")
    np.save(tmp / "npy_obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    fx["npy_obj"] = str(tmp / "npy_obj.npy")
    raw = (tmp / "npy_ok.npy").read_bytes()
    (tmp / "npy_trunc.npy").write_bytes(raw[: len(raw) // 2])
    (tmp / "npy_text.npy").write_text("1,2\n3,4\n")
    np.savez(tmp / "npz_file.npz", a=arrays["npy_ok"])
    shutil.copy(tmp / "npz_file.npz", tmp / "npy_npz.npy")
    fx.update({k: str(tmp / f"{k}.npy") for k in ("npy_trunc", "npy_text", "npy_npz")})
    (tmp / "imgdir_corrupt" / "cls").mkdir(parents=True)
    (tmp / "imgdir_corrupt" / "cls" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp / "imgdir_corrupt" / "cls" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"junk" * 10)
    (tmp / "imgdir_empty").mkdir()
    fx.update({k: str(tmp / k) for k in ("imgdir_corrupt", "imgdir_empty")})
    return fx


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(case: Case, fx: dict[str, str]) -> dict:
    """One malformed input through cli.main in this process; what it printed, its exit code,
    a traceback if one escaped, and every file it created, changed or removed."""
    from denoiselab.cli import main

    argv = [a.format(**fx) for a in case.argv]
    root = Path(fx["tmp"])
    before = _snapshot(root)
    err, out = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is what this counts
            rc, tb = 1, traceback.format_exc()
    after = _snapshot(root)
    changed = sorted(k for k in before if after.get(k) != before[k]) + sorted(k for k in after if k not in before)
    lines = [ln for ln in err.getvalue().replace("\r", "\n").splitlines() if ln.strip()]
    text = tb or err.getvalue()
    one_line = (len(lines) == 1 and ": error:" in lines[0] and "Traceback" not in text)
    return {"case": case, "rc": rc, "lines": lines, "traceback": tb is not None or "Traceback" in text,
            "one_line": one_line, "files": changed, "ok": rc not in (0, None) and one_line and not changed and not tb}


def inputs_benchmark(root: Path, log, cases: list[Case] = CASES) -> list[dict]:
    tmp = root / "sandbox"
    tmp.mkdir()
    fx = make_fixtures(tmp)
    # Fixture files must not count as changed by a case: nothing writes into the sandbox but
    # the cases, and each case must leave it as it found it.
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        results = []
        for c in cases:
            r = run_case(c, fx)
            results.append(r)
            if not r["ok"]:
                log(f"FAIL {c.command} / {c.what}: rc {r['rc']}, {len(r['lines'])} lines, files {r['files']}: "
                    f"{(r['lines'] or ['(nothing)'])[-1][:200]}")
    finally:
        os.chdir(cwd)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["kill", "inputs"], default=None)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--cases", action="store_true", help="print every malformed input with its error line")
    add_write_flag(ap)
    args = ap.parse_args()
    if args.write_results and (args.only or args.kills != ap.get_default("kills")):
        ap.error("--write-results publishes the whole table: run all three parts with 20 kills (no --only, --kills)")
    root = args.keep or Path(tempfile.mkdtemp(prefix="reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    table = []
    if args.only in (None, "kill"):
        k = kill_benchmark(root, args.kills, args.seed, log)
        table.append((f"kill -9 at {k['kills']} random moments of a {KILL_STEPS}-step "
                      f"MNIST run ({k['no_progress']} before any new checkpoint), same command with --resume",
                      f"{k['killed']}/{k['kills']} killed; final run rc {k['final_rc']}; final checkpoint "
                      f"{'bit-identical' if k['identical'] else 'DIFFERENT'}; corrupt checkpoints seen "
                      f"{len(k['corrupt_seen'])}, left {len(k['corrupt_left'])}; temp files seen {k['temps_seen']}"
                      " (removed on resume)"))
        for mode, detected, rc, same, line in corruption_benchmark(root, k["ref"], log):
            table.append((f"latest checkpoint {mode}",
                          f"{'detected' if detected else 'NOT detected'}; run {'finished' if rc == 0 else f'rc {rc}'}; "
                          f"{'bit-identical' if same else 'DIFFERENT'}; `{line.strip()[:110]}`"))
    if args.only in (None, "inputs"):
        res = inputs_benchmark(root, log)
        n = len(res)
        table.append((f"{n} malformed inputs across {len({r['case'].command for r in res})} commands",
                      f"{sum(r['one_line'] and r['rc'] not in (0, None) for r in res)}/{n} one clear line and exit != 0; "
                      f"{sum(r['traceback'] for r in res)} tracebacks; "
                      f"{sum(bool(r['files']) for r in res)} with files created, changed or lost"))
        if args.cases:
            print(markdown_table(["command", "malformed input", "exit", "stderr"],
                                 [[r["case"].command, r["case"].what, r["rc"], (r["lines"] or [""])[-1].replace("|", "/")[:160]]
                                  for r in res]))
            print()
    print(markdown_table(["what", "measured"], table))
    print(f"\nruns in {root}", file=sys.stderr)
    if args.write_results:
        write_table("reliability", "reliability", markdown_table(["what", "measured"], table))


if __name__ == "__main__":
    main()
