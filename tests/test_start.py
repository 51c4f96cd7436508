"""Where sampling starts: the Gaussian with the noised data's first two moments (samplers.start)."""

import math

import pytest
import torch

from denoiselab.denoiser import AnalyticGaussianDenoiser
from denoiselab.errors import DenoiselabError
from denoiselab.samplers import is_deterministic
from denoiselab.samplers.api import generate
from denoiselab.samplers.common import scales_at
from denoiselab.samplers.start import DataMoments, fit_moments
from denoiselab.schedules import make_schedule

F64 = torch.float64
MU = torch.tensor([1.0, -2.0], dtype=F64)
VAR = torch.tensor([0.25, 2.0], dtype=F64)


def _low_rank_data(n=20000, d=12, k=3, seed=0):
    """Data whose covariance is exactly of probabilistic-PCA form: k strong directions, rho elsewhere."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=F64))
    var = torch.tensor([9.0, 4.0, 2.0], dtype=F64)[:k]
    rho = 0.1
    mean = torch.linspace(-1, 1, d, dtype=F64)
    z = torch.randn(n, d, generator=g, dtype=F64)
    cov = basis @ torch.diag(var - rho) @ basis.T + rho * torch.eye(d, dtype=F64)
    x = mean + z @ torch.linalg.cholesky(cov).T
    return x, mean, basis, var, rho, cov


def test_fit_recovers_mean_directions_and_the_rest():
    x, mean, basis, var, rho, _ = _low_rank_data()
    m = fit_moments(x.reshape(-1, 3, 4), k=3)  # any sample shape: the moments are of the flattened data
    assert torch.allclose(m.mean, mean, atol=0.05)
    assert torch.allclose(m.var, var, rtol=0.05)
    assert float(m.rest) == pytest.approx(rho, rel=0.05)
    # The same subspace: the projector onto the fitted basis is the true one.
    assert torch.allclose(m.basis @ m.basis.T, basis @ basis.T, atol=0.03)
    assert torch.allclose(m.basis.T @ m.basis, torch.eye(3, dtype=F64), atol=1e-10)


def test_all_components_give_the_full_covariance_and_no_rest():
    x, *_ = _low_rank_data(n=500, d=5, k=3)
    m = fit_moments(x, k=64)  # more asked than dimensions: all 5
    assert m.basis.shape == (5, 5) and float(m.rest) == 0.0
    full = m.basis @ torch.diag(m.var) @ m.basis.T
    assert torch.allclose(full, torch.cov(x.T), atol=1e-10)


def test_fit_uses_at_most_max_rows_and_is_deterministic():
    x, *_ = _low_rank_data(n=3000)
    a, b = fit_moments(x, k=3, max_rows=1000), fit_moments(x, k=3, max_rows=1000)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.basis, b.basis)
    assert torch.equal(a.mean, x[torch.linspace(0, 2999, 1000).long()].mean(0))
    with pytest.raises(DenoiselabError, match="at least 2 samples"):
        fit_moments(x[:1])


def test_randomized_svd_for_wide_data_matches_the_exact_one():
    x, *_ = _low_rank_data(n=600, d=12, k=3)
    import denoiselab.samplers.start as start

    exact = fit_moments(x, k=3)
    old = start.EXACT_BELOW
    start.EXACT_BELOW = 4  # force the randomized path on this small data
    try:
        approx = fit_moments(x, k=3)
    finally:
        start.EXACT_BELOW = old
    assert torch.allclose(approx.var, exact.var, rtol=1e-6)
    assert torch.allclose(approx.basis @ approx.basis.T, exact.basis @ exact.basis.T, atol=1e-6)
    assert float(approx.rest) == pytest.approx(float(exact.rest), rel=1e-6)


def test_draw_has_the_noised_datas_mean_and_covariance():
    """x_T = a x0 + s eps has mean a mu and covariance a^2 Cov[x0] + s^2 I (Ho et al. 2020, eq. 4)."""
    x, mean, basis, var, rho, cov = _low_rank_data()
    m = DataMoments(mean, basis, var, torch.tensor(rho, dtype=F64))  # exactly the data's covariance
    a, s = 0.6, 0.8
    z = torch.randn(200_000, 12, generator=torch.Generator().manual_seed(1), dtype=F64)
    xt = m.draw(z, a, s)
    assert torch.allclose(xt.mean(0), a * mean, atol=0.02)
    assert torch.allclose(torch.cov(xt.T), a * a * cov + s * s * torch.eye(12, dtype=F64), atol=0.05)


def test_draw_is_the_standard_start_at_pure_noise_and_keeps_shape_and_dtype():
    x, *_ = _low_rank_data(n=500)
    m = fit_moments(x.reshape(-1, 1, 3, 4).float(), k=3)
    z = torch.randn(7, 1, 3, 4)
    out = m.draw(z, 0.0, 1.0)
    assert out.shape == z.shape and out.dtype == z.dtype
    assert torch.allclose(out, z, atol=1e-6)
    with pytest.raises(DenoiselabError, match="--start gaussian"):
        m.draw(torch.randn(2, 5), 0.5, 0.5)


def test_tensors_round_trip():
    x, *_ = _low_rank_data(n=500)
    m = fit_moments(x, k=3)
    back = DataMoments.from_tensors({k.split(".", 1)[1]: v for k, v in m.tensors().items()})
    assert torch.allclose(back.basis, m.basis, atol=1e-6) and torch.allclose(back.var, m.var, rtol=1e-6)
    assert DataMoments.from_tensors({}) is None


def test_an_ode_from_a_moderate_noise_level_recovers_gaussian_data_only_from_the_moments():
    """Gaussian data: the moment-matched start is the exact marginal, so the probability-flow ODE
    maps it onto the data; N(0, I) at sigma 2 leaves the mean short by the flow's own factor."""
    den = AnalyticGaussianDenoiser(make_schedule("linear", 1000), MU, VAR)
    m = DataMoments(MU, torch.eye(2, dtype=F64), VAR, torch.tensor(0.0, dtype=F64))
    kw = dict(sampler="dpmpp-2m", steps=60, grid="logsnr", grid_opts={"sigma_min": 0.02, "sigma_max": 2.0}, seed=4)
    x, _ = generate(den, 8000, (2,), start=m, **kw)
    assert torch.allclose(x.double().mean(0), MU, atol=0.05)
    assert torch.allclose(x.double().var(0), VAR, rtol=0.06)
    plain, _ = generate(den, 8000, (2,), **kw)
    # The exact flow of Gaussian data is x0 = mu + sqrt(VAR / (a^2 VAR + s^2)) (x_t - a mu) per
    # coordinate; from mean 0 it lands at mu (1 - a sqrt(VAR / (a^2 VAR + s^2))).
    from denoiselab.samplers.grids import time_grid

    a, s = scales_at(den, float(time_grid(den, "logsnr", 60, sigma_min=0.02, sigma_max=2.0)[0]))
    want = MU * (1 - a * torch.sqrt(VAR / (a * a * VAR + s * s)))
    assert torch.allclose(plain.double().mean(0), want, atol=0.05)
    assert not torch.allclose(plain.double().mean(0), MU, atol=0.3)


def test_deterministic_samplers_are_named_by_their_noise_options():
    assert is_deterministic("ddim", {}) and is_deterministic("dpmpp-2m", {}) and is_deterministic("heun", {})
    assert is_deterministic("dpmpp-2m-sde", {"eta": 0.0}) and is_deterministic("euler-ancestral", {"eta": 0})
    assert not is_deterministic("dpmpp-2m-sde", {})  # its default eta is 1
    assert not is_deterministic("ddim", {"eta": 1.0}) and not is_deterministic("heun", {"s_churn": 1.0})
    assert not is_deterministic("ddpm", {})


def test_consistency_sampling_carries_its_start_though_it_renoises():
    from denoiselab.samplers import carries_start

    assert not is_deterministic("consistency", {}) and carries_start("consistency", {})
    assert carries_start("ddim", {}) and carries_start("dpmpp-2m-sde", {"eta": 0.0})
    assert not carries_start("ddpm", {}) and not carries_start("dpmpp-2m-sde", {})


def test_the_moment_start_is_a_fixed_map_of_each_samples_own_noise():
    """Sample i still depends on (seed, i) alone: batching and offsets never change it."""
    den = AnalyticGaussianDenoiser(make_schedule("linear", 1000), MU, VAR)
    m = DataMoments(MU, torch.eye(2, dtype=F64), VAR, torch.tensor(0.0, dtype=F64))
    kw = dict(sampler="ddim", steps=10, seed=2, start=m)
    whole, _ = generate(den, 12, (2,), **kw)
    parts, _ = generate(den, 12, (2,), batch_size=5, **kw)
    tail, _ = generate(den, 4, (2,), offset=8, **kw)
    assert torch.equal(whole, parts) and torch.equal(whole[8:], tail)
    assert math.isfinite(float(whole.abs().max()))


def test_flipped_training_data_gives_mirror_symmetric_moments():
    from denoiselab.data import TensorData
    from denoiselab.runs import fit_data_moments

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 4, 4, generator=g)
    x[:, :, :, 0] += 2.0  # a bright left column: the mirrored half puts it on the right
    plain = fit_data_moments(TensorData(x, kind="images"))
    both = fit_data_moments(TensorData(x, kind="images", hflip=True))
    assert plain.mean.reshape(4, 4)[:, 0].mean() > plain.mean.reshape(4, 4)[:, 3].mean() + 1.5
    m = both.mean.reshape(4, 4)
    assert torch.allclose(m, m.flip(-1), atol=1e-6)


def test_large_images_are_fitted_on_a_bounded_number_of_values(monkeypatch):
    import denoiselab.samplers.start as start

    g = torch.Generator().manual_seed(0)
    d, n = 2048, 400  # above EXACT_BELOW: the randomized SVD
    basis, _ = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=F64))
    x = (torch.randn(n, 3, generator=g, dtype=F64) * torch.tensor([6.0, 4.0, 3.0], dtype=F64)) @ basis.T
    x = (x + 0.1 * torch.randn(n, d, generator=g, dtype=F64)).float().reshape(n, 2, 32, 32)
    monkeypatch.setattr(start, "MAX_ELEMENTS", 300 * d)  # room for 300 of the 400 rows
    m = fit_moments(x, k=3)
    kept = x[torch.linspace(0, n - 1, 300).long()].reshape(300, -1).double()
    assert torch.allclose(m.mean, kept.mean(0), atol=1e-6)  # the evenly spaced 300, in float32
    assert torch.allclose(m.var.sqrt(), torch.tensor([6.0, 4.0, 3.0], dtype=F64), rtol=0.15)
    assert torch.allclose(m.basis @ m.basis.T @ basis, basis, atol=0.05)  # the same subspace
    assert float(m.rest) == pytest.approx(0.01, rel=0.2)
