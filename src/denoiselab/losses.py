"""The training objectives, side by side: each maps (net, x0, cond, generator) to a scalar loss.

| symbol | meaning |
| --- | --- |
| x0 | a batch of clean data |
| t, tau | a VP step index; a flow time in [0, 1] |
| eps | standard normal noise |
| a, s | sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t): x_t = a x0 + s eps (Ho et al. 2020, eq. 4) |
| SNR | a^2 / s^2 |

Randomness is drawn from the run's CPU generator in a fixed order (t, eps, label dropout, input
perturbation), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .config import DiffusionConfig, DistillConfig
from .errors import DenoiselabError
from .process import FLOW_TIME_SCALE, flow_interpolant, flow_velocity, q_sample, sample_t, scales, training_target
from .samplers import ode_step
from .samplers.grids import karras_sigmas
from .schedules import NoiseSchedule


def diffusion_loss(net, schedule: NoiseSchedule, parameterization: str, x0, t, eps, cond=None,
                   min_snr: float = 0.0, perturbation: torch.Tensor | None = None) -> torch.Tensor:
    """Simple MSE loss L_simple (Ho et al. 2020, eq. 14) for the given parameterization, or, with
    ``min_snr`` = gamma > 0, the min-SNR-gamma weighted loss (Hang et al. 2023, sec. 3.4).
    ``perturbation`` (gamma xi) is input perturbation (Ning et al. 2023, eq. 9): the network sees
    a x0 + s (eps + gamma xi) but is trained toward the target built from eps, as if its input
    carried the error its own earlier sampling steps leave."""
    a, s = scales(schedule, t, x0)
    xt = a * x0 + s * (eps if perturbation is None else eps + perturbation)
    target = training_target(parameterization, x0, eps, a, s)
    err = (net(xt, t.to(x0.device, x0.dtype), cond) - target).pow(2)
    if min_snr > 0:
        err = err * min_snr_weight(parameterization, a, s, min_snr).to(err.dtype)
    return err.mean()


def min_snr_weight(parameterization: str, a, s, gamma: float):
    """Per-sample weight that turns the parameterization's squared error into
    min(SNR, gamma) ||x0_hat - x0||^2 (Hang et al. 2023, sec. 3.4), SNR = a^2 / s^2: the same loss
    whatever the network predicts, since the x0 error is (s / a) times the eps error and s times
    the v error (a^2 + s^2 = 1). Clean-ish steps (SNR > gamma) no longer dominate the gradient."""
    snr = (a / s).pow(2)
    clipped = snr.clamp(max=gamma)
    if parameterization == "eps":
        return clipped / snr
    if parameterization == "x0":
        return clipped
    if parameterization == "v":
        return clipped / (snr + 1)
    raise ValueError(f"unknown parameterization {parameterization!r}")


def flow_loss(net, x0, tau, eps, cond=None, time_scale: float = 1000.0) -> torch.Tensor:
    """Conditional flow matching loss ||u_theta(x_tau, tau) - (x0 - eps)||^2 (Lipman et al. 2023, eq. 23)."""
    xt = flow_interpolant(x0, eps, tau)
    return (net(xt, tau.to(x0.device, x0.dtype) * time_scale, cond) - flow_velocity(x0, eps)).pow(2).mean()


def denoise_loss(net, x0, eps, sigma: float) -> torch.Tensor:
    """Single-step denoiser loss ||D(x0 + sigma eps) - x0||^2 at one fixed sigma (CS180 project 5, part B.1)."""
    return (net(x0 + sigma * eps, None, None) - x0).pow(2).mean()


def drop_labels(cond: Optional[torch.Tensor], p_uncond: float, generator: torch.Generator,
                null: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """Classifier-free guidance training (Ho & Salimans 2022, Algorithm 1): each label is replaced
    by -1 ("no label", which every conditional network maps to its null class) with prob. p_uncond;
    each row of an (N, D) embedding condition by ``null`` (the empty prompt's embedding)."""
    if cond is None or p_uncond <= 0:
        return cond
    drop = (torch.rand(cond.shape[:1], generator=generator) < p_uncond).to(cond.device)
    if cond.is_floating_point():
        if null is None:
            raise DenoiselabError("embedding conditions need a null embedding to drop to (the empty prompt's)")
        return torch.where(drop.view(-1, *([1] * (cond.ndim - 1))), null.to(cond.dtype).expand_as(cond), cond)
    return torch.where(drop, torch.full_like(cond, -1), cond)


def make_objective(d: DiffusionConfig, schedule: Optional[NoiseSchedule] = None,
                   null: Optional[torch.Tensor] = None):
    """objective(net, x0, cond, generator) -> loss for the process ``d`` describes, on ``schedule``
    (VP and classifier runs); ``null`` is the condition a dropped prompt becomes (text runs: the
    empty prompt's embedding)."""
    if d.kind == "denoise":
        if d.sigma <= 0:
            raise DenoiselabError("a single-step denoiser needs a noise level: --set diffusion.sigma=0.5")

        def denoise_objective(net, x0, cond, generator):
            return denoise_loss(net, x0, torch.randn(x0.shape, generator=generator).to(x0.device), d.sigma)

        return denoise_objective
    if d.kind == "flow":

        def flow_objective(net, x0, cond, generator):
            # Conditional flow matching with tau ~ U[0, 1] (Lipman et al. 2023, eq. 23).
            tau = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
            eps = torch.randn(x0.shape, generator=generator).to(x0.device)
            cond = drop_labels(cond, d.p_uncond, generator, null)
            return flow_loss(net, x0, tau, eps, cond, time_scale=FLOW_TIME_SCALE)

        return flow_objective
    if d.kind == "classifier":

        def classifier_objective(net, x0, cond, generator):
            # Noise-aware classifier (Dhariwal & Nichol 2021, sec. 4): cross-entropy of p(y | x_t, t)
            # at t uniform over the schedule, x_t from q(x_t | x_0) (Ho et al. 2020, eq. 4).
            if cond is None:
                raise DenoiselabError("a classifier trains on labelled data: choose a data set with classes "
                                      "(mnist, digits, a folder with one sub-folder per class)")
            t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
            eps = torch.randn(x0.shape, generator=generator).to(x0.device)
            return F.cross_entropy(net(q_sample(schedule, x0, t, eps), t.to(x0.device, x0.dtype)).float(), cond)

        return classifier_objective
    if d.kind == "autoencoder":
        return autoencoder_objective(d)
    if d.kind != "vp":
        raise DenoiselabError(f"diffusion kind {d.kind!r} is not available: use vp, flow, denoise, classifier or "
                              "autoencoder")
    if d.parameterization not in ("eps", "x0", "v"):
        raise DenoiselabError(f"unknown parameterization {d.parameterization!r}: use eps, x0 or v")

    def objective(net, x0, cond, generator):
        # Drawn on the CPU generator (the run's stream, saved in checkpoints), used on x0's device.
        t = sample_t(schedule, x0.shape[0], generator, d.t_sampling, d.p_mean, d.p_std,
                              (d.t_sigma_min, d.t_sigma_max), d.t_full)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        cond = drop_labels(cond, d.p_uncond, generator, null)
        extra = None
        if d.input_perturbation > 0:
            extra = d.input_perturbation * torch.randn(x0.shape, generator=generator).to(x0.device)
        return diffusion_loss(net, schedule, d.parameterization, x0, t, eps, cond, min_snr=d.min_snr,
                                      perturbation=extra)

    return objective


# -- Consistency students -------------------------------------------------------------------

def pseudo_huber(diff: torch.Tensor, c: float) -> torch.Tensor:
    """Per-sample pseudo-Huber distance sqrt(||d||^2 + c^2) - c (Song & Dhariwal 2023, sec. 3.3):
    squared error for small d, linear for large, so outliers pull less than under L2."""
    return (diff.float().pow(2).flatten(1).sum(1) + c * c).sqrt() - c


def curriculum_levels(step: int, total: int, start: int, end: int) -> int:
    """Noise levels N(k) at training step k of K (Song & Dhariwal 2023, sec. 3.4, eq. 8):
    N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2 floor(s1 / s0) + 1))."""
    doublings = int(math.log2(max(end // max(start, 1), 1))) + 1
    every = max(total // doublings, 1)
    return min(start * 2 ** (step // every), end) + 1


class ConsistencyObjective:
    """Consistency distillation (Song et al. 2023, Algorithm 2) or, with no teacher, consistency
    training (Song & Dhariwal 2023), as a trainer objective.

    Each sample draws a pair of adjacent levels sigma_{n+1} > sigma_n of the curriculum's N
    Karras levels (eq. 5) between the boundary and the top, noises x_{n+1} = a (x0 + sigma_{n+1} eps),
    and finds x_n by one teacher ODE step (cd) or by the same eps at sigma_n (ct). The loss is
    d(f_theta(x_{n+1}), f_theta-(x_n)) with the pseudo-Huber d and lambda = 1; theta- is the EMA of
    the student with decay mu (``target_decay``; 0: the student itself under stop-grad).

    ``student(net)`` wraps a network as the student's :class:`~denoiselab.denoiser.ConsistencyDenoiser`;
    ``teacher`` is a denoiser (guided when the student learns a guided flow), None for ct. With a
    guidance range (``d.guidance_max`` > 0) the student takes w as an input: each sample draws w
    uniformly from [guidance_min, guidance_max], the teacher's ODE step is guided at it
    (``teacher_at(w)``: the teacher guided at one scale per sample) and the student and its target
    see it (a w-conditioned student, Meng et al. 2023, sec. 3.1).
    ``begin_step``/``end_step`` and ``state_modules`` are the trainer's hooks: the curriculum
    follows the step, and the target network is saved in every checkpoint, so a resumed
    distillation is exact.
    """

    def __init__(self, d: DistillConfig, total_steps: int, student, teacher, sigma_range: tuple[float, float],
                 p_uncond: float = 0.0, null: Optional[torch.Tensor] = None, net: Optional[torch.nn.Module] = None,
                 teacher_at=None):
        self.d, self.total, self.student, self.teacher = d, int(total_steps), student, teacher
        self.guidance_range = (d.guidance_min, d.guidance_max) if d.guidance_max > 0 else None
        if self.guidance_range is not None and teacher_at is None:
            raise DenoiselabError("a guidance range needs the teacher guided per sample (teacher_at)")
        self.teacher_at = teacher_at
        self.sigma_min, self.sigma_max = sigma_range
        self.p_uncond, self.null = p_uncond, null
        self.step = 0
        self.target = None
        if d.target_decay > 0:
            import copy

            self.target = copy.deepcopy(net).requires_grad_(False)

    def begin_step(self, step: int) -> None:
        self.step = step

    @torch.no_grad()
    def end_step(self, net: torch.nn.Module) -> None:
        if self.target is not None:
            for pt, p in zip(self.target.parameters(), net.parameters()):
                pt.lerp_(p.detach(), 1 - self.d.target_decay)

    def state_modules(self) -> dict[str, torch.nn.Module]:
        return {"target": self.target} if self.target is not None else {}

    def levels(self) -> torch.Tensor:
        n = curriculum_levels(self.step, self.total, self.d.levels_start, self.d.levels_end)
        return karras_sigmas(self.sigma_min, self.sigma_max, n, self.d.rho)  # highest first

    def __call__(self, net, x0, cond, generator):
        sig = self.levels()
        n = torch.randint(0, len(sig) - 1, (x0.shape[0],), generator=generator)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        cond = drop_labels(cond, self.p_uncond, generator, self.null)
        hi, lo = sig[n], sig[n + 1]
        w, teacher = None, self.teacher
        if self.guidance_range is not None:
            w_min, w_max = self.guidance_range
            w = (w_min + (w_max - w_min) * torch.rand(x0.shape[0], generator=generator, dtype=torch.float64))
            w = w.to(x0.dtype).to(x0.device)
            teacher = self.teacher_at(w)

        def student(network):
            f = self.student(network)
            return f.at_guidance(w) if self.guidance_range is not None else f

        f = student(net)
        t_hi, t_lo = f.t_from_sigma(hi), f.t_from_sigma(lo)
        a_hi, _ = f.scales(t_hi, x0)
        x_hi = a_hi * (x0 + hi.to(x0.dtype).to(x0.device).view(-1, *[1] * (x0.ndim - 1)) * eps)
        with torch.no_grad():
            if self.teacher is not None:
                x_lo = ode_step(teacher, x_hi, t_hi, t_lo, cond, self.d.solver)
            else:
                a_lo, _ = f.scales(t_lo, x0)
                x_lo = a_lo * (x0 + lo.to(x0.dtype).to(x0.device).view(-1, *[1] * (x0.ndim - 1)) * eps)
            target = student(self.target if self.target is not None else net).unclipped(x_lo, t_lo, cond)[0]
        pred = f.unclipped(x_hi, t_hi, cond)[0]
        c = self.d.huber_c or 0.00054 * math.sqrt(x0[0].numel())
        return pseudo_huber(pred - target.detach(), c).mean()


class ReflowObjective:
    """Reflow (Liu et al. 2023, sec. 2.3, eq. 6 with the pairs of Algorithm 1): flow matching on
    the coupling (z, x1) a flow's ODE made, x1 = ODE(z), instead of independent noise and data.
    Each sample draws one stored pair and tau ~ U[0, 1]; the loss is
    ||u_theta(tau x1 + (1 - tau) z, tau) - (x1 - z)||^2. The pairs' paths cross less than the
    independent coupling's, so the retrained flow is straighter and fewer Euler steps follow it.
    The data batch the trainer hands in gives only the batch size and the device.
    """

    def __init__(self, noise: torch.Tensor, samples: torch.Tensor, time_scale: float = 1000.0):
        if noise.shape != samples.shape:
            raise DenoiselabError(f"reflow pairs differ in shape: noise {tuple(noise.shape)}, samples "
                                  f"{tuple(samples.shape)}")
        self.noise, self.samples, self.time_scale = noise, samples, float(time_scale)

    def __call__(self, net, x0, cond, generator):
        idx = torch.randint(0, len(self.noise), (x0.shape[0],), generator=generator)
        tau = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
        z, x1 = self.noise[idx].to(x0.device, x0.dtype), self.samples[idx].to(x0.device, x0.dtype)
        return flow_loss(net, x1, tau, z, None, time_scale=self.time_scale)


# -- Autoencoders (the first stage of latent diffusion) --------------------------------------

def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar)
    (Kingma & Welling 2014, appendix B), summed over every latent element."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def autoencoder_loss(net, x0, eps, kl_weight: float, perceptual=None, perceptual_weight: float = 0.0) -> torch.Tensor:
    """L1 reconstruction through a posterior draw, plus ``perceptual_weight`` LPIPS, plus
    ``kl_weight`` KL (Rombach et al. 2022, sec. 3.1; their LPIPSWithDiscriminator without the
    discriminator and with the log-variance of the likelihood fixed at 0). Latent diffusion sums
    the reconstruction over pixels and the KL over latent elements; both are divided here by the
    pixels per image, so the loss reads as a mean L1 and the KL weight keeps its meaning."""
    x_hat, mean, logvar = net(x0, eps)
    rec = (x_hat - x0).abs().mean()
    if perceptual is not None and perceptual_weight > 0:
        rec = rec + perceptual_weight * perceptual(x_hat.float(), x0.float()).mean()
    return rec + kl_weight * gaussian_kl(mean.float(), logvar.float()).mean() / x0[0].numel()


def autoencoder_objective(d: DiffusionConfig):
    """objective(net, x0, cond, generator) for ``diffusion.kind = "autoencoder"``: eps for the
    posterior draw from the run's generator; the ST-LPIPS network (frozen) when it is weighted."""
    perceptual = None
    if d.perceptual_weight > 0:
        from .models.lpips import STLPIPS

        perceptual = STLPIPS()

    def objective(net, x0, cond, generator):
        nonlocal perceptual
        if perceptual is not None and perceptual.shift.device != x0.device:
            perceptual = perceptual.to(x0.device)
        shape = (x0.shape[0], *latent_shape_of(net, x0))
        eps = torch.randn(shape, generator=generator).to(x0.device)
        return autoencoder_loss(net, x0, eps, d.kl_weight, perceptual, d.perceptual_weight)

    return objective


def latent_shape_of(net, x0: torch.Tensor) -> tuple[int, int, int]:
    """The latent shape of ``x0``'s images under ``net`` (unwrapped from a data-parallel wrapper)."""
    return getattr(net, "module", net).latent_shape(x0.shape[1:])


class LatentScaleFit:
    """An autoencoder objective that, once the last training step is taken, fits the network's
    ``latent_scale`` (1 / std of the training latents, Rombach et al. 2022, sec. 4.3.2) on up to
    ``num`` training images, so it is saved with the final weights in the run's checkpoint."""

    def __init__(self, objective, images: torch.Tensor, total_steps: int, num: int = 4096):
        self.objective, self.images, self.total = objective, images[:num], int(total_steps)
        self.step = 0

    def __call__(self, net, x0, cond, generator):
        return self.objective(net, x0, cond, generator)

    def begin_step(self, step: int) -> None:
        self.step = step

    def end_step(self, net: torch.nn.Module) -> None:
        if self.step + 1 >= self.total:
            net.fit_latent_scale(self.images)
