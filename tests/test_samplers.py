"""DDPM and DDIM on the analytic optimal denoiser of Gaussian data: no network needed."""

import pytest
import torch

from denoiselab.denoiser import AnalyticGaussianDenoiser, AnalyticMixtureDenoiser, Denoiser
from denoiselab.errors import DenoiselabError
from denoiselab.rng import SampleNoise
from denoiselab.samplers import discrete_timesteps, initial_noise, sample_ddim, sample_ddpm
from denoiselab.samplers.api import generate
from denoiselab.schedules import make_schedule

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)
VAR = torch.tensor([0.25, 2.0], dtype=F64)


@pytest.fixture(scope="module")
def gauss():
    return AnalyticGaussianDenoiser(make_schedule("linear", 1000), MU, VAR)


def test_spacings_match_the_usual_grids():
    assert discrete_timesteps(1000, 50, "leading")[:3].tolist() == [980, 960, 940]
    assert discrete_timesteps(1000, 50, "leading")[-1].item() == 0
    assert discrete_timesteps(1000, 50, "trailing")[:2].tolist() == [999, 979]
    assert discrete_timesteps(1000, 50, "trailing")[-1].item() == 19
    ls = discrete_timesteps(1000, 10, "linspace")
    assert ls[0].item() == 999 and ls[-1].item() == 0 and len(ls) == 10
    assert discrete_timesteps(1000, 1000, "leading").tolist() == list(range(999, -1, -1))
    with pytest.raises(DenoiselabError):
        discrete_timesteps(1000, 0)
    with pytest.raises(DenoiselabError):
        discrete_timesteps(1000, 10, "sideways")


def _moments(x):
    return x.mean(0), x.var(0)


@pytest.mark.parametrize("sampler,steps,opts", [
    ("ddpm", 1000, {}),
    ("ddpm", 1000, {"variance": "beta"}),
    ("ddim", 250, {"eta": 0.0}),
    ("ddim", 250, {"eta": 1.0}),
    ("dpmpp-2m-sde", 100, {}),
    ("dpmpp-2m-sde", 100, {"eta": 2.0}),  # any eta >= 0 keeps the marginals
    ("dpmpp-3m-sde", 100, {}),
    ("dpmpp-3m-sde", 100, {"eta": 4.0}),
    # eta may change along the way (SA-Solver's tau(t)): the marginals are kept. Switch to eta 8
    # at sigma 1, in the middle of both dimensions' range (data std 0.5 and 1.4).
    ("dpmpp-2m-sde", 100, {"eta": 4.0, "eta_low": 8.0, "eta_switch": 1.0}),
    ("dpmpp-2m-sde", 100, {"eta": 0.0, "eta_low": 4.0, "eta_switch": 1.0}),
    ("dpmpp-3m-sde", 100, {"eta": 4.0, "eta_low": 0.0, "eta_switch": 1.0}),
])
def test_samplers_recover_gaussian_data(gauss, sampler, steps, opts):
    x, nfe = generate(gauss, 8000, (2,), sampler=sampler, steps=steps, seed=3, **opts)
    assert nfe == steps
    m, v = _moments(x.double())
    assert torch.allclose(m, MU, atol=0.06), m
    # sigma^2 = beta is the upper bound: it leaves slightly more variance (Ho et al. sec. 3.2).
    tol = 0.12 if opts.get("variance") == "beta" else 0.07
    assert torch.allclose(v, VAR, rtol=tol), v


def test_ddim_variance_error_falls_with_steps(gauss):
    """Few-step DDIM under-disperses (a discretisation error, not noise): it must shrink with steps."""
    errs = []
    for steps in (10, 50, 200):
        x, _ = generate(gauss, 4000, (2,), sampler="ddim", steps=steps, seed=3)
        errs.append((x.double().var(0) / VAR - 1).abs().max().item())
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05


def test_ddim_eta0_is_deterministic_and_exact_for_gaussians(gauss):
    """For Gaussian data the probability-flow ODE is linear: DDIM maps x_T to mu + sqrt(var) x_T."""
    noise = SampleNoise(0, 4096)
    xT = initial_noise(noise, 4096, (2,)).double()
    ts = discrete_timesteps(1000, 200, "trailing")
    out = sample_ddim(gauss, xT, ts)
    assert torch.equal(out, sample_ddim(gauss, xT, ts))
    want = MU + VAR.sqrt() * xT
    assert (out - want).abs().max().item() < 0.08  # first-order discretisation error of 200 steps


def test_ddim_eta1_equals_ddpm_posterior(gauss):
    """Song et al. 2021: eta = 1 gives the DDPM posterior, so with the same noise the paths agree."""
    noise = SampleNoise(7, 256)
    xT = initial_noise(noise, 256, (2,)).double()
    ts = discrete_timesteps(1000, 25, "leading")
    a = sample_ddim(gauss, xT, ts, noise=noise, eta=1.0)
    b = sample_ddpm(gauss, xT, ts, noise=noise, variance="beta_tilde")
    assert torch.allclose(a, b, atol=1e-9)


def test_sample_i_depends_only_on_its_seed(gauss):
    big, _ = generate(gauss, 64, (2,), sampler="ddpm", steps=20, seed=5)
    small, _ = generate(gauss, 16, (2,), sampler="ddpm", steps=20, seed=5)
    chunked, _ = generate(gauss, 64, (2,), sampler="ddpm", steps=20, seed=5, batch_size=10)
    assert torch.equal(big[:16], small)
    assert torch.equal(big, chunked)
    other, _ = generate(gauss, 16, (2,), sampler="ddpm", steps=20, seed=6)
    assert not torch.allclose(other, small)


def test_callback_sees_every_step(gauss):
    seen = []
    generate(gauss, 8, (2,), sampler="ddim", steps=10, seed=0, callback=lambda d: seen.append((d["i"], d["t"], d["x0_hat"].shape)))
    assert [s[0] for s in seen] == list(range(10))
    assert seen[0][1] == 900 and seen[-1][1] == 0


def test_progress_bar_counts_every_step_and_changes_nothing(gauss, monkeypatch):
    import tqdm.auto

    bars = []
    real = tqdm.auto.tqdm

    def spy(*a, **k):
        k["delay"] = 0
        bars.append(real(*a, **k))
        return bars[-1]

    monkeypatch.setattr(tqdm.auto, "tqdm", spy)
    seen = []
    with_bar, _ = generate(gauss, 30, (2,), sampler="ddpm", steps=20, seed=3, batch_size=8, progress=True,
                           callback=lambda d: seen.append(d["i"]))
    plain, _ = generate(gauss, 30, (2,), sampler="ddpm", steps=20, seed=3, batch_size=8)
    assert torch.equal(with_bar, plain)
    assert len(bars) == 1 and bars[0].total == 20 * 4 and bars[0].n == 20 * 4
    assert len(seen) == 20 * 4  # the user's callback still sees every step


def test_mixture_denoiser_recovers_modes():
    means = torch.tensor([[-3.0, 0.0], [3.0, 0.0]], dtype=F64)
    d = AnalyticMixtureDenoiser(make_schedule("cosine", 1000), means, torch.tensor([0.1, 0.1]), torch.tensor([0.3, 0.7]))
    x, _ = generate(d, 8000, (2,), sampler="ddpm", steps=250, seed=1)
    right = (x[:, 0] > 0).double().mean().item()
    assert right == pytest.approx(0.7, abs=0.03)
    assert x[x[:, 0] > 0][:, 0].mean().item() == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_denoiser_parameterizations_agree(param):
    """A net emitting the exact target of each parameterization gives the same (x0_hat, eps_hat)."""
    from denoiselab import process as P

    s = make_schedule("linear", 1000)
    x0, eps = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    t = torch.tensor([0, 10, 200, 700, 999])
    a, sg = P.scales(s, t, x0)
    xt = a * x0 + sg * eps
    net = lambda x, tt, c: P.training_target(param, x0, eps, a, sg)  # noqa: E731
    x0_hat, eps_hat = Denoiser(net, s, param)(xt, t.double())
    assert torch.allclose(x0_hat, x0, atol=1e-6) and torch.allclose(eps_hat, eps, atol=1e-6 if param != "x0" else 2e-4)
