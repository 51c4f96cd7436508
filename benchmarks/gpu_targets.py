"""Every target of issue 12 (GPUs, mixed precision, Accelerate) measured in one command, printed
as one table at the end (and written to OUT/targets.md).

    python benchmarks/gpu_targets.py --out /tmp/gpu-targets             # on a GPU machine
    python benchmarks/gpu_targets.py --cpu-smoke --out /tmp/gpu-smoke   # tiny CPU fallback: checks
                                                                        # that every step runs
    python benchmarks/gpu_targets.py --write-results                     # the table into docs/results/gpu.md

Steps (each a command a user would type, timed from outside, so start-up is counted):
1. ours vs diffusers UNet2DModel, `mnist` net batch 128 and `afhq64` net batch 64, fp32 / bf16 /
   bf16 + compile (benchmarks/gpu_throughput.py); target >= 1.3x in bf16;
2. CPU training throughput vs diffusers, `mnist` net, 2 threads (benchmarks/unet_throughput.py);
   target >= 2x;
3. `denoiselab train --preset mnist` end to end on the GPU, start to checkpoint (target <= 90 s;
   `--mnist-set` for a GPU-sized variant), then its domain FID from default sampling over 10,000
   samples (target <= 0.6);
4. 10,000 MNIST digits with dpmpp-2m-sde, 10 steps (target <= 10 s);
5. `afhq64` and `ddpm128` images/s and time per epoch on one GPU, trained by the real trainer on
   a folder of generated images (1,000 per epoch);
6. the 2-process gloo test of the suite (tests/test_device.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import add_write_flag, markdown_table, write_table  # noqa: E402


def run(cmd: list[str], log: Path, env: dict) -> tuple[float, str]:
    """Run a command, its output to ``log`` (and echoed); (wall seconds, output)."""
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    out = r.stdout + r.stderr
    log.write_text(out)
    print(out[-3000:], flush=True)
    if r.returncode != 0:
        raise SystemExit(f"failed (exit {r.returncode}): {' '.join(cmd)}; see {log}")
    return dt, out


def make_folder(path: Path, n: int, size: int) -> Path:
    """n smooth random RGB images (PNG) of side ``size``: a stand-in folder for throughput only."""
    import numpy as np
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    if len(list(path.glob("*.png"))) >= n:
        return path
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(path / f"{i:05d}.png")
    return path


def train_rate(py, out: Path, preset: str, sets: list[str], device: str, env: dict, logs: Path) -> dict:
    """images/s of the real trainer (from its metrics.jsonl: steps after the first log line, so
    start-up and compilation are left out) and the time of a 1,000-image epoch."""
    cmd = [py, "-m", "denoiselab.cli", "train", "--preset", preset, "--out", str(out), "--device", device, "--quiet",
           "--no-pictures", *[a for s in sets for a in ("--set", s)]]
    run(cmd, logs / f"train-{preset}.log", env)
    cfg = json.loads((out / "config.json").read_text())
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    (s0, t0), (s1, t1) = (lines[0]["step"], lines[0]["time"]), (lines[-1]["step"], lines[-1]["time"])
    rate = (s1 - s0) * cfg["train"]["batch_size"] / max(t1 - t0, 1e-9)
    return {"images_per_s": rate, "epoch_1000_s": 1000 / rate, "batch": cfg["train"]["batch_size"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/denoiselab-gpu-targets")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny settings on the CPU: checks the script, measures nothing")
    ap.add_argument("--mnist-set", action="append", default=[], metavar="KEY=VALUE",
                    help="overrides of the mnist preset for the end-to-end target (a GPU-sized variant)")
    add_write_flag(ap)
    args = ap.parse_args()
    if args.write_results and args.cpu_smoke:
        ap.error("--write-results with --cpu-smoke: a smoke run measures nothing; leave one of them out")
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    smoke = args.cpu_smoke
    dev = "cpu" if smoke else "cuda"
    rows: list[tuple[str, str, str]] = []

    # 1. ours vs diffusers on the device.
    tp = [py, "benchmarks/gpu_throughput.py", "--device", dev]
    tp += ["--configs", "mnist", "--batch", "4", "--modes", "fp32", "--rounds", "1", "--steps", "1"] if smoke else []
    _, text = run(tp, logs / "gpu_throughput.log", env)
    table = [line for line in text.splitlines() if line.startswith("| `")]
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((f"{cells[0]} {cells[1]} {cells[2]}", f"{cells[5]} ({cells[4]} vs {cells[3]} img/s)",
                     ">= 1.3x (bf16, train)" if cells[1] == "train" and cells[2] == "bf16" else ""))

    # 2. CPU: ours vs diffusers, the mnist net, 2 threads.
    cpu = [py, "benchmarks/unet_throughput.py", "--threads", "2"]
    cpu += ["--batch", "4", "--rounds", "1", "--steps", "1"] if smoke else []
    _, text = run(cpu, logs / "unet_throughput_cpu.log", env)
    for line in text.splitlines():
        if line.startswith("| ours"):
            rows.append(("CPU training, mnist net vs diffusers (2 threads)", line.split("|")[-2].strip(), ">= 2x"))

    # 3. mnist end to end and its FID.
    run_dir = out / "mnist"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    sets = ["steps=4", "batch_size=8", "preview_every=0"] if smoke else list(args.mnist_set)
    cmd = [py, "-m", "denoiselab.cli", "train", "--preset", "mnist", "--out", str(run_dir), "--device", dev, "--quiet",
           "--no-pictures", *[a for s in sets for a in ("--set", s)]]
    dt, _ = run(cmd, logs / "train-mnist.log", env)
    rows.append((f"`mnist` train end to end, start to checkpoint ({' '.join(sets) or 'preset'})", f"{dt:.1f} s",
                 "<= 90 s"))
    num = 64 if smoke else 10_000
    cmd = [py, "-m", "denoiselab.cli", "evaluate", str(run_dir), "--ref", "mnist", "--num", str(num), "--device", dev,
           "--json", "--bootstrap", "0"]
    _, text = run(cmd, logs / "evaluate-mnist.log", env)
    try:
        res = json.loads(text[text.index("{"):text.rindex("}") + 1])
        fid = res.get("FID", res.get("fid"))
        fid = fid.get("value", fid) if isinstance(fid, dict) else fid
        rows.append((f"`mnist` domain FID, default sampling, {num} samples", f"{float(fid):.3f}", "<= 0.6"))
    except (ValueError, TypeError, AttributeError):
        rows.append((f"`mnist` domain FID, {num} samples", "see logs/evaluate-mnist.log", "<= 0.6"))

    # 4. 10,000 digits, dpmpp-2m-sde 10 steps.
    cmd = [py, "-m", "denoiselab.cli", "sample", str(run_dir), "--num", str(num), "--sampler", "dpmpp-2m-sde", "--steps",
           "10", "--out", str(out / "digits.npy"), "--device", dev]
    dt, text = run(cmd, logs / "sample-mnist.log", env)
    inner = text.strip().splitlines()[-1].rsplit(",", 1)[-1].strip() if text.strip() else "?"
    rows.append((f"sample {num} digits, dpmpp-2m-sde 10 steps", f"{dt:.1f} s command, {inner} sampling", "<= 10 s"))

    # 5. afhq64 and ddpm128 on a folder: images/s and time per 1,000-image epoch.
    for preset, size in (("afhq64", 64), ("ddpm128", 128)):
        side = 32 if smoke else size
        folder = make_folder(out / f"folder{side}", 24 if smoke else 1000, side)
        sets = [f"data.path={folder}", "preview_every=0", "ckpt_every=0", "log_every=2" if smoke else "log_every=50",
                "steps=4" if smoke else "steps=300", "train.ema_decay=0.9999"]
        if smoke:
            sets += [f"data.image_size={side}", f"model.image_size={side}", "model.ch=32", "model.num_res_blocks=1",
                     "batch_size=4"]
        d = out / f"run-{preset}"
        if d.exists():
            import shutil

            shutil.rmtree(d)
        r = train_rate(py, d, preset, sets, dev, env, logs)
        rows.append((f"`{preset}` training, batch {r['batch']}", f"{r['images_per_s']:.1f} img/s, "
                     f"{r['epoch_1000_s']:.1f} s per 1,000-image epoch", "README figure"))

    # 6. the gloo test.
    dt, _ = run([py, "-m", "pytest", "tests/test_device.py", "-q", "-k", "gloo", "-p", "no:cacheprovider"],
                logs / "gloo-test.log", env)
    rows.append(("2 gloo processes vs 1, 200 steps (tests/test_device.py)", f"passed in {dt:.0f} s", "in the suite"))

    table = markdown_table(["what", "measured", "target"], rows)
    lines = [f"device: {dev}{' (CPU smoke run: no figure here is a measurement of a target)' if smoke else ''}", "",
             table]
    (out / "targets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.write_results:
        import torch

        write_table("gpu", "gpu", table, device=torch.cuda.get_device_name(0))


if __name__ == "__main__":
    main()
