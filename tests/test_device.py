"""Devices, mixed precision and data-parallel training, tested on the CPU: device selection
and its errors, the device paths of sampling, data and checkpoints, attention, the ddpm128
preset, gradient accumulation, and two gloo processes against one."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import denoiselab
from denoiselab import runs
from denoiselab.config import apply_overrides
from denoiselab.data import build_dataset
from denoiselab.device import autocast_dtype, module_device, place, resolve_device
from denoiselab.errors import DenoiselabError
from denoiselab.models.unet import AttentionBlock, UNet
from denoiselab.presets import get_preset
from denoiselab.runs import validate_config
from denoiselab.samplers.api import generate

SRC = str(Path(denoiselab.__file__).resolve().parents[1])


# -- device selection -----------------------------------------------------------------------

def _no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_takes_the_cpu_without_a_gpu(monkeypatch):
    _no_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("name, match", [("cuda", "torch sees no CUDA GPU"), ("cuda:1", "torch sees no CUDA GPU"),
                                         ("mps", "no Apple GPU"), ("tpu", "unknown --device"),
                                         ("cuda:x", "cuda:N")])
def test_a_device_that_is_not_there_is_one_clear_error(monkeypatch, name, match):
    _no_gpu(monkeypatch)
    with pytest.raises(DenoiselabError, match=match):
        resolve_device(name)


def test_cuda_index_is_checked_against_the_gpu_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(DenoiselabError, match="has 2 CUDA GPUs"):
        resolve_device("cuda:2")


def test_cli_refuses_a_missing_gpu_in_one_line(tmp_path, monkeypatch):
    _no_gpu(monkeypatch)
    from denoiselab.cli import main

    for argv in (["train", "--preset", "swiss-roll", "--out", str(tmp_path / "r"), "--device", "cuda"],
                 ["plot", "schedules", "--out", str(tmp_path / "s.png"), "--device", "cuda:0"]):
        assert main(argv) == 2
    assert not (tmp_path / "r").exists()


def test_launcher_refuses_an_existing_run_before_starting_processes(tmp_path, capsys):
    from denoiselab.cli import main

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")
    assert main(["train", "--preset", "swiss-roll", "--out", str(tmp_path / "r"), "--device", "cpu",
                 "--launcher", "accelerate", "--processes", "2"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_every_computing_command_takes_device():
    from denoiselab.cli import build_parser

    ap = build_parser()
    for argv in (["train", "--out", "x"], ["sample", "r", "--out", "x.npy"], ["evaluate", "r", "--ref", "mnist"],
                 ["animate", "r", "--out", "x.gif"], ["plot", "guidance", "r"], ["benchmark-samplers", "r"],
                 ["edit", "sdedit", "r", "--out", "x.png", "--input", "a.png"]):
        assert ap.parse_args(argv + ["--device", "cpu"]).device == "cpu"


def test_autocast_modes():
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None  # CPU runs are unchanged
    assert autocast_dtype("none", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(DenoiselabError, match="fp16 autocast .* needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(DenoiselabError, match="unknown autocast"):
        autocast_dtype("fp8", cpu)
    assert get_preset("mnist").train.autocast == "auto"
    with pytest.raises(DenoiselabError, match="train.autocast"):
        validate_config(apply_overrides(get_preset("mnist"), ["train.autocast=fp8"]))


# -- attention ------------------------------------------------------------------------------

def test_unet_attention_is_softmax_attention():
    """F.scaled_dot_product_attention in the UNet equals softmax(q k^T / sqrt(d)) v written out
    (Vaswani et al. 2017, eq. 1) on the CPU, within float32 rounding."""
    torch.manual_seed(0)
    block = AttentionBlock(32, heads=4, groups=8)
    torch.nn.init.normal_(block.proj.weight, std=0.2)  # the zero-initialised output would hide the attention
    x = torch.randn(3, 32, 8, 8)
    n, c, h, w = x.shape
    qkv = block.qkv(block.norm(x)).reshape(n, 3, 4, c // 4, h * w)
    q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // 4), dim=-1) @ v
    ref = x + block.proj(att.transpose(-1, -2).reshape(n, c, h, w))
    got = block(x)
    assert (got - ref).abs().max() < 1e-5
    assert (got - x).abs().max() > 1e-2  # the attention path is not zero


# -- the device paths of sampling, checkpoints and data -------------------------------------

def _tiny_run(tmp_path):
    cfg = apply_overrides(get_preset("swiss-roll"), ["data.num=2048", "model.width=32", "model.depth=2", "steps=20",
                                                     "batch_size=64", "log_every=10", "warmup=2"])
    data = runs.build_data(cfg)
    out = tmp_path / "run"
    out.mkdir()
    (out / runs.CONFIG).write_text(cfg.to_json())
    runs.make_trainer(cfg, out, data, progress=False, device=torch.device("cpu")).fit()
    return out


def test_checkpoint_loads_onto_a_device_and_samples_match(tmp_path):
    out = _tiny_run(tmp_path)
    plain = runs.load_run(out)
    moved = runs.load_run(out, device=resolve_device("cpu"))
    assert module_device(moved.net) == torch.device("cpu")
    a, _ = generate(plain.denoiser, 32, (2,), sampler="dpmpp-2m-sde", steps=10, seed=5)
    b, _ = generate(moved.denoiser, 32, (2,), sampler="dpmpp-2m-sde", steps=10, seed=5, device="cpu")
    assert torch.equal(a, b)
    # Sample i depends only on (seed, i), in any batching (up to the rounding of other matmul
    # shapes), and comes back on the CPU.
    c, _ = generate(moved.denoiser, 8, (2,), sampler="dpmpp-2m-sde", steps=10, seed=5, offset=24, batch_size=3)
    assert c.device.type == "cpu" and torch.allclose(c, a[24:], rtol=1e-4, atol=1e-3)


def test_denoiser_runs_cpu_inputs_through_the_networks_device(tmp_path):
    """An edit that starts from CPU tensors works whatever the network's device: call_net moves
    x, t and cond to the network and the result back."""
    out = _tiny_run(tmp_path)
    run = runs.load_run(out)
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t, cond=None):
            seen.append((x.device, t.device))
            return self.net(x, t, cond)

    run.denoiser.net = Spy(run.net)
    x = torch.randn(4, 2)
    x0, eps = run.denoiser(x, torch.full((4,), 500.0, dtype=torch.float64))
    assert x0.device == x.device and seen == [(torch.device("cpu"), torch.device("cpu"))]


def test_place_switches_unets_to_channels_last_only_on_cuda():
    net = UNet(in_channels=1, image_size=16, ch=16, ch_mult=(1, 2), groups=8)
    place(net, torch.device("cpu"))
    assert not net.use_channels_last  # the CPU path is as configured


def test_device_copy_of_images_is_uint8_and_batches_are_bit_equal():
    data = build_dataset("digits", {"flip": True})  # digits are x / 8 - 1: not bytes, kept as floats
    assert data.to("cpu") is data
    assert data.stored_on("cpu")._u8 is None
    mnist = build_dataset("mnist", {"flip": True})
    stored = mnist.stored_on("cpu")
    assert stored._u8 is not None and stored._u8.dtype == torch.uint8 and len(stored) == len(mnist)
    for step in (0, 7, 80):
        xa, ya = mnist.batch(step, 96, 3)
        xb, yb = stored.batch(step, 96, 3)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# -- presets --------------------------------------------------------------------------------

def test_ddpm128_preset_builds_the_paper_layout():
    cfg = validate_config(apply_overrides(get_preset("ddpm128"), ["data.path=/some/folder"]))
    assert cfg.data.options["path"] == "/some/folder" and cfg.data.options["image_size"] == 128
    assert (cfg.diffusion.T, cfg.diffusion.schedule, cfg.train.batch_size, cfg.train.lr) == (1000, "linear", 6, 2e-4)
    assert (cfg.train.optimizer, cfg.train.lr_schedule) == ("adam", "cosine")
    net = runs.build_net(cfg)
    # Walk the encoder as the constructor laid it out for 128x128: residual blocks (with or
    # without attention) per resolution, a Downsample between levels.
    from denoiselab.models.unet import Downsample, ResBlock

    res, blocks, attn_at = 128, {}, set()
    for layers in net.down:
        if isinstance(layers[0], Downsample):
            res //= 2
            continue
        assert isinstance(layers[0], ResBlock)
        blocks[res] = blocks.get(res, 0) + 1
        if any(isinstance(m, AttentionBlock) for m in layers):
            attn_at.add(res)
    assert blocks == {128: 2, 64: 2, 32: 2, 16: 2, 8: 2}  # five resolutions, two residual blocks each
    assert attn_at == {16}
    # A forward pass at a small size (the layout needs a side divisible by 16): every level runs.
    sides = []
    hooks = [m.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1])) for layers in net.down for m in layers]
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32), torch.tensor([3.0, 900.0]))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
    assert sorted(set(sides), reverse=True) == [32, 16, 8, 4, 2]


# -- gradient accumulation and processes -----------------------------------------------------

def test_batch_must_split_over_processes_and_accumulation(tmp_path):
    cfg = apply_overrides(get_preset("swiss-roll"), ["data.num=512", "model.width=16", "batch_size=30",
                                                     "train.grad_accum=4"])
    with pytest.raises(DenoiselabError, match="multiple of 4"):
        runs.make_trainer(cfg, tmp_path / "r", runs.build_data(cfg), progress=False)


def test_grad_accum_gives_the_full_batch_gradient(tmp_path):
    """Accumulating two halves gives the gradient of the whole batch (up to float rounding) when
    the noise is the same: the objective here draws none."""
    from denoiselab.training.trainer import Trainer

    cfg0 = apply_overrides(get_preset("swiss-roll"), ["data.num=512", "model.width=16", "batch_size=64", "steps=1",
                                                      "train.ema_decay=0", "train.autocast=none", "warmup=0"])
    data = runs.build_data(cfg0)

    def objective(net, x0, cond, generator):
        return (net(x0, torch.full((len(x0),), 100.0), None) - x0).pow(2).mean()

    nets = []
    for accum in (1, 2):
        cfg = apply_overrides(cfg0, [f"train.grad_accum={accum}"])
        torch.manual_seed(0)
        net = runs.build_net(cfg)
        tr = Trainer(net, objective, data, cfg.train, tmp_path / f"a{accum}", cfg.to_dict(), progress=False)
        tr.fit()
        nets.append(tr.net)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


class _Share:
    """One process's view of a 2-process run, without a process group: what the trainer asks a
    runtime, with no collectives (prepare, no_sync, mean and wait do nothing)."""

    def __init__(self, rank: int, world: int = 2):
        from denoiselab.training.runtime import LocalRuntime

        self._local = LocalRuntime("cpu")
        self.device, self.process_index, self.num_processes, self.is_main = torch.device("cpu"), rank, world, rank == 0

    def __getattr__(self, name):
        return getattr(self.__dict__["_local"], name)


def test_processes_take_their_rows_and_resume_across_world_sizes(tmp_path):
    cfg = apply_overrides(get_preset("swiss-roll"), ["data.num=1024", "model.width=16", "model.depth=1",
                                                     "batch_size=64", "steps=12", "log_every=4", "ckpt_every=6",
                                                     "train.grad_accum=2", "train.autocast=none"])
    data = runs.build_data(cfg)
    x0, y = data.batch(3, 64, cfg.train.seed)
    one = runs.make_trainer(cfg, tmp_path / "one", data, progress=False)
    assert [torch.equal(a, b) for (a, _), b in zip(one._shares(x0, y), (x0[:32], x0[32:]))] == [True, True]
    second = runs.make_trainer(cfg, tmp_path / "x", data, progress=False, runtime=_Share(1))
    assert second.ema is None  # the EMA lives on the main process only
    parts = second._shares(x0, y)
    assert [len(p[0]) for p in parts] == [16, 16] and torch.equal(torch.cat([p[0] for p in parts]), x0[32:])
    # A checkpoint of one process resumes as process 0 and 1 of two: same weights and step; the
    # second process draws from its own noise stream, not the main one's.
    one.fit(until=6)
    for rank in (0, 1):
        tr = runs.make_trainer(cfg, tmp_path / "one", data, progress=False, runtime=_Share(rank))
        assert tr.resume() and tr.step == 6
        for a, b in zip(tr.net.state_dict().values(), one.net.state_dict().values()):
            assert torch.equal(a, b)
        same = torch.equal(tr.generator.get_state(), one.generator.get_state())
        assert same == (rank == 0)
    tr.fit()
    assert tr.step == 12


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path):
    """`denoiselab train --launcher accelerate --processes 2 --device cpu` (two processes over
    gloo) against one process, the same global batch of 256 and 200 steps of a tiny 2D model.

    The batches are the same (a function of (step, seed), split in halves between the
    processes); the noise and diffusion times differ (each process draws its own), so the curves
    agree up to the noise of the loss estimate. Tolerance: two one-process runs that differ only
    in their noise stream (another seed for the noise, the same data) set it; the two-process
    curve must be as close to the one-process curve as 3x that spread (at least 5%)."""
    pytest.importorskip("accelerate")
    sets = ["data.num=4096", "model.width=32", "model.depth=2", "steps=200", "batch_size=256", "log_every=20",
            "warmup=10", "lr=3e-3", "train.autocast=none", "train.ema_decay=0"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}

    def train(out, *extra):
        cmd = [sys.executable, "-m", "denoiselab.cli", "train", "--preset", "swiss-roll", "--out", str(out), "--quiet",
               "--no-pictures", "--device", "cpu", *[a for s in sets for a in ("--set", s)], *extra]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    r2 = train(tmp_path / "two", "--launcher", "accelerate", "--processes", "2")
    assert "x 2 processes" in r2.stderr
    train(tmp_path / "one")
    base = _losses(tmp_path / "one")
    two = _losses(tmp_path / "two")
    assert len(two) == len(base) == 10  # metrics written once, by the main process
    ck = sorted((tmp_path / "two" / "checkpoints").glob("*.safetensors"))
    assert [p.name for p in ck] == ["step0000200.safetensors"]
    # Smoothed curves (means of two logged points, i.e. 40 steps) and the final loss.
    smooth = lambda ls: [sum(ls[i:i + 2]) / 2 for i in range(0, len(ls), 2)]  # noqa: E731
    rel = [abs(a - b) / b for a, b in zip(smooth(two), smooth(base))]
    assert two[-1] < 0.7 * two[0]  # the two-process run learns
    noise = _noise_spread(tmp_path, sets, env, smooth, base)
    tol = max(0.05, 3 * noise)
    assert max(rel) < tol, (rel, noise)


def _noise_spread(tmp_path, sets, env, smooth, base) -> float:
    """Largest relative gap between the smoothed curves of the one-process run and the same run
    whose noise stream differs (``train.seed`` fixes data order and noise alike, so here the
    objective's generator alone is re-seeded through a one-line wrapper)."""
    code = ("import sys, torch; from denoiselab.training import trainer as T\n"
            "orig = T._stream_seed\n"
            "T._stream_seed = lambda seed, rank, step: orig(seed, 1, step)\n"
            "from denoiselab.cli import main; sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "noise"
    cmd = [sys.executable, "-c", code, "train", "--preset", "swiss-roll", "--out", str(out), "--quiet", "--no-pictures",
           "--device", "cpu", *[a for s in sets for a in ("--set", s)]]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    other = _losses(out)
    return max(abs(a - b) / b for a, b in zip(smooth(other), smooth(base)))


def test_sampling_batch_size_default_by_data_and_device():
    from denoiselab.device import CPU_IMAGE_BATCH, LARGE_BATCH, sampling_batch_size

    # Images chunked on a CPU (cache-sized batches ran 23% faster); points and GPUs in one batch.
    assert sampling_batch_size("images", torch.device("cpu")) == CPU_IMAGE_BATCH == 256
    assert sampling_batch_size("points", torch.device("cpu")) == LARGE_BATCH
    assert sampling_batch_size("images", torch.device("cuda:0")) == LARGE_BATCH
