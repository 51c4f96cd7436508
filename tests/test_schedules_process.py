"""Schedules and the forward process against closed forms, in float64."""

import math

import pytest
import torch

from denoiselab import losses as L
from denoiselab import process as P
from denoiselab.errors import DenoiselabError
from denoiselab.schedules import SCHEDULES, NoiseSchedule, make_schedule

F64 = torch.float64


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_invariants(name):
    s = make_schedule(name, 1000)
    assert s.betas.dtype == F64
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0))
    assert torch.allclose(s.log_snr, torch.log(s.alpha_bar / (1 - s.alpha_bar)))
    assert s.alpha_bar[-1] < 0.01  # ends near pure noise


def test_linear_matches_ho_et_al():
    s = make_schedule("linear", 1000)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # Known value: alpha_bar_T of the DDPM schedule is about 4.04e-5.
    assert s.alpha_bar[-1].item() == pytest.approx(4.036e-5, rel=1e-3)


def test_cosine_matches_closed_form():
    T, s_ = 1000, 0.008
    s = make_schedule("cosine", T)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert s.alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


def test_custom_betas_and_bad_betas():
    s = make_schedule("custom", betas=[0.1, 0.2, 0.3])
    assert s.T == 3
    assert s.alpha_bar[-1].item() == pytest.approx(0.9 * 0.8 * 0.7)
    for bad in ([0.1, 1.0], [0.0, 0.1], [-0.1], [float("nan")]):
        with pytest.raises(DenoiselabError, match="inside"):
            NoiseSchedule(torch.tensor(bad))
    with pytest.raises(DenoiselabError, match="unknown schedule"):
        make_schedule("zigzag", 10)


def test_fractional_alpha_bar_and_sigma_inverse():
    s = make_schedule("linear", 1000)
    t = torch.arange(1000, dtype=F64)
    assert torch.allclose(s.alpha_bar_at(t), s.alpha_bar, rtol=1e-10)
    assert s.alpha_bar_at(torch.tensor(-1.0)).item() == pytest.approx(1.0)
    tf = torch.tensor([0.0, 3.5, 250.25, 998.9], dtype=F64)
    back = s.t_from_sigma(((1 - s.alpha_bar_at(tf)) / s.alpha_bar_at(tf)).sqrt())
    assert torch.allclose(back, tf, atol=1e-6)


def test_q_sample_moments():
    s = make_schedule("linear", 1000)
    x0 = torch.full((200_000, 1), 1.5, dtype=F64)
    g = torch.Generator().manual_seed(0)
    for t in (0, 100, 999):
        tt = torch.full((len(x0),), t)
        xt = P.q_sample(s, x0, tt, torch.randn(x0.shape, generator=g, dtype=F64))
        ab = s.alpha_bar[t].item()
        assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 1.5, abs=0.01)
        assert xt.var().item() == pytest.approx(1 - ab, rel=0.02, abs=1e-5)


def test_posterior_matches_ho_eqs_6_7_and_bayes():
    s = make_schedule("cosine", 100)
    t = torch.tensor(40)
    c0, ct, var, _ = P.posterior_coefs(s, t)
    ab, abp, b = s.alpha_bar[40], s.alpha_bar[39], s.betas[40]
    # Ho et al. 2020, eq. 7.
    assert c0.item() == pytest.approx((abp.sqrt() * b / (1 - ab)).item(), rel=1e-12)
    assert ct.item() == pytest.approx(((1 - b).sqrt() * (1 - abp) / (1 - ab)).item(), rel=1e-12)
    assert var.item() == pytest.approx(s.beta_tilde[40].item(), rel=1e-12)
    # Bayes: q(x_{t-1}|x_0) = N(sqrt(abp) x0, 1-abp), q(x_t|x_{t-1}) = N(sqrt(1-b) x_{t-1}, b).
    prec = 1 / (1 - abp) + (1 - b) / b
    assert var.item() == pytest.approx((1 / prec).item(), rel=1e-10)
    x0, xt = torch.tensor([0.7], dtype=F64), torch.tensor([-0.3], dtype=F64)
    mean, _ = P.q_posterior(s, x0, xt, t.expand(1))
    want = (abp.sqrt() * x0 / (1 - abp) + (1 - b).sqrt() * xt / b) / prec
    assert torch.allclose(mean, want, rtol=1e-10)


def test_posterior_empirical_by_sampling():
    """Draw x_{t-1} ~ q(.|x0), x_t ~ q(.|x_{t-1}), keep x_t in a thin bin: match the posterior."""
    s = make_schedule("linear", 50, beta_start=0.01, beta_end=0.2)
    g = torch.Generator().manual_seed(1)
    n, t = 2_000_000, 20
    x0 = torch.full((n,), 0.5, dtype=F64)
    xp = s.alpha_bar[t - 1].sqrt() * x0 + (1 - s.alpha_bar[t - 1]).sqrt() * torch.randn(n, generator=g, dtype=F64)
    xt = (1 - s.betas[t]).sqrt() * xp + s.betas[t].sqrt() * torch.randn(n, generator=g, dtype=F64)
    sel = (xt - 0.2).abs() < 0.01
    mean, var = P.q_posterior(s, torch.tensor([0.5], dtype=F64), torch.tensor([0.2], dtype=F64), torch.tensor([t]))
    assert xp[sel].mean().item() == pytest.approx(mean.item(), abs=0.01)
    assert xp[sel].var().item() == pytest.approx(var.item(), rel=0.05)


@pytest.mark.parametrize("t", [0, 1, 500, 999])
def test_eps_x0_v_round_trips(t):
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 3, generator=g, dtype=F64), torch.randn(8, 3, generator=g, dtype=F64)
    a, sg = P.scales(s, torch.full((8,), t), x0)
    xt = a * x0 + sg * eps
    v = P.v_from(x0, eps, a, sg)
    assert torch.allclose(P.x0_from_eps(xt, eps, a, sg), x0, atol=1e-8)
    assert torch.allclose(P.eps_from_x0(xt, x0, a, sg), eps, atol=1e-6 if t == 0 else 1e-9)
    assert torch.allclose(P.x0_from_v(xt, v, a, sg), x0, atol=1e-10)
    assert torch.allclose(P.eps_from_v(xt, v, a, sg), eps, atol=1e-10)


def test_training_targets_are_zero_loss_for_the_exact_predictor():
    s = make_schedule("linear", 100)
    x0 = torch.randn(16, 2, dtype=F64)
    eps = torch.randn(16, 2, dtype=F64)
    t = torch.randint(0, 100, (16,))
    for param in ("eps", "x0", "v"):
        def oracle(xt, tt, cond, param=param):
            a, sg = P.scales(s, t, x0)
            return P.training_target(param, x0, eps, a, sg)
        assert L.diffusion_loss(oracle, s, param, x0, t, eps).item() < 1e-20


@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_loss_is_the_same_x0_loss_whatever_the_network_predicts(gamma):
    """Hang et al. 2023, sec. 3.4: the weighted loss is min(SNR, gamma) ||x0_hat - x0||^2 for an
    eps, x0 or v network alike. One fixed (wrong) guess of x0, expressed in each parameterization,
    must give that closed form."""
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(64, 3, generator=g, dtype=F64), torch.randn(64, 3, generator=g, dtype=F64)
    x0_guess = x0 + 0.3 * torch.randn(64, 3, generator=g, dtype=F64)
    t = torch.arange(0, 1000, 1000 // 64)[:64]
    a, sg = P.scales(s, t, x0)
    xt = a * x0 + sg * eps
    eps_guess = P.eps_from_x0(xt, x0_guess, a, sg)
    guesses = {"x0": x0_guess, "eps": eps_guess, "v": P.v_from(x0_guess, eps_guess, a, sg)}
    snr = s.alpha_bar[t] / (1 - s.alpha_bar[t])
    expected = (snr.clamp(max=gamma)[:, None] * (x0_guess - x0).pow(2)).mean()
    assert ((snr > gamma).any() and (snr < gamma).any())  # both sides of the clip are exercised
    for param, guess in guesses.items():
        loss = L.diffusion_loss(lambda *_: guess, s, param, x0, t, eps, min_snr=gamma)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-9), param
    # gamma = 0 is L_simple, unweighted.
    plain = L.diffusion_loss(lambda *_: eps_guess, s, "eps", x0, t, eps)
    assert plain.item() == pytest.approx((eps_guess - eps).pow(2).mean().item(), rel=1e-12)


def test_lognormal_t_sampling_gives_the_edm_noise_distribution():
    """Karras et al. 2022, Table 1: ln sigma ~ N(P_mean, P_std^2). The sampled fractional t, mapped
    back to sigma_t = sqrt((1 - abar_t) / abar_t), must have that mean and spread (the clamp to the
    schedule's ends touches under 0.5% of draws at these settings), stay inside 0..T-1, and
    repeat for the same generator; ``uniform`` stays the integer draw it always was."""
    s = make_schedule("linear", 1000)
    t = P.sample_t(s, 200_000, torch.Generator().manual_seed(0), "lognormal", -0.5, 0.8)
    assert t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 999
    ab = s.alpha_bar_at(t)
    log_sigma = ((1 - ab) / ab).sqrt().log()
    assert log_sigma.mean().item() == pytest.approx(-0.5, abs=0.01)
    assert log_sigma.std().item() == pytest.approx(0.8, abs=0.01)
    again = P.sample_t(s, 200_000, torch.Generator().manual_seed(0), "lognormal", -0.5, 0.8)
    assert torch.equal(t, again)
    u = P.sample_t(s, 1000, torch.Generator().manual_seed(3))
    assert torch.equal(u, torch.randint(0, 1000, (1000,), generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="t sampling"):
        P.sample_t(s, 4, torch.Generator(), "beta")


def test_range_t_sampling_puts_the_batch_where_the_sampler_evaluates():
    """``range``: a fraction p_full uniform over all T steps, the rest uniform over the integer steps
    whose sigma_t lies in the range. The law is a mixture, so the share inside the range is
    (1 - p_full) + p_full * (steps inside / T) and every step inside is equally likely; an empty
    range is one clear error."""
    s = make_schedule("linear", 1000)
    inside = ((s.sigmas >= 0.15) & (s.sigmas <= 15.0))
    k = int(inside.sum())
    n = 400_000
    t = P.sample_t(s, n, torch.Generator().manual_seed(0), "range", sigma_range=(0.15, 15.0), p_full=0.1)
    assert t.dtype == torch.int64 and 0 <= t.min() and t.max() <= 999
    share = inside[t].double().mean().item()
    assert share == pytest.approx(0.9 + 0.1 * k / 1000, abs=0.003)
    counts = torch.bincount(t, minlength=1000).double() / n
    # Inside: 0.9 / k + 0.1 / 1000 each, outside 0.1 / 1000 each; flat within each part (the
    # relative spread of the counts no wider than the binomial's 1 / sqrt(n p)).
    for part, p in ((inside, 0.9 / k + 1e-4), (~inside, 1e-4)):
        rel = counts[part] / p - 1
        assert abs(rel.mean().item()) < 0.01
        assert rel.std().item() < 1.2 / math.sqrt(n * p)
    assert torch.equal(t, P.sample_t(s, n, torch.Generator().manual_seed(0), "range", sigma_range=(0.15, 15.0), p_full=0.1))
    only = P.sample_t(s, 10_000, torch.Generator().manual_seed(1), "range", sigma_range=(0.15, 15.0), p_full=0.0)
    assert bool(inside[only].all())
    with pytest.raises(DenoiselabError, match="widen diffusion.t_sigma_min"):
        P.sample_t(s, 4, torch.Generator(), "range", sigma_range=(500.0, 600.0))


def test_input_perturbation_moves_the_input_and_keeps_the_target():
    """Ning et al. 2023, eq. 9: the network sees y_t = a x0 + s (eps + gamma xi) and is still
    trained toward eps (its x0 / v targets likewise built from the unperturbed eps)."""
    s = make_schedule("linear", 100)
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(16, 2, generator=g, dtype=F64), torch.randn(16, 2, generator=g, dtype=F64)
    extra = 0.1 * torch.randn(16, 2, generator=g, dtype=F64)
    t = torch.randint(0, 100, (16,), generator=g)
    a, sg = P.scales(s, t, x0)
    for param in ("eps", "x0", "v"):
        seen = {}

        def oracle(xt, tt, cond, param=param):
            seen["xt"] = xt
            return P.training_target(param, x0, eps, a, sg)
        assert L.diffusion_loss(oracle, s, param, x0, t, eps, perturbation=extra).item() < 1e-20
        assert torch.allclose(seen["xt"], a * x0 + sg * (eps + extra), atol=1e-12)
        # The net answering for the input it saw (as if eps + gamma xi were the noise) is penalised
        # by exactly the perturbation, in eps terms.
        shifted = lambda xt, tt, cond: eps + extra  # noqa: E731
        loss = L.diffusion_loss(shifted, s, "eps", x0, t, eps, perturbation=extra)
        assert loss.item() == pytest.approx(extra.pow(2).mean().item(), rel=1e-12)


def test_the_objective_perturbs_the_input_only_when_asked():
    """``diffusion.input_perturbation`` = gamma: the training objective feeds the net
    a x0 + s (eps + gamma xi), xi a second draw of the run's generator, and scores it against eps;
    gamma = 0 (every preset's default) draws nothing extra and is L_simple as before."""
    from denoiselab import runs
    from denoiselab.config import apply_overrides
    from denoiselab.presets import get_preset
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(5))

    def run(gamma):
        cfg = apply_overrides(get_preset("swiss-roll"), [f"diffusion.input_perturbation={gamma}"])
        seen = {}

        def net(xt, tt, cond):
            seen["xt"], seen["t"] = xt, tt
            return torch.zeros_like(xt)
        g = torch.Generator().manual_seed(7)
        loss = runs.build_objective(cfg)(net, x0, None, g)
        return loss, seen, runs.build_schedule(cfg.diffusion)

    plain, seen0, schedule = run(0.0)
    # Replay the generator: t, eps, then (only with gamma > 0) xi.
    g = torch.Generator().manual_seed(7)
    d = get_preset("swiss-roll").diffusion
    t = P.sample_t(schedule, 32, g, d.t_sampling, d.p_mean, d.p_std, (d.t_sigma_min, d.t_sigma_max), d.t_full)
    eps = torch.randn(x0.shape, generator=g)
    xi = torch.randn(x0.shape, generator=g)
    a, sg = P.scales(schedule, t, x0)
    assert torch.allclose(seen0["xt"], a * x0 + sg * eps, atol=1e-6)
    assert plain.item() == pytest.approx(eps.pow(2).mean().item(), rel=1e-5)  # zero net: the eps target
    perturbed, seen1, _ = run(0.1)
    assert torch.allclose(seen1["xt"], a * x0 + sg * (eps + 0.1 * xi), atol=1e-6)
    assert perturbed.item() == pytest.approx(plain.item(), rel=1e-6)  # same eps target
