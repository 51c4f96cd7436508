"""Euler and Heun on the probability-flow ODE (Karras et al. 2022, Algorithms 1 and 2) and Euler
ancestral (k-diffusion), for every process x_t = a x0 + s eps: VP models and flows alike.

Glossary (Karras et al. 2022, sec. 2-3; Lipman et al. 2023):

| symbol        | meaning                                                                    |
| ------------- | -------------------------------------------------------------------------- |
| ``a``, ``s``  | signal and noise scale of the model's process at time t                    |
| ``sigma``     | s / a, the noise level of the scaled variable x / a = x0 + sigma eps       |
| ``frame``     | the (state, time) pair the ODE is integrated in:                           |
|               | ``ve``: z = x / a, r = sigma, dz/dr = eps_hat (Karras et al. eq. 4, s = 1)  |
|               | ``flow``: z = x / (a + s), r = tau = 1 / (1 + sigma), dz/dr = x0_hat - eps_hat |
| ``gamma``     | churn: sigma is raised to sigma_hat = (1 + gamma) sigma before a step      |

Why frames: a single ODE d x / d t along a family of Gaussian marginals can be written in any
time variable and state scaling; the Euler step is the same in both frames (both are linear
in r, so it is exactly the DDIM step x' = a' x0_hat + s' eps_hat), but the Heun correction is
not. ``ve`` is the EDM choice for diffusion models; ``flow`` is the straight-path ODE that a
rectified flow is trained on (Liu et al. 2023), and it stays finite at pure noise (tau = 0),
where ``ve`` needs sigma = inf. One Euler/Heun implementation serves both.

Heun integrates in the ``flow`` frame by default, for every model. In the ``ve`` frame a step
that crosses the data's scale (from sigma >> std to sigma << std) is where the trajectory bends
from z - mu ~ sigma to z ~ x0, and the trapezoid averages the slope before the bend with the
near-zero slope after it: it keeps about half of the noise it should remove, so a 2-step Heun
on Gaussian data ends with a spread of about sigma_max / 2 per coordinate (an RMS norm of 112
for 2D data of RMS 2.8 on a linear T = 1000 VP schedule, sigma_max = 157). In the flow frame the time r = 1 / (1 + sigma) spans
[0, 1] whatever sigma_max is, the slope x0_hat - eps_hat stays of the data's and the noise's
size, and the trapezoid's error is bounded by the step in r; the order is the same (Heun is
2nd order in any smooth reparametrisation of the ODE; Karras et al. 2022, sec. 3, eq. 4 with
s(t) = 1 / (1 + sigma(t))). ``frame="ve"`` keeps EDM's Algorithm 1 exactly.
"""

from __future__ import annotations

import math

import torch

from ..errors import DenoiselabError
from .common import Callback, Noise, grid_pairs, randn, report, scales_at, sigma_of, tvec

FRAMES = ("ve", "flow")


def default_frame(denoiser) -> str:
    """The frame Heun integrates in when none is named: ``flow`` for every model (see above)."""
    return "flow"


def _frame_r(frame: str, a: float, s: float) -> float:
    return sigma_of(a, s) if frame == "ve" else a / (a + s)


def _frame_scale(frame: str, a: float, s: float) -> float:
    """x = scale * z in the frame."""
    return a if frame == "ve" else a + s


def _frame_deriv(frame: str, x0_hat: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:
    return eps_hat if frame == "ve" else x0_hat - eps_hat


def _check(frame: str | None, denoiser) -> str:
    frame = frame or default_frame(denoiser)
    if frame not in FRAMES:
        raise DenoiselabError(f"unknown ODE frame {frame!r}: choose one of {', '.join(FRAMES)}")
    return frame


def _churn(denoiser, x, t, a, s, i, steps, noise, s_churn, s_tmin, s_tmax, s_noise):
    """Karras et al. 2022, Algorithm 2, lines 4-6: raise sigma to sigma_hat and add the matching noise.

    Returns (x_hat, t_hat, a_hat, s_hat). sigma_hat is capped at the largest sigma the model
    knows (t_from_sigma clamps), and the noise added is for the sigma actually reached.
    """
    sigma = sigma_of(a, s)
    if s_churn <= 0 or not (s_tmin <= sigma <= s_tmax) or not math.isfinite(sigma):
        return x, t, a, s
    gamma = min(s_churn / steps, math.sqrt(2) - 1)
    t_hat = float(denoiser.t_from_sigma(torch.tensor(sigma * (1 + gamma), dtype=torch.float64)))
    a_hat, s_hat = scales_at(denoiser, t_hat)
    sigma_hat = sigma_of(a_hat, s_hat)
    if sigma_hat <= sigma:
        return x, t, a, s
    z = randn(noise, i + 1, x)
    x_hat = a_hat * (x / a + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * z)
    return x_hat, t_hat, a_hat, s_hat


def _ode_sampler(denoiser, x_T, timesteps, *, noise, cond, callback, second_order: bool, frame: str | None,
                 s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> torch.Tensor:
    frame = _check(frame, denoiser)
    pairs = grid_pairs(timesteps)
    x = x_T
    for i, (t, t_next) in enumerate(pairs):
        a, s = scales_at(denoiser, t)
        x, t_hat, a, s = _churn(denoiser, x, t, a, s, i, len(pairs), noise, s_churn, s_tmin, s_tmax, s_noise)
        x0_hat, eps_hat = denoiser(x, tvec(t_hat, x), cond)
        a_n, s_n = scales_at(denoiser, t_next)
        # Euler step (Algorithm 1, line 5), written as the frame-free DDIM form.
        x_next = a_n * x0_hat + s_n * eps_hat
        r, r_n = _frame_r(frame, a, s), _frame_r(frame, a_n, s_n)
        if second_order and t_next is not None and math.isfinite(r):
            # 2nd-order correction (Algorithm 1, lines 7-8): average the slopes at both ends.
            x0_2, eps_2 = denoiser(x_next, tvec(t_next, x), cond)
            d1, d2 = _frame_deriv(frame, x0_hat, eps_hat), _frame_deriv(frame, x0_2, eps_2)
            x_next = x_next + _frame_scale(frame, a_n, s_n) * (r_n - r) / 2 * (d2 - d1)
        report(callback, i, t, x, x0_hat, x_next)
        x = x_next
    return x


@torch.no_grad()
def sample_euler(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                 callback: Callback = None, frame: str | None = None, s_churn: float = 0.0, s_tmin: float = 0.0,
                 s_tmax: float = math.inf, s_noise: float = 1.0) -> torch.Tensor:
    """Euler on the probability-flow ODE (Karras et al. 2022, Algorithm 2 with the Euler step only).

    With s_churn = 0 this is deterministic and equals DDIM (eta = 0) on the same grid; with
    churn it is EDM's stochastic sampler. NFE = number of grid points.
    """
    return _ode_sampler(denoiser, x_T, timesteps, noise=noise, cond=cond, callback=callback, second_order=False,
                        frame=frame, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)


@torch.no_grad()
def sample_heun(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                callback: Callback = None, frame: str | None = None, s_churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = math.inf, s_noise: float = 1.0) -> torch.Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 1; Algorithm 2 with s_churn > 0).

    The last step, to clean data, is an Euler step (Algorithm 1, line 6); so is a first step
    from pure noise in the ``ve`` frame (sigma = inf). NFE = 2 N - 1 for N grid points.
    """
    return _ode_sampler(denoiser, x_T, timesteps, noise=noise, cond=cond, callback=callback, second_order=True,
                        frame=frame, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)


@torch.no_grad()
def sample_euler_ancestral(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                           callback: Callback = None, eta: float = 1.0, s_noise: float = 1.0) -> torch.Tensor:
    """Euler ancestral (k-diffusion ``sample_euler_ancestral``): an Euler step down to sigma_down,
    then fresh noise up to sigma_next, with
      sigma_up = min(sigma_next, eta sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)),
      sigma_down = sqrt(sigma_next^2 - sigma_up^2);
    eta = 1 matches the DDPM posterior's noise, eta = 0 is Euler. In the model's scaling,
    x_next = a_next (x0_hat + sigma_down eps_hat + sigma_up z).
    """
    x = x_T
    for i, (t, t_next) in enumerate(grid_pairs(timesteps)):
        a, s = scales_at(denoiser, t)
        x0_hat, eps_hat = denoiser(x, tvec(t, x), cond)
        a_n, s_n = scales_at(denoiser, t_next)
        sigma, sigma_n = sigma_of(a, s), sigma_of(a_n, s_n)
        ratio = sigma_n / sigma if math.isfinite(sigma) else 0.0
        sigma_up = min(sigma_n, eta * sigma_n * math.sqrt(max(0.0, 1 - ratio**2)))
        sigma_down = math.sqrt(max(0.0, sigma_n**2 - sigma_up**2))
        # Euler step to sigma_down, then ancestral noise (k-diffusion, get_ancestral_step).
        x_next = a_n * (x0_hat + sigma_down * eps_hat)
        if sigma_up > 0:
            x_next = x_next + a_n * sigma_up * s_noise * randn(noise, i + 1, x)
        report(callback, i, t, x, x0_hat, x_next)
        x = x_next
    return x
