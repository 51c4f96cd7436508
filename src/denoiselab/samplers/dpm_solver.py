"""DPM-Solver++ multistep, 2nd and 3rd order (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and
the 3rd-order multistep update of its appendix / diffusers ``DPMSolverMultistepScheduler``).

Glossary (Lu et al. 2022, sec. 3):

| symbol       | meaning                                                               |
| ------------ | --------------------------------------------------------------------- |
| ``a``, ``s`` | alpha_t and sigma_t of x_t = a x0 + s eps (any process, VP or flow)   |
| ``lam``      | lambda_t = log(a / s), the half log-SNR; -inf at pure noise           |
| ``h``        | lambda_next - lambda, the step in lambda                              |
| ``m``        | data predictions x0_hat at the previous grid points (m0 newest)       |
| ``r0, r1``   | ratios of the previous steps to this one, h_0 / h and h_1 / h         |

The solver integrates the data-prediction ODE exactly in its linear part:
  x_next = (s_next / s) x - a_next (e^{-h} - 1) D,
with D = m0 (1st order), the 2nd-order multistep D = (1 + 1/(2 r0)) m0 - 1/(2 r0) m1
(Algorithm 2; diffusers' "midpoint" form), and the 3rd-order update below. Lower orders are
used while the history is short; the last step (to sigma = 0, h = inf) is 1st order, and with
fewer than 15 steps the step before it is at most 2nd order (diffusers' ``lower_order_final``,
which keeps few-step sampling stable). ``dpmpp-2m-sde`` and ``dpmpp-3m-sde`` run the same
multistep schemes on the reverse SDE (eta > 0, see the step below): fresh noise each step, which
is what lets 10 steps match 1000 ancestral DDPM steps on MNIST where every ODE solver stops short.
From 15 steps on ``dpmpp-3m-sde`` is k-diffusion's ``sample_dpmpp_3m_sde`` step for step (its
warm-up included); below 15 it is ``dpmpp-2m-sde`` (see ``sample_dpmpp_3m_sde``).
"""

from __future__ import annotations

import math

import torch

from ..errors import DenoiselabError
from .common import Callback, Noise, grid_pairs, randn, report, scales_at, sigma_of, tvec

LOWER_ORDER_FINAL_BELOW = 15  # diffusers' threshold for lowering the order at the end


def _lam(a: float, s: float) -> float:
    if a <= 0:
        return -math.inf
    if s <= 0:
        return math.inf
    return math.log(a) - math.log(s)


def _third_order_differences(hist, h: float, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(d1, d2) from the last three data predictions on an uneven grid: d1 = h x0_hat'(lam) and
    d2 the second-derivative term, for the phi_2 and phi_3 terms of the 3rd-order updates.

    The reference multistep code (Lu et al. 2022, dpm_solver_pytorch), diffusers'
    ``multistep_dpm_solver_third_order_update`` and k-diffusion take d2 = the second divided
    difference, h^2 x0_hat'' / 2, against phi_3, which integrates h^2 x0_hat'': the quadratic term
    gets half its weight, the step is not exact for a quadratic x0_hat, and the solver converges
    at 2nd order (on the test mixture the error falls 4x per halving of h from 32 steps on).
    ``exact`` doubles d2, as the reference singlestep "taylor" update does (D2 = 2 (D1_1 - D1_0) /
    (r2 - r1)): exact for a quadratic x0_hat, 3rd order (8x per halving; tests/test_samplers_fast.py).
    The reference weight stays the default: it is what the peers compute, and on trained 2D models
    it scored better at few steps, where the halved term damps an extrapolation over long steps
    (swiss roll, 3 trainings, chamfer at 5 / 10 / 20 steps: 15.2 / 1.21 / 0.98 against the exact
    form's 17.6 / 1.73 / 0.87; swiss-roll-flow at 10 / 20: 4.76 / 1.59 against 5.05 / 2.36)."""
    (l0, m0), (l1, m1), (l2, m2) = hist[0], hist[1], hist[2]
    r0, r1 = (l0 - l1) / h, (l1 - l2) / h
    d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (2.0 if exact else 1.0) * (d1_0 - d1_1) / (r0 + r1)
    return d1, d2


def step_eta(sigma: float, eta: float, eta_low: float, eta_switch: float) -> float:
    """The eta of a step that starts at noise level ``sigma``: ``eta_low`` at and below ``eta_switch``
    (when it is > 0), else ``eta``. Every eta >= 0 gives a reverse SDE with the data's marginals,
    and so does any choice of eta(t) along the way (Xue et al. 2023, SA-Solver, sec. 4: the
    SDE's stochasticity tau(t) is any function of time), so switching eta between steps keeps the sampler correct."""
    return eta_low if eta_switch > 0 and sigma <= eta_switch else eta


def _check_etas(name: str, eta: float, eta_low: float, eta_switch: float) -> None:
    if eta < 0:
        raise DenoiselabError(f"{name}: eta must be >= 0 (got {eta}); 0 is the ODE, 1 the reverse SDE")
    if eta_low < 0:
        raise DenoiselabError(f"{name}: eta_low must be >= 0 (got {eta_low}); it is the eta below eta_switch")
    if eta_switch < 0:
        raise DenoiselabError(f"{name}: eta_switch must be >= 0 (got {eta_switch}); it is a noise level sigma, "
                              f"0 for one eta everywhere")


def _step_order(q: int, i: int, n: int, t_next, eta: float) -> int:
    """The order of step i of n, given the q data predictions in the history."""
    if t_next is None:
        return 1
    if i == n - 2 and n < LOWER_ORDER_FINAL_BELOW:
        return min(q, 2)
    if eta > 0 and n < LOWER_ORDER_FINAL_BELOW:
        # The SDE's 3rd-order term extrapolates over the step stretched by (1 + eta); on few
        # steps that overshoots (with the full-weight second difference: swiss roll, 5 steps,
        # chamfer 561 against the 2nd order's 62; MNIST, 10 steps at eta 4, FID 1.06 against
        # 0.88; with the reference weight, MNIST training 0: 0.99 against 0.91), so
        # dpmpp-3m-sde is 2M below 15 steps.
        return min(q, 2)
    return q


def _ode_step(x, x0_hat, hist, q: int, h: float, ratio: float, a_n: float, exact: bool) -> torch.Tensor:
    """One DPM-Solver++ step of order q on the data-prediction ODE (Lu et al. 2022)."""
    phi = -math.expm1(-h)  # 1 - e^{-h}, exact for small h
    if q == 1:
        # DPM-Solver++ 1st order, which is DDIM (Lu et al. 2022, sec. 4).
        return ratio * x + a_n * phi * x0_hat
    if q == 2:
        # Multistep 2nd order, Algorithm 2 (midpoint form).
        (l0, m0), (l1, m1) = hist[0], hist[1]
        r0 = (l0 - l1) / h
        d1 = (m0 - m1) / r0
        return ratio * x + a_n * phi * m0 + 0.5 * a_n * phi * d1
    # Multistep 3rd order (Lu et al. 2022, appendix; diffusers multistep_dpm_solver_third_order_update).
    d1, d2 = _third_order_differences(hist, h, exact)
    em1 = math.expm1(-h)  # e^{-h} - 1
    return (ratio * x - a_n * em1 * hist[0][1] + a_n * (em1 / h + 1) * d1
            - a_n * ((em1 + h) / h**2 - 0.5) * d2)


def _sde_drift(x, x0_hat, hist, q: int, h: float, eta: float, ratio: float, a_n: float, exact: bool,
               warm_up_phi_2: bool) -> torch.Tensor:
    """One SDE-DPM-Solver++ step of order q to a finite t_next, before its fresh noise.

    SDE-DPM-Solver++ (Lu et al. 2022, sec. 5 / appendix; k-diffusion sample_dpmpp_2m_sde) on the
    family of reverse SDEs dx = [f x - (1 + tau^2)/2 g^2 score] dt + tau g dw, which all share the
    data's marginals (Xue et al. 2023, SA-Solver, sec. 4), with eta = tau^2; linear part exact
    (ibid., sec. 5, data-prediction form):
      x_next = (s_n / s) e^{-eta h} x + a_n (1 - e^{-(1+eta) h}) D + s_n sqrt(1 - e^{-2 eta h}) z
    eta = 1 is the reverse SDE (diffusers' "sde-dpmsolver++"); eta = 0 the ODE solver; eta > 1
    adds Langevin-like noise that corrects more of the network's error.
    """
    phi_sde = -math.expm1(-(1.0 + eta) * h)
    x_next = ratio * math.exp(-eta * h) * x + a_n * phi_sde * x0_hat
    if q == 2 and warm_up_phi_2:
        # The 3rd-order solver's warm-up step, as k-diffusion sample_dpmpp_3m_sde takes it:
        # d = h x0_hat'(lam) from the backward difference against the weight
        # phi_2 = 1 - (1 - e^{-H}) / H, the integral of the kernel (1 + eta) e^{-(1 + eta)(lam_n - u)}
        # against a linear x0_hat(u) (DPM-Solver++'s phi_2 with h -> H = (1 + eta) h).
        (l0, m0), (l1, m1) = hist[0], hist[1]
        big_h = (1.0 + eta) * h
        x_next = x_next + a_n * (1.0 - phi_sde / big_h) * ((m0 - m1) / ((l0 - l1) / h))
    elif q == 2:
        # 2nd-order multistep correction (midpoint form, as in the ODE solver; k-diffusion
        # sample_dpmpp_2m_sde's default): 0.5 (1 - e^{-H}) agrees with phi_2 to O(H^2).
        (l0, m0), (l1, m1) = hist[0], hist[1]
        x_next = x_next + 0.5 * a_n * phi_sde * (m0 - m1) / ((l0 - l1) / h)
    elif q >= 3:
        # 3rd-order multistep correction: the ODE's 3rd-order update with h replaced by
        # H = (1 + eta) h, since x0_hat enters through the kernel (1 + eta) e^{-(1 + eta)(lam_n - lam)}
        # (k-diffusion sample_dpmpp_3m_sde); with ``exact``, exact for a quadratic x0_hat.
        d1, d2 = _third_order_differences(hist, h, exact)
        big_h = (1.0 + eta) * h
        phi_2 = 1.0 - phi_sde / big_h
        phi_3 = phi_2 / big_h - 0.5
        x_next = x_next + a_n * (phi_2 * d1 - phi_3 * d2)
    return x_next


def _dpmpp_multistep(denoiser, x_T, timesteps, *, cond, callback, order: int, eta: float = 0.0,
                     noise: Noise = None, s_noise: float = 1.0, exact: bool = False, eta_low: float = 0.0,
                     eta_switch: float = 0.0) -> torch.Tensor:
    eta_high = eta
    pairs = grid_pairs(timesteps)
    n = len(pairs)
    # From 15 steps on, the 3rd-order SDE solver warms up with k-diffusion's phi_2 weight; below,
    # it is the measured dpmpp-2m-sde (midpoint weight), see sample_dpmpp_3m_sde.
    warm_up_phi_2 = order == 3 and n >= LOWER_ORDER_FINAL_BELOW
    x = x_T
    hist: list[tuple[float, torch.Tensor]] = []  # (lambda, x0_hat), newest first, finite lambdas only
    for i, (t, t_next) in enumerate(pairs):
        a, s = scales_at(denoiser, t)
        eta = step_eta(sigma_of(a, s), eta_high, eta_low, eta_switch)
        x0_hat, _ = denoiser(x, tvec(t, x), cond)
        lam = _lam(a, s)
        if math.isfinite(lam):
            # A point at lambda = -inf (pure noise of a flow) has no finite step to extrapolate over.
            hist = [(lam, x0_hat)] + hist[: order - 1]
        else:
            hist = []
        a_n, s_n = scales_at(denoiser, t_next)
        h = _lam(a_n, s_n) - lam
        q = _step_order(max(1, len(hist)), i, n, t_next, eta)
        ratio = s_n / s
        if eta > 0 and t_next is None:
            x_next = x0_hat  # h = inf: the SDE step lands on the data prediction, no noise left
        elif eta > 0:
            x_next = _sde_drift(x, x0_hat, hist, q, h, eta, ratio, a_n, exact, warm_up_phi_2)
            x_next = x_next + s_n * math.sqrt(-math.expm1(-2.0 * eta * h)) * s_noise * randn(noise, i + 1, x)
        else:
            x_next = _ode_step(x, x0_hat, hist, q, h, ratio, a_n, exact)
        report(callback, i, t, x, x0_hat, x_next)
        x = x_next
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                    callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. 2022, Algorithm 2. Deterministic; NFE = grid points."""
    return _dpmpp_multistep(denoiser, x_T, timesteps, cond=cond, callback=callback, order=2)


@torch.no_grad()
def sample_dpmpp_3m(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                    callback: Callback = None, exact: float = 0.0) -> torch.Tensor:
    """DPM-Solver++(3M): the 3rd-order multistep data-prediction solver, as the reference code and
    diffusers compute it (2nd order asymptotically); ``exact=1`` gives the second difference its
    full weight, which makes it 3rd order (see ``_third_order_differences``). Deterministic;
    NFE = grid points."""
    return _dpmpp_multistep(denoiser, x_T, timesteps, cond=cond, callback=callback, order=3, exact=bool(exact))


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                        callback: Callback = None, eta: float = 1.0, s_noise: float = 1.0,
                        eta_low: float = 0.0, eta_switch: float = 0.0) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022): the 2nd-order multistep solver of the reverse SDE
    in its data-prediction form. Stochastic: fresh noise every step corrects part of the
    network's error, as ancestral DDPM does. ``eta`` (>= 0) picks the SDE of the family with
    the same marginals: 0 gives dpmpp-2m, 1 the reverse SDE, more re-injects more noise.
    ``eta_switch`` > 0 (a sigma) makes the steps that start at or below it use ``eta_low``
    instead (``step_eta``). NFE = grid points."""
    _check_etas("dpmpp-2m-sde", eta, eta_low, eta_switch)
    return _dpmpp_multistep(denoiser, x_T, timesteps, cond=cond, callback=callback, order=2, eta=eta, noise=noise,
                            s_noise=s_noise, eta_low=eta_low, eta_switch=eta_switch)


@torch.no_grad()
def sample_dpmpp_3m_sde(denoiser, x_T: torch.Tensor, timesteps: torch.Tensor, *, noise: Noise = None, cond=None,
                        callback: Callback = None, eta: float = 1.0, s_noise: float = 1.0,
                        exact: float = 0.0, eta_low: float = 0.0, eta_switch: float = 0.0) -> torch.Tensor:
    """SDE-DPM-Solver++(3M): the 3rd-order multistep solver of the same family of reverse SDEs as
    ``dpmpp-2m-sde`` (eta 0 is ``dpmpp-3m``, 1 the reverse SDE; ``exact`` as for ``dpmpp-3m``);
    ``eta_low`` and ``eta_switch`` as for ``dpmpp-2m-sde``. NFE = grid points.

    Against the reference, k-diffusion's ``sample_dpmpp_3m_sde`` (Lu et al. 2022, DPM-Solver++,
    multistep data-prediction form), on the same grid with the same noise (its Brownian draw of
    step i is our stream i + 1): from 15 steps on it is the same recurrence (step 0 1st order,
    step 1 the 2nd-order warm-up with weight phi_2 = 1 - (1 - e^{-H}) / H, H = (1 + eta) h, then
    3rd order, the last step onto x0_hat), equal to ~1e-14 in float64
    (tests/test_samplers_fast.py). The one difference, below 15 steps: every step is at most 2nd
    order with the midpoint weight 0.5 (1 - e^{-H}), i.e. the sampler is ``dpmpp-2m-sde`` there
    (k-diffusion ``sample_dpmpp_2m_sde``), because the 3rd-order term, extrapolated over a step
    stretched by (1 + eta), overshoots on few long steps (measured: see the step). A step whose
    eta is 0 (eta=0, or eta_low=0 below eta_switch) is a ``dpmpp-3m`` step, which follows diffusers
    (midpoint weight in its warm-up)."""
    _check_etas("dpmpp-3m-sde", eta, eta_low, eta_switch)
    return _dpmpp_multistep(denoiser, x_T, timesteps, cond=cond, callback=callback, order=3, eta=eta, noise=noise,
                            s_noise=s_noise, exact=bool(exact), eta_low=eta_low, eta_switch=eta_switch)
