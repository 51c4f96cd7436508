"""Guidance as denoiser -> denoiser wrappers: classifier-free guidance (Ho & Salimans 2022) and
classifier guidance (Dhariwal & Nichol 2021).

A wrapper (a :class:`~denoiselab.denoiser.DenoiserWrapper`) is called like a
:class:`~denoiselab.denoiser.Denoiser`, ``(x0_hat, eps_hat) = wrapper(x_t, t, cond)``, and hands
every other attribute (schedule, scales, t_from_sigma, sigma_range, time_range,
parameterization, clip_x0, ...) to the denoiser inside it, so every sampler and every edit
works guided without knowing it.

Glossary (x_t = a_t x0 + s_t eps; VP: a_t = sqrt(alpha_bar_t), s_t = sqrt(1 - alpha_bar_t); flows:
a = tau, s = 1 - tau):

| symbol | meaning |
| --- | --- |
| ``w`` (``scale``) | CFG guidance scale: eps = eps_u + w (eps_c - eps_u); w = 1 is the conditional model, w = 0 the unconditional one (Ho & Salimans 2022, eq. 6 writes (1 + w') eps_c - w' eps_u, i.e. w = 1 + w') |
| ``eps_c``, ``eps_u`` | eps_hat under the condition and under the null condition |
| ``s`` (``classifier_scale``) | classifier-guidance scale: eps' = eps - s_t * s * grad_x log p(y given x_t) (Dhariwal & Nichol 2021, Algorithm 2 and sec. 4.2) |

Both combine *unclipped* predictions and apply the inner denoiser's x0 clip once, afterwards:
clipping each branch first would bend the difference eps_c - eps_u that guidance amplifies.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import process as P
from .denoiser import DenoiserWrapper


def _pair_time(t, n: int):
    """t for the doubled batch [x, x]: a scalar stays, a per-sample vector is repeated."""
    t = torch.as_tensor(t)
    return t if t.ndim == 0 else torch.cat([t.expand(n), t.expand(n)])


class ClassifierFreeGuidance(DenoiserWrapper):
    """eps = eps_u + w (eps_c - eps_u) (Ho & Salimans 2022, eq. 6, with w = 1 + their w).

    ``uncond``: the null condition. None means label -1 ("no label", the null class) for every
    sample; otherwise a tensor broadcastable to ``cond`` (e.g. a (1, D) embedding of the empty
    or of a negative prompt), expanded to cond's shape. Both halves go through the network in
    one batched forward over [x, x] with [cond, uncond].

    x0_hat is combined with the same weights: for fixed (x_t, t) the map eps -> x0 = (x_t - s eps)/a
    is affine and the weights (1 - w, w) sum to 1, so this is x0 from the combined eps, for every
    parameterization (eps, x0, v, flow velocity: eps = x - tau v is affine in v too), and it needs
    no division by a (a = 0 at the noise end of a flow).
    """

    def __init__(self, denoiser, scale, uncond: Optional[torch.Tensor] = None):
        super().__init__(denoiser)
        # A number, or one scale per sample (the teacher of a w-conditioned student).
        self.scale = scale if torch.is_tensor(scale) and scale.ndim > 0 else float(scale)
        self.uncond = uncond

    def null_condition(self, cond: torch.Tensor) -> torch.Tensor:
        if self.uncond is None:
            return torch.full_like(cond, -1)
        return torch.as_tensor(self.uncond).to(device=cond.device, dtype=cond.dtype).expand_as(cond)

    def unclipped(self, x: torch.Tensor, t, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        if cond is None:  # nothing to guide towards: the model's own unconditional prediction
            return self.inner.unclipped(x, t, None)
        cond = torch.as_tensor(cond)
        if cond.ndim == 0:
            cond = cond.expand(x.shape[0])
        # w = 1 and w = 0 need only one half: the same numbers at half the cost.
        if not torch.is_tensor(self.scale) and self.scale == 1.0:
            return self.inner.unclipped(x, t, cond)
        if not torch.is_tensor(self.scale) and self.scale == 0.0:
            return self.inner.unclipped(x, t, self.null_condition(cond))
        n = x.shape[0]
        # One batched forward of both halves (the CFG cost target: <= 2.2x an unguided step).
        x0_2, eps_2 = self.inner.unclipped(torch.cat([x, x]), _pair_time(t, n),
                                           torch.cat([cond, self.null_condition(cond)]))
        w = P._bcast(self.scale, x) if torch.is_tensor(self.scale) else self.scale
        x0_c, x0_u = x0_2[:n], x0_2[n:]
        eps_c, eps_u = eps_2[:n], eps_2[n:]
        # Ho & Salimans 2022, eq. 6.
        return x0_u + w * (x0_c - x0_u), eps_u + w * (eps_c - eps_u)


class ClassifierGuidance(DenoiserWrapper):
    """eps' = eps - s_t * scale * grad_{x_t} log p(y given x_t) (Dhariwal & Nichol 2021, Algorithm 2, sec. 4.2).

    ``classifier(x_t, t) -> logits`` is a noise-aware classifier that takes the same time t as
    the denoiser (``models.classifier``, trained with ``diffusion.kind = classifier`` on the same
    schedule). ``cond`` holds the asked labels y; samples with y = -1 are left unguided.
    Since eps_hat = -s_t grad log p(x_t), this is the score of p(x_t) p(y given x_t)^scale.
    """

    def __init__(self, denoiser, classifier: Callable, scale: float):
        super().__init__(denoiser)
        self.classifier = classifier
        self.scale = float(scale)

    def grad_log_prob(self, x: torch.Tensor, t, y: torch.Tensor) -> torch.Tensor:
        """grad_{x_t} log p(y given x_t) per sample (zero where y = -1)."""
        tt = torch.as_tensor(t, dtype=x.dtype).to(x.device)
        tt = tt.expand(x.shape[0]) if tt.ndim == 0 else tt
        # Samplers run under no_grad; the gradient with respect to x_t needs autograd back on.
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logp = F.log_softmax(self.classifier(x_in, tt).float(), dim=-1)
            picked = logp.gather(1, y.clamp(min=0)[:, None])[:, 0]
            picked = torch.where(y >= 0, picked, torch.zeros_like(picked))
            (grad,) = torch.autograd.grad(picked.sum(), x_in)
        return grad.to(x.dtype)

    def unclipped(self, x: torch.Tensor, t, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        x0, eps = self.inner.unclipped(x, t, cond)
        if cond is None or self.scale == 0:
            return x0, eps
        y = torch.as_tensor(cond).long().reshape(-1).expand(x.shape[0])
        a, s = self.inner.scales(t, x)
        # Dhariwal & Nichol 2021, Algorithm 2: eps' = eps - sqrt(1 - alpha_bar_t) s grad log p(y | x_t).
        eps = eps - s * self.scale * self.grad_log_prob(x, t, y)
        return P.x0_from_eps(x, eps, a, s), eps


def guided(denoiser, *, scale=1.0, uncond: Optional[torch.Tensor] = None,
           classifier: Optional[Callable] = None, classifier_scale: float = 0.0):
    """The denoiser with classifier-free guidance at ``scale`` (1 = the plain conditional model,
    no wrapper) and, with a ``classifier``, classifier guidance at ``classifier_scale`` on top."""
    out = denoiser
    per_sample = torch.is_tensor(scale) and scale.ndim > 0  # one scale per sample
    if getattr(denoiser, "guidance_input", False):  # a w-conditioned student: w is its input
        out = denoiser.at_guidance(scale if per_sample else float(scale))
    elif per_sample or float(scale) != 1.0:
        out = ClassifierFreeGuidance(out, scale, uncond)
    if classifier is not None and float(classifier_scale) != 0.0:
        out = ClassifierGuidance(out, classifier, classifier_scale)
    return out


__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "guided"]
