"""Training throughput of the default MNIST UNet against diffusers' UNet2DModel with the same
layout and parameter count (+-10%), same batch, timed side by side in one process.

Each candidate runs full training steps (forward, MSE loss, backward, Adam step) on 28x28
batches; rounds are interleaved (A, B, C, A, B, C, ...) so a busy machine slows all of them
alike, and the median round is reported.

    .venv/bin/python benchmarks/unet_throughput.py              # default: batch 128, 2 threads
    .venv/bin/python benchmarks/unet_throughput.py --variants all --rounds 5
    .venv/bin/python benchmarks/unet_throughput.py --variants all --write-results   # docs/results/throughput.md

diffusers is a benchmark-only dependency: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from denoiselab.models import build_model
from denoiselab.presets import get_preset
from results import add_write_flag, markdown_table, write_table


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def diffusers_twin(opts: dict, image_size: int):
    """UNet2DModel with our layout: same widths, blocks per level, attention sides and groups."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        sys.exit("diffusers is not installed: pip install -e '.[bench]' (or pip install diffusers)")
    ch, mults = opts.get("ch", 64), tuple(opts.get("ch_mult", (1, 2, 2)))
    attn = set(opts.get("attn_resolutions", ()))
    res = [image_size // 2 ** i for i in range(len(mults))]
    down = tuple("AttnDownBlock2D" if r in attn else "DownBlock2D" for r in res)
    up = tuple("AttnUpBlock2D" if r in attn else "UpBlock2D" for r in reversed(res))
    return UNet2DModel(sample_size=image_size, in_channels=opts.get("in_channels", 1), out_channels=opts.get("in_channels", 1),
                       layers_per_block=opts.get("num_res_blocks", 2), block_out_channels=tuple(ch * m for m in mults),
                       down_block_types=down, up_block_types=up, norm_num_groups=opts.get("groups", 32),
                       attention_head_dim=ch * mults[-1] // opts.get("heads", 4), add_attention=opts.get("mid_attn", True))


class DiffusersAdapter(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t, cond=None):
        return self.net(x, t).sample


def make_step(net, batch: int, size: int, autocast: bool, channels: int = 1):
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, foreach=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g).float()
    target = torch.randn(x.shape, generator=g)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = net(x, t)
        loss = F.mse_loss(out.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="training steps per timed round")
    ap.add_argument("--variants", default="default",
                    help="'default' (diffusers vs our preset settings) or 'all' (every speed option)")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = get_preset("mnist")
    opts = dict(cfg.model.options)
    size = opts.get("image_size", 28)
    base_opts = {k: v for k, v in opts.items() if k != "channels_last"}
    ours_params = n_params(build_model("unet", **base_opts))
    twin = diffusers_twin(opts, size)
    twin_params = n_params(twin)
    print(f"ours: {ours_params / 1e6:.3f}M params; diffusers UNet2DModel twin: {twin_params / 1e6:.3f}M "
          f"({100 * (twin_params / ours_params - 1):+.1f}%); batch {args.batch}, {size}x{size}, "
          f"{args.threads} threads, torch {torch.__version__}")

    # Two diffusers references: the twin with our widths at full resolution, and the classic
    # three-level 32/64/64 MNIST UNet (about 1.1M parameters as well).
    classic = diffusers_twin({"ch": 32, "ch_mult": (1, 2, 2), "num_res_blocks": 1, "attn_resolutions": (7,),
                              "groups": 8}, size)
    classic_params = n_params(classic)
    print(f"diffusers UNet2DModel 32/64/64: {classic_params / 1e6:.3f}M ({100 * (classic_params / ours_params - 1):+.1f}%)")
    candidates = {"diffusers UNet2DModel fp32": (DiffusersAdapter(twin), False),
                  "diffusers UNet2DModel 32/64/64 fp32": (DiffusersAdapter(classic), False)}
    if args.variants == "all":
        for cl in (False, True):
            for ac in (False, True):
                name = f"ours fp32{' channels_last' if cl else ''}" if not ac else f"ours bf16-autocast{' channels_last' if cl else ''}"
                candidates[name] = (build_model("unet", **base_opts, channels_last=cl), ac)
        try:
            compiled = torch.compile(build_model("unet", **base_opts))
            candidates["ours fp32 torch.compile"] = (compiled, False)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"torch.compile unavailable: {e}")
    else:
        candidates[f"ours (mnist preset: autocast={cfg.train.autocast}, compile={cfg.train.compile})"] = (
            build_model("unet", **opts), cfg.train.autocast == "bf16")
    steps = {name: make_step(net, args.batch, size, ac) for name, (net, ac) in candidates.items()}
    for name, fn in steps.items():  # warm-up (and compilation)
        t0 = time.perf_counter()
        fn()
        fn()
        print(f"warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {n: [] for n in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.steps)
    ref = statistics.median(times["diffusers UNet2DModel fp32"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        p = (classic_params if "32/64/64" in name else twin_params) if name.startswith("diffusers") else ours_params
        rows.append([name, f"{p / 1e6:.3f}M", f"{med:.3f}", f"{args.batch / med:.0f}", f"{ref / med:.2f}x"])
    table = markdown_table(["model", "params", f"s/step (median of {args.rounds})", "images/s", "vs diffusers"], rows)
    print()
    print(table)
    if args.write_results:
        write_table("throughput", "cpu-throughput", f"training steps of the `mnist` UNet, batch {args.batch}, {size}x{size}, "
                    f"{args.threads} threads\n\n{table}")


if __name__ == "__main__":
    main()
