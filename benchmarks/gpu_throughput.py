"""Training and sampling throughput of our UNets against diffusers' UNet2DModel with the same
layout (widths, blocks per level, attention sides, groups), on one device, in fp32, bf16
autocast and bf16 autocast + torch.compile: the table of issue 12, with ratios from one run.

Both sides get what our trainer gives a network on that device: TF32 and channels_last on
CUDA, fused Adam, the same batch. Rounds are interleaved (A, B, A, B, ...) so a busy machine
slows both alike; the median round is reported. Training = forward, MSE, backward, Adam step;
sampling = one no-grad forward (a sampler step's network call).

    python benchmarks/gpu_throughput.py                                  # GPU: mnist (128), afhq64 (64)
    python benchmarks/gpu_throughput.py --device cpu --configs mnist --batch 8 --modes fp32 bf16 \
        --rounds 1 --steps 1                                             # CPU smoke run
    python benchmarks/gpu_throughput.py --write-results                  # the table into docs/results/gpu.md

diffusers is a benchmark-only dependency: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoiselab.device import autocast, enable_fast_math, place, resolve_device
from denoiselab.models import build_model
from denoiselab.presets import get_preset
from results import add_write_flag, markdown_table, write_table  # noqa: E402
from unet_throughput import DiffusersAdapter, diffusers_twin, n_params  # noqa: E402

# preset -> the batch issue 12 measures it at
CONFIGS = {"mnist": 128, "afhq64": 64, "ddpm128": 6}
MODES = ("fp32", "bf16", "bf16+compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_steps(net: torch.nn.Module, batch: int, shape: tuple, device: torch.device, mode: str):
    """(train_step, sample_step) closures on fixed device-resident tensors."""
    dtype = torch.bfloat16 if mode.startswith("bf16") else None
    fn = torch.compile(net) if mode.endswith("compile") else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).float().to(device)
    target = torch.randn(x.shape, generator=g).to(device)

    def train_step():
        with autocast(device, dtype):
            out = fn(x, t)
        loss = F.mse_loss(out.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def sample_step():
        with autocast(device, dtype):
            fn(x, t)

    return train_step, sample_step


def time_rounds(fns: dict, rounds: int, steps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each closure, rounds interleaved."""
    for f in fns.values():  # warm-up: compilation, cuDNN autotuning, allocator
        f()
        f()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            sync(device)
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--configs", nargs="+", default=["mnist", "afhq64"], choices=list(CONFIGS))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--batch", type=int, default=0, help="one batch for every config (default: issue 12's)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="calls per timed round")
    ap.add_argument("--threads", type=int, default=0, help="CPU: torch threads (0 = torch's default)")
    add_write_flag(ap)
    args = ap.parse_args()
    device = resolve_device(args.device)
    enable_fast_math(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device {device} ({name}), torch {torch.__version__}; median of {args.rounds} rounds x {args.steps} calls")
    rows = []
    for cfg_name in args.configs:
        opts = {k: v for k, v in get_preset(cfg_name).model.options.items() if k not in ("num_classes", "cond_dim")}
        size, ch = opts.get("image_size", 32), opts.get("in_channels", 3)
        batch = args.batch or CONFIGS[cfg_name]
        ours_p = n_params(build_model("unet", **opts))
        theirs_p = n_params(diffusers_twin(opts, size))
        print(f"{cfg_name}: ours {ours_p / 1e6:.2f}M params, diffusers twin {theirs_p / 1e6:.2f}M "
              f"({100 * (theirs_p / ours_p - 1):+.1f}%), batch {batch}, {ch}x{size}x{size}", flush=True)
        for mode in args.modes:
            torch.manual_seed(0)
            ours = place(build_model("unet", **opts), device)
            theirs = DiffusersAdapter(diffusers_twin(opts, size)).to(device)
            if device.type == "cuda":
                theirs.to(memory_format=torch.channels_last)
            fns = {}
            for who, net in (("diffusers", theirs), ("ours", ours)):
                tr, sm = make_steps(net, batch, (ch, size, size), device, mode)
                fns[(who, "train")], fns[(who, "sample")] = tr, sm
            try:
                med = time_rounds(fns, args.rounds, args.steps, device)
            except Exception as e:  # noqa: BLE001 - a mode this machine lacks (compile without a compiler): a row saying so
                print(f"  {mode}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                continue
            for what in ("train", "sample"):
                d, o = batch / med[("diffusers", what)], batch / med[("ours", what)]
                rows.append((cfg_name, batch, what, mode, d, o))
            del ours, theirs, fns
            if device.type == "cuda":
                torch.cuda.empty_cache()
    table = markdown_table(["config (batch)", "what", "mode", "diffusers img/s", "ours img/s", "ours / diffusers"],
                           [[f"`{cfg_name}` net ({batch})", what, mode, f"{d:.0f}", f"{o:.0f}", f"{o / d:.2f}x"]
                            for cfg_name, batch, what, mode, d, o in rows])
    print()
    print(table)
    if args.write_results:
        write_table("gpu", "gpu-throughput", f"device {device} ({name}); median of {args.rounds} rounds x {args.steps} "
                    f"calls\n\n{table}")


if __name__ == "__main__":
    main()
