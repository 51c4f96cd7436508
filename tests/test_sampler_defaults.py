"""Sampling defaults (issue 14): the data-fitted noise range, the run's stored sampler, steps and
grid, and no sampler diverging at any step count."""

import json
import math

import pytest
import torch

from denoiselab import runs
from denoiselab.cli import main
from denoiselab.config import RunConfig, SampleConfig, apply_overrides
from denoiselab.denoiser import AnalyticGaussianDenoiser, AnalyticMixtureDenoiser
from denoiselab.presets import get_preset
from denoiselab.samplers import SAMPLERS, default_steps
from denoiselab.samplers.api import generate
from denoiselab.samplers.grids import (
    PIXEL_LEVEL,
    SIGMA_GRIDS,
    clamp_sigma_range,
    default_grid,
    fit_sigma_range,
    logsnr_sigmas,
    time_grid,
)
from denoiselab.schedules import make_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULE = make_schedule("linear", 1000)


def _ring():
    """Eight narrow components on a circle of radius 3 (the scale of the 2D presets' data):
    E|x0|^2 = 9 + 2 * 0.05."""
    ang = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    means = 3 * torch.stack([ang.cos(), ang.sin()], 1)
    return AnalyticMixtureDenoiser(SCHEDULE, means, torch.full((8,), 0.05), torch.full((8,), 1 / 8)), math.sqrt(9.1)


def _gaussian():
    """N(0, 4 I) in 2D: E|x0|^2 = 8."""
    return AnalyticGaussianDenoiser(SCHEDULE, torch.zeros(2), torch.full((2,), 4.0)), math.sqrt(8.0)


@pytest.mark.parametrize("make", [_ring, _gaussian], ids=["mixture", "gaussian"])
@pytest.mark.parametrize("ends", ["model", "data"])
def test_no_sampler_diverges_at_any_step_count(make, ends):
    """Every sampler at 1, 2, 5, 10 and 20 steps on the exact denoiser keeps the samples' RMS norm
    within 2x the data's: Heun in EDM's ve frame ended a 2-step run with an RMS of about 145 on the
    mixture (half of sigma_max = 157 left in), and 17 on the data-fitted range."""
    den, rms = make()
    opts = {}
    if ends == "data":
        x0 = generate(den, 2000, (2,), sampler="dpmpp-3m", steps=50, seed=9)[0]
        opts = dict(zip(("sigma_min", "sigma_max"), clamp_sigma_range(den, *fit_sigma_range(x0, "points"))))
    for sampler in SAMPLERS:
        for steps in (1, 2, 5, 10, 20):
            grid = default_grid(sampler, den) if opts else None
            if grid not in SIGMA_GRIDS:
                grid = None
            x, _ = generate(den, 500, (2,), sampler=sampler, steps=steps, seed=0, grid=grid,
                            grid_opts=opts if grid else None)
            got = x.double().pow(2).sum(1).mean().sqrt().item()
            assert math.isfinite(got) and got < 2 * rms, (sampler, steps, got, rms)


def test_heun_keeps_its_accuracy_where_it_converges():
    """The flow frame is not bought with accuracy: at 20 steps Heun's samples have the data's RMS."""
    den, rms = _gaussian()
    x, _ = generate(den, 4000, (2,), sampler="heun", steps=20, seed=1)
    assert abs(x.double().pow(2).sum(1).mean().sqrt().item() / rms - 1) < 0.05


def test_fit_sigma_range_closed_forms():
    # Points 0.1 apart on a line: nearest neighbours 0.1 apart, the farthest pair 1.0.
    x = torch.stack([torch.linspace(0, 1, 11), torch.zeros(11)], 1)
    lo, hi = fit_sigma_range(x, "points")
    assert lo == pytest.approx(0.1) and hi == pytest.approx(1.0)
    # Images: one 8-bit level in [-1, 1]; the farthest pair of an all -1 and an all +1 image of 4 pixels is 4.
    imgs = torch.stack([-torch.ones(1, 2, 2), torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])
    assert fit_sigma_range(imgs, "images") == pytest.approx((PIXEL_LEVEL, 4.0))
    with pytest.raises(Exception, match="all samples equal"):
        fit_sigma_range(torch.zeros(5, 2), "points")


def test_logsnr_trailing_grid_strides_to_clean_data():
    """N points: the first N of N + 1 log-SNR-uniform points from sigma_max to sigma_min."""
    den, _ = _gaussian()
    for n in (1, 2, 5):
        ts = time_grid(den, "logsnr-trailing", n, sigma_min=0.02, sigma_max=8.0)
        want = den.t_from_sigma(logsnr_sigmas(0.02, 8.0, n + 1)[:-1])
        torch.testing.assert_close(ts, want.double())
        assert len(ts) == n
    # Two steps: 8 -> sqrt(8 * 0.02) -> clean data.
    a, s = den.scales(time_grid(den, "logsnr-trailing", 2, sigma_min=0.02, sigma_max=8.0), torch.empty(2, dtype=torch.float64))
    torch.testing.assert_close((s / a).reshape(-1), torch.tensor([8.0, 0.16 ** 0.5], dtype=torch.float64))


def test_the_fitted_range_is_clamped_into_the_models():
    den, _ = _gaussian()
    lo, hi = den.sigma_range
    assert clamp_sigma_range(den, 1e-5, 1e5) == (lo, hi)
    assert clamp_sigma_range(den, 0.05, 8.0) == (0.05, 8.0)


def _run(sample: SampleConfig, data: str = "swiss-roll") -> runs.LoadedRun:
    den, _ = _ring()
    cfg = RunConfig(preset="test", sample=sample)
    cfg = RunConfig.from_dict({**cfg.to_dict(), "data": {"name": data}})
    return runs.LoadedRun(cfg, None, den, 0, None, {"kind": "points", "sample_shape": [2]})


def test_sampling_plan_takes_the_runs_stored_settings():
    run = _run(SampleConfig(sampler="dpmpp-2m-sde", steps=7, grid="karras", eta=2.0, sigma_min=0.05, sigma_max=8.0))
    plan = runs.sampling_plan(run)
    assert (plan.sampler, plan.steps, plan.grid, plan.opts) == ("dpmpp-2m-sde", 7, "karras", {"eta": 2.0})
    assert plan.grid_opts == {"sigma_min": 0.05, "sigma_max": 8.0}
    # Another sampler: its usual step count and default grid, over the run's noise range; no stored eta.
    plan = runs.sampling_plan(run, sampler="heun")
    assert (plan.sampler, plan.steps, plan.grid, plan.opts) == ("heun", default_steps("heun", run.denoiser), "logsnr-trailing", {})
    assert plan.grid_opts == {"sigma_min": 0.05, "sigma_max": 8.0}
    assert runs.sampling_plan(run, sampler="ddpm").steps == 1000  # every trained step
    plan = runs.sampling_plan(run, sampler="ddim", steps=12)
    assert (plan.steps, plan.grid, plan.grid_opts) == (12, "leading", {})
    # A user's end wins; the other end stays the data's.
    plan = runs.sampling_plan(run, grid="logsnr", grid_opts={"sigma_max": 3.0})
    assert plan.grid_opts == {"sigma_min": 0.05, "sigma_max": 3.0}


def test_sampling_plan_takes_the_runs_stored_eta_below_a_noise_level():
    run = _run(SampleConfig(sampler="dpmpp-2m-sde", steps=7, eta=4.0, eta_low=8.0, eta_switch=3.0))
    plan = runs.sampling_plan(run)
    assert plan.opts == {"eta": 4.0, "eta_low": 8.0, "eta_switch": 3.0}
    assert "(eta 4, 8 at sigma <= 3)" in plan.describe()
    assert plan.record(7, 10)["eta_switch"] == 3.0
    assert runs.sampling_plan(run, opts={"eta_switch": 0.0}).opts["eta_switch"] == 0.0  # the user's wins
    assert runs.sampling_plan(run, sampler="heun").opts == {}  # another sampler: none of the stored options
    assert "eta_switch" not in runs.sampling_plan(_run(SampleConfig(sampler="dpmpp-2m-sde", eta=4.0))).opts


def test_runs_without_a_stored_range_fit_it_from_their_data_set():
    run = _run(SampleConfig(sampler="euler", steps=10))  # as in a config.json written before the range was stored
    lo, hi = runs.sampling_plan(run).grid_opts.values()
    data = runs.open_dataset("swiss-roll", {}, 100_000, 0)
    want = clamp_sigma_range(run.denoiser, *fit_sigma_range(data.x, "points"))
    assert (lo, hi) == pytest.approx(want)
    assert 5 < hi < 10  # the swiss roll's widest pair, far below the schedule's sigma_max of 157


def test_old_configs_load_without_the_new_fields():
    d = RunConfig().to_dict()
    for k in ("grid", "sigma_min", "sigma_max"):
        del d["sample"][k]
    cfg = RunConfig.from_dict(d)
    assert (cfg.sample.grid, cfg.sample.sigma_min, cfg.sample.sigma_max) == ("", 0.0, 0.0)


def test_every_preset_stores_a_sampler_the_config_accepts():
    from denoiselab.presets import PRESETS
    from denoiselab.runs import validate_config

    for name in PRESETS:
        cfg = validate_config(get_preset(name))
        assert cfg.sample.sampler in SAMPLERS and cfg.sample.steps >= 1


TINY = ["--set", "data.num=4096", "--set", "model.width=32", "--set", "model.depth=2", "--set", "steps=30",
        "--set", "batch_size=64", "--set", "log_every=10", "--set", "sample.sampler=dpmpp-2m",
        "--set", "sample.steps=6", "--set", "sample.grid=karras"]


def test_sample_with_no_flags_uses_the_runs_sampler(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "swiss-roll", "--out", str(run), "--quiet", "--no-pictures", *TINY]) == 0
    cfg = json.loads((run / "config.json").read_text())["sample"]
    assert 0 < cfg["sigma_min"] < 0.1 and 5 < cfg["sigma_max"] < 10  # the data's range, stored at training
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "64", "--out", str(tmp_path / "a.npy")]) == 0
    err = capsys.readouterr().err
    assert "dpmpp-2m, 6 steps on the karras grid, NFE 6, sigma" in err and "starting from the data's moments" in err, err
    assert main(["sample", str(run), "--num", "64", "--sampler", "heun", "--out", str(tmp_path / "b.npy")]) == 0
    err = capsys.readouterr().err
    assert f"heun, {default_steps('heun', None)} steps on the logsnr-trailing grid" in err, err


def test_a_presets_measured_noise_range_is_kept_and_the_others_fit_theirs():
    """`mnist` stores the range it measured best on (sigma 10 to 0.2); resolving it against the
    data keeps that range, while a config that stores none gets the fitted one."""
    data = runs.build_data(get_preset("mnist"))
    cfg = runs.resolve_config(get_preset("mnist"), data)
    assert (cfg.sample.sigma_min, cfg.sample.sigma_max) == (0.2, 10.0)
    unset = apply_overrides(get_preset("mnist"), ["sample.sigma_min=0", "sample.sigma_max=0"])
    fitted = runs.resolve_config(unset, data).sample
    assert fitted.sigma_min == pytest.approx(PIXEL_LEVEL) and 25 < fitted.sigma_max < 35  # 29.7: MNIST's widest pair
    run = runs.LoadedRun(cfg, None, AnalyticGaussianDenoiser(SCHEDULE, torch.zeros(1), torch.ones(1)), 0,
                             None, {"kind": "images", "sample_shape": [1, 28, 28]})
    for steps in (None, 10):  # the stored 40 steps, and a user's --steps 10: the same stored range
        plan = runs.sampling_plan(run, steps=steps)
        assert plan.grid == "logsnr-trailing" and plan.grid_opts == {"sigma_min": 0.2, "sigma_max": 10.0}
        assert plan.steps == (steps or 40) and plan.opts == {"eta": 4.0}


def test_bf16_sampling_runs_the_network_in_bf16_and_keeps_the_samples_float32():
    """`sample.precision=bf16`: the UNet's convolutions run in bfloat16, the solver stays float32,
    and the samples match float32 sampling to bf16's rounding. The mnist presets store `auto`:
    bf16 on a CUDA GPU, float32 on a CPU (where bf16 without hardware support ran 8x slower)."""
    cfg = apply_overrides(get_preset("mnist"), ["sample.precision=bf16"])
    assert get_preset("mnist").sample.precision == "auto" and RunConfig().sample.precision == "none"
    data = runs.build_data(cfg)
    torch.manual_seed(0)
    net = runs.build_net(cfg, data).eval()
    with torch.no_grad():
        for w in net.parameters():  # an untrained UNet's zero output layer would hide the rounding
            w.normal_(0.0, 0.05)
    den = runs.build_denoiser(cfg, net)
    seen = []
    hook = den.net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    kw = dict(sampler="dpmpp-2m-sde", steps=4, seed=0, eta=4.0, grid_opts={"sigma_min": 0.2, "sigma_max": 10.0})
    a, _ = generate(den, 8, (1, 28, 28), **kw)
    solver_sees = []
    b, _ = generate(den, 8, (1, 28, 28), precision="bf16", callback=lambda d: solver_sees.append(d["x0_hat"].dtype),
                    **kw)
    hook.remove()
    assert seen[:4] == [torch.float32] * 4 and seen[4:] == [torch.bfloat16] * 4
    assert solver_sees == [torch.float32] * 4  # the network's output is cast back before the solver uses it
    assert a.dtype == b.dtype == torch.float32
    assert 0 < (a - b).abs().max() < 0.1
    run = runs.LoadedRun(cfg, None, den, 0, None, {"kind": "images", "sample_shape": [1, 28, 28]})
    assert runs.sampling_plan(run).kwargs()["precision"] == "bf16"
