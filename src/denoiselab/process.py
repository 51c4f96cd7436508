"""The forward process, its posterior, and the conversions between predictions.

Glossary (Ho et al. 2020; Salimans & Ho 2022 for v; Lipman et al. 2023 / Liu et al. 2023 for flows):

| symbol      | meaning                                                                  |
| ----------- | ------------------------------------------------------------------------ |
| ``x0``      | clean data x_0; ``x0_hat`` a network's estimate of it                    |
| ``xt``      | noisy sample x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps     |
| ``eps``     | the standard normal noise; ``eps_hat`` its estimate                      |
| ``v``       | sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0  (Salimans & Ho 2022, 4)   |
| ``a``, ``s``| sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), the signal and noise scales |

Flow matching (rectified flow) uses a continuous time tau in [0, 1] with the interpolant
x_tau = (1 - tau) eps + tau x0 and the velocity target u = x0 - eps.
"""

from __future__ import annotations

import torch

from .errors import DenoiselabError
from .schedules import NoiseSchedule


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars (N,) -> (N, 1, ..., 1) in the dtype and on the device of ``like``.

    Schedules stay float64 on the CPU (mps has no float64); only these per-sample coefficients
    travel, cast first, then moved."""
    v = torch.as_tensor(v)
    if v.ndim == 0:
        v = v.expand(like.shape[0])
    return v.to(like.dtype).to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


def scales(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, s) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) broadcast against ``like``; t may be fractional."""
    ab = schedule.alpha_bar_at(t)
    return _bcast(ab.sqrt(), like), _bcast((1 - ab).sqrt(), like)


# -- Forward process ----------------------------------------------------------------------

def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I); Ho et al. 2020, eq. 4."""
    a, s = scales(schedule, t, x0)
    return a * x0 + s * eps


def q_mean_var(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, s = scales(schedule, t, x0)
    return a * x0, (s * s).expand_as(x0)


def posterior_coefs(schedule: NoiseSchedule, t: torch.Tensor, s: torch.Tensor | None = None):
    """Coefficients of q(x_s | x_t, x_0) for s < t (s = t - 1 by default; s = -1 means clean data).

    Ho et al. 2020, eqs. 6-7, generalised to any earlier step s (as in respacing, Nichol &
    Dhariwal 2021): with alpha_{t|s} = abar_t / abar_s and beta_{t|s} = 1 - alpha_{t|s},
      mean = sqrt(abar_s) beta_{t|s} / (1 - abar_t) x_0 + sqrt(alpha_{t|s}) (1 - abar_s) / (1 - abar_t) x_t
      var  = (1 - abar_s) / (1 - abar_t) beta_{t|s}
    Returns (coef_x0, coef_xt, var, beta_{t|s}) as float64 tensors.
    """
    t = torch.as_tensor(t, dtype=torch.float64)
    s = t - 1 if s is None else torch.as_tensor(s, dtype=torch.float64)
    ab_t = schedule.alpha_bar_at(t)
    ab_s = schedule.alpha_bar_at(s)
    alpha_ts = ab_t / ab_s
    beta_ts = 1 - alpha_ts
    coef_x0 = ab_s.sqrt() * beta_ts / (1 - ab_t)
    coef_xt = alpha_ts.sqrt() * (1 - ab_s) / (1 - ab_t)
    var = (1 - ab_s) / (1 - ab_t) * beta_ts
    return coef_x0, coef_xt, var, beta_ts


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, s: torch.Tensor | None = None):
    """Mean and variance of q(x_s | x_t, x_0); Ho et al. 2020, eqs. 6-7."""
    c0, ct, var, _ = posterior_coefs(schedule, t, s)
    mean = _bcast(c0, xt) * x0 + _bcast(ct, xt) * xt
    return mean, _bcast(var, xt).expand_as(xt)


# -- Conversions between predictions (all exact, from x_t = a x0 + s eps) -----------------

def x0_from_eps(xt, eps, a, s):
    return (xt - s * eps) / a


def eps_from_x0(xt, x0, a, s):
    return (xt - a * x0) / s


def v_from(x0, eps, a, s):
    """Salimans & Ho 2022, sec. 4: v = a eps - s x0."""
    return a * eps - s * x0


def x0_from_v(xt, v, a, s):
    # a^2 + s^2 = 1: x0 = a x_t - s v, eps = s x_t + a v.
    return a * xt - s * v


def eps_from_v(xt, v, a, s):
    return s * xt + a * v


# -- Flow matching / rectified flow -------------------------------------------------------

# Flow networks see tau * 1000, the range of the VP step index their time embeddings are built for.
FLOW_TIME_SCALE = 1000.0


def flow_interpolant(x0: torch.Tensor, eps: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """x_tau = (1 - tau) eps + tau x0; tau = 0 is noise, tau = 1 is data (Lipman et al. 2023, eq. 22 with sigma_min = 0)."""
    tau = _bcast(tau, x0)
    return (1 - tau) * eps + tau * x0


def flow_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The conditional velocity d x_tau / d tau = x0 - eps (Liu et al. 2023, eq. 1)."""
    return x0 - eps


# -- Training objectives: one line each, so they compare by eye (after EDM's loss.py) ---------

def training_target(parameterization: str, x0, eps, a, s):
    """What the network regresses onto: eps (Ho et al. 2020, eq. 14), x0, or v (Salimans & Ho 2022)."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return v_from(x0, eps, a, s)
    raise ValueError(f"unknown parameterization {parameterization!r}")


def sample_t(schedule: NoiseSchedule, n: int, generator: torch.Generator, kind: str = "uniform",
             p_mean: float = -1.2, p_std: float = 1.2, sigma_range: tuple | None = None,
             p_full: float = 0.0) -> torch.Tensor:
    """Training time steps: ``uniform`` integers over 0..T-1 (Ho et al. 2020, Algorithm 1), or
    ``lognormal``: ln sigma ~ N(p_mean, p_std^2) (Karras et al. 2022, Table 1, "EDM" column),
    mapped to the fractional t with that VE noise level (sigma_t = sqrt((1 - abar_t) / abar_t)) and
    clamped to the schedule's range. Uniform t on the linear schedule spends half the batch at
    sigma > 3.4, where images in [-1, 1] are almost pure noise; the log-normal puts 95% of it
    between sigma = 0.03 and 3.3, where the samples' detail is decided.

    ``range``: uniform over the integer steps whose sigma_t lies in ``sigma_range``, except a
    fraction ``p_full`` of the batch drawn uniform over all T steps (importance sampling of the
    noise levels a sampler with that range visits; the full-range share keeps the network trained
    at every t, for DDPM's 1000 steps, SDEdit and the other grids). On the linear schedule, uniform
    t spends 33% of the batch above sigma 10; range (0.15, 15) with p_full 0.1 puts 87% of it in
    sigma 0.2..10 against uniform t's 62%."""
    if kind == "uniform":
        return torch.randint(0, schedule.T, (n,), generator=generator)
    if kind == "range":
        if sigma_range is None:
            raise ValueError("t sampling 'range' needs sigma_range = (sigma_lo, sigma_hi)")
        inside = steps_in_range(schedule, *sigma_range)
        t_all = torch.randint(0, schedule.T, (n,), generator=generator)
        t_in = inside[torch.randint(0, inside.numel(), (n,), generator=generator)]
        full = torch.rand(n, generator=generator) < p_full
        return torch.where(full, t_all, t_in)
    if kind == "lognormal":
        sigma = (p_mean + p_std * torch.randn(n, generator=generator, dtype=torch.float64)).exp()
        return schedule.t_from_sigma(sigma).float()
    raise ValueError(f"unknown t sampling {kind!r}")


def steps_in_range(schedule: NoiseSchedule, lo: float, hi: float) -> torch.Tensor:
    """The steps t whose sigma_t lies in [lo, hi] (``sample_t``'s ``range``); none is an error."""
    inside = torch.nonzero((schedule.sigmas >= lo) & (schedule.sigmas <= hi)).flatten()
    if inside.numel() == 0:
        raise DenoiselabError(f"no step of this schedule has its noise level sigma in [{lo:g}, {hi:g}] "
                              f"(it spans {schedule.sigmas[0].item():.3g} to {schedule.sigmas[-1].item():.3g}): "
                              "widen diffusion.t_sigma_min/t_sigma_max")
    return inside
