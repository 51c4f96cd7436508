"""Training on several processes, GPUs or machines, through Hugging Face Accelerate.

Two ways in, the same run:
- ``accelerate launch [--num_processes N ...] -m denoiselab.cli train ...``: Accelerate's own
  launcher and configuration (``accelerate config`` for multi-node, mixed setups, ...);
- ``denoiselab train --launcher accelerate [--processes N] ...``: the same command, started by
  denoiselab (it runs ``accelerate launch`` with this command line minus ``--launcher``).

Each launched process reads what the launcher put in its environment here, at the face, and
the trainer gets a runtime (``training.runtime``) and never asks how it was started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

from ..errors import DenoiselabError

MISSING = ("Accelerate is not installed: pip install accelerate (or the extra: pip install 'denoiselab[distributed]')")


def add_launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--launcher", choices=["none", "accelerate"], default="none",
                   help="accelerate: start this training under `accelerate launch` (data-parallel over "
                        "--processes processes; GPUs with NCCL, CPUs with gloo; Accelerate's config for several "
                        "machines). The same as running `accelerate launch -m denoiselab.cli train ...`")
    p.add_argument("--processes", type=int, default=0,
                   help="--launcher accelerate: processes on this machine (default: Accelerate's config, else one "
                        "per GPU)")


def world_size() -> int:
    """How many processes the launcher started (1 when none did)."""
    for key in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 1


def make_runtime(device: torch.device):
    """One process: a ``LocalRuntime`` on ``device``. Started by a distributed launcher: an
    ``AccelerateRuntime`` (Accelerate picks each process's GPU, or the CPU with gloo for
    ``--device cpu``)."""
    from ..training.runtime import AccelerateRuntime, LocalRuntime

    if world_size() <= 1:
        return LocalRuntime(device)
    try:
        from accelerate import Accelerator
    except ImportError:
        raise DenoiselabError(f"this process is one of {world_size()} started by a distributed launcher, but "
                              f"{MISSING}") from None
    return AccelerateRuntime(Accelerator(cpu=torch.device(device).type == "cpu"))


def _without_launch_options(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--launcher", "--processes"):
            skip = True
            continue
        if a.startswith(("--launcher=", "--processes=")):
            continue
        out.append(a)
    return out


def launch_command(args) -> list[str]:
    """The ``accelerate launch`` command line that runs this training."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if args.processes:
        cmd += ["--num_processes", str(args.processes), "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no"]
        if args.processes > 1:
            # torchrun-style workers; on the CPU (--device cpu) they meet over gloo.
            cmd += ["--multi_gpu"]
    return cmd + ["-m", "denoiselab.cli", *_without_launch_options(args.argv)]


def launch(args) -> int:
    """``train --launcher accelerate``: run the command under ``accelerate launch``; its exit code."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise DenoiselabError(f"--launcher accelerate: {MISSING}") from None
    if world_size() > 1:
        raise DenoiselabError("--launcher accelerate inside a process that a launcher already started: drop "
                              "--launcher, or run the command outside `accelerate launch`/torchrun")
    return subprocess.run(launch_command(args)).returncode
