"""Small deterministic end-to-end runs: training lowers the loss, save/load, resume, errors."""

import json

import pytest
import torch

from denoiselab import runs
from denoiselab.config import apply_overrides
from denoiselab.errors import DenoiselabError
from denoiselab.presets import get_preset
from denoiselab.samplers.api import generate
from denoiselab.training.checkpoint import load_checkpoint, save_checkpoint
from denoiselab.training.optim import lr_at
from denoiselab.training.trainer import CHECKPOINT

TINY = ["data.num=4096", "model.width=32", "model.depth=2", "steps=80", "batch_size=64",
        "log_every=10", "warmup=5", "lr=3e-3"]


def tiny_cfg(*extra):
    return apply_overrides(get_preset("swiss-roll"), TINY + list(extra))


def train(cfg, out, steps=None):
    data = runs.build_data(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / runs.CONFIG).write_text(cfg.to_json())
    tr = runs.make_trainer(cfg, out, data, progress=False)
    return tr, tr.fit()


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_lowers_its_loss(tmp_path):
    _, res = train(tiny_cfg("steps=150"), tmp_path / "run")
    ls = losses(tmp_path / "run")
    assert res["steps"] == 150
    assert sum(ls[-3:]) / 3 < 0.8 * sum(ls[:2]) / 2


def test_save_load_gives_identical_samples(tmp_path):
    tr, _ = train(tiny_cfg(), tmp_path / "run")
    run = runs.load_run(tmp_path / "run")
    a, _ = generate(run.denoiser, 64, (2,), sampler="ddpm", steps=50, seed=3)
    # The in-memory EMA net of the trainer gives the same samples as the reloaded one.
    live = runs.build_denoiser(run.config, tr.sampling_net().eval())
    b, _ = generate(live, 64, (2,), sampler="ddpm", steps=50, seed=3)
    assert torch.equal(a, b)
    c, _ = generate(runs.load_run(tmp_path / "run").denoiser, 64, (2,), sampler="ddpm", steps=50, seed=3)
    assert torch.equal(a, c)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = tiny_cfg("steps=60")
    full, _ = train(cfg, tmp_path / "full")
    data = runs.build_data(cfg)
    runs.make_trainer(cfg, tmp_path / "part", data, progress=False).fit(until=25)  # "interrupted"
    tr = runs.make_trainer(cfg, tmp_path / "part", data, progress=False)
    tr.resume()
    assert tr.step == 25
    tr.fit()
    for a, b in zip(full.net.state_dict().values(), tr.net.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.ema.module.state_dict().values(), tr.ema.module.state_dict().values()):
        assert torch.equal(a, b)


def test_lr_schedule_warmup_and_cosine():
    cfg = tiny_cfg("steps=100", "warmup=10", "lr=1.0", "train.lr_final=0.1").train
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0)
    assert lr_at(cfg, 100) == pytest.approx(0.1)
    assert 0.1 < lr_at(cfg, 55) < 1.0


def test_nan_loss_is_a_clear_error_and_keeps_no_bad_checkpoint(tmp_path):
    cfg = tiny_cfg("lr=1e30", "train.grad_clip=0", "train.optimizer=adam", "warmup=0", "steps=200")
    with pytest.raises(DenoiselabError, match="loss became"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_checkpoint_round_trip_and_corruption(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=net, config={"a": 1}, step=7, optimizer=opt, rng_state=torch.Generator().get_state())
    ck = load_checkpoint(path)
    assert ck["step"] == 7 and ck["config"] == {"a": 1}
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(ck["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert not list(tmp_path.glob("*.tmp"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DenoiselabError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(DenoiselabError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_overrides():
    cfg = apply_overrides(get_preset("kaist"), ["steps=10", "lr=0.5", "seed=3", "batch_size=7", "model.width=9",
                                                 "diffusion.schedule=cosine"])
    assert (cfg.train.steps, cfg.train.lr, cfg.train.seed, cfg.train.batch_size) == (10, 0.5, 3, 7)
    assert cfg.model.options["width"] == 9 and cfg.diffusion.schedule == "cosine"
    for bad in (["nokey=1"], ["steps"], ["bogus.steps=1"], ["steps=abc"]):
        with pytest.raises(DenoiselabError):
            apply_overrides(cfg, bad)


def test_kaist_preset_is_the_assignment():
    cfg = get_preset("kaist")
    net = runs.build_net(cfg)
    dims = [(layer.fc.in_features, layer.fc.out_features) for layer in net.layers]
    assert dims == [(2, 128), (128, 128), (128, 128), (128, 2)]
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.steps) == (1e-3, 128, 5000)
    assert (cfg.train.optimizer, cfg.train.warmup, cfg.train.lr_schedule) == ("adam", 0, "constant")
    # The EMA is what is sampled, outside the training loop (next test).
    assert cfg.train.ema_decay == 0.999
    s = runs.build_schedule(cfg.diffusion)
    assert s.T == 1000 and s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)


def test_ema_leaves_the_training_trajectory_untouched(tmp_path):
    # The kaist preset samples from the EMA and keeps the assignment's training: the optimised
    # weights, optimizer state and losses must be the same bits with or without the average.
    plain, _ = train(tiny_cfg("steps=40", "train.ema_decay=0"), tmp_path / "plain")
    averaged, _ = train(tiny_cfg("steps=40", "train.ema_decay=0.999"), tmp_path / "ema")
    assert plain.ema is None and averaged.ema is not None
    for a, b in zip(plain.net.state_dict().values(), averaged.net.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(plain.opt.state_dict()["state"].values(), averaged.opt.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "plain") == losses(tmp_path / "ema")
    # ... and what is sampled differs: the average, not the last iterate.
    assert not torch.equal(next(iter(averaged.net.parameters())), next(iter(averaged.ema.module.parameters())))


def test_swiss_roll_is_the_kaist_construction():
    """Columns 0 and 2 of sklearn's swiss roll (noise 0, hole), one scalar mean and std, times 2."""
    import numpy as np
    from sklearn.datasets import make_swiss_roll

    from denoiselab.data import load_toy
    from denoiselab.data.toy2d import _frame

    raw = make_swiss_roll(100, noise=0.0, random_state=4, hole=True)[0][:, [0, 2]]
    mean, std = _frame("swiss-roll")
    assert np.allclose(load_toy("swiss-roll", 100, 4).numpy(), (raw - mean) / std * 2, atol=1e-5)
    big = load_toy("swiss-roll", 200_000, 9)
    assert big.mean().item() == pytest.approx(0.0, abs=0.02) and big.std().item() == pytest.approx(2.0, abs=0.02)
