"""Where a network meets a process: one callable that returns (x0_hat, eps_hat).

Every sampler, guidance wrapper and edit talks to a :class:`Denoiser` and never to a network,
so a model trained to predict eps, x0 or v (or a flow velocity) works with all of them; a
:class:`DenoiserWrapper` is called like one and hands the rest to the denoiser inside.

Glossary: ``t`` is the (possibly fractional) step index 0..T-1 of the VP schedule, ``cond``
an optional conditioning (class labels), ``x0_hat``/``eps_hat`` the predictions.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch

from . import process as P
from .device import module_device
from .errors import DenoiselabError
from .schedules import NoiseSchedule

PARAMETERIZATIONS = ("eps", "x0", "v")  # of VP models; a FlowDenoiser predicts velocity
C_OUTS = ("lcm", "complement")  # a consistency student's c_out (ConsistencyDenoiser)


class Denoiser:
    """Adapter: network + parameterization + schedule -> (x0_hat, eps_hat).

    ``clip_x0``: if set (e.g. 1.0 for images in [-1, 1]), x0_hat is clamped to [-c, c] and eps_hat
    recomputed from it, as in Ho et al. 2020's sampler; leave None for unbounded data (2D points).
    ``threshold`` p > 0: dynamic thresholding instead (Saharia et al. 2022, sec. 2.3): per sample,
    s = the p-quantile of |x0_hat|, held in [1, clip_x0]; x0_hat is clamped to [-s, s] and divided
    by s (diffusers' ``thresholding`` with ``dynamic_thresholding_ratio`` p and ``sample_max_value``
    clip_x0).

    A network with ``variance_output = "learned_range"`` (IF stage I, improved DDPM) outputs 2C
    channels: its prediction, then v in [-1, 1] that sets the reverse step's variance (Nichol &
    Dhariwal 2021, eq. 15). Calling the denoiser reads the first C; :meth:`learned_variance` the rest.
    """

    threshold = 0.0  # no dynamic thresholding unless asked (a FlowDenoiser never is)

    def __init__(self, net: Callable, schedule: NoiseSchedule, parameterization: str = "eps",
                 clip_x0: Optional[float] = None, threshold: float = 0.0):
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        self.net = net
        self.schedule = schedule
        self.parameterization = parameterization
        self.clip_x0 = clip_x0
        self.threshold = float(threshold or 0.0)
        self.variance_output = getattr(net, "variance_output", None)
        self._last = None  # (x, t, cond, output) of the last call of a learned-variance network

    def scales(self, t, like):
        return P.scales(self.schedule, t, like)

    # -- The time axis as grids and samplers see it: every process is x_t = a x0 + s eps with
    # sigma = s / a (Karras et al. 2022, eq. 4); the time t is the process's own. --
    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.schedule.t_from_sigma(sigma)

    @property
    def sigma_range(self) -> tuple[float, float]:
        """(sigma_min, sigma_max) the network was trained on: sigma at t = 0 and t = T - 1."""
        sig = self.schedule.sigmas
        return float(sig[0]), float(sig[-1])

    @property
    def time_range(self) -> tuple[float, float]:
        """(t at the noise end, t of clean data): grids run from the first towards the second."""
        return float(self.schedule.T - 1), -1.0

    def raw(self, x: torch.Tensor, t: torch.Tensor, cond=None, w=None) -> torch.Tensor:
        """The network's output on (x_t, t); ``w``: the guidance scale of a network that takes it
        as an input (a w-conditioned student), one per sample or one for all."""
        t = torch.as_tensor(t, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        out = self.call_net(x, t, cond, w)
        if self.variance_output:
            self._last = (x, t, cond, out)
        return out

    def learned_variance(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """v in [-1, 1] of a learned-range network at (x_t, t, cond) (Nichol & Dhariwal 2021, eq. 15).

        The sampler asks right after calling the denoiser, so the last output is reused when it was
        for these inputs, or for [x, x] with cond first (classifier-free guidance's batch: the
        conditional half's variance, as diffusers' IF pipeline takes it); else the network runs."""
        if not self.variance_output:
            raise DenoiselabError("this network predicts no variance: use ddpm's --variance beta_tilde or beta")
        t = torch.as_tensor(t, dtype=x.dtype)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        c = x.shape[1]
        if self._last is not None:
            lx, lt, lcond, out = self._last
            n = x.shape[0]
            same = lx.shape[1:] == x.shape[1:] and lx.shape[0] in (n, 2 * n) and torch.equal(lx[:n], x)
            same = same and torch.equal(lt[:n].to(t), t) and self._same_cond(lcond, cond, n)
            if same:
                return out[:n, c:]
        return self.call_net(x, t, cond)[:, c:]

    @staticmethod
    def _same_cond(last, cond, n: int) -> bool:
        """The last call's condition, or the first n rows of it, is ``cond``."""
        if last is None or cond is None:
            return last is None and cond is None
        last, cond = torch.as_tensor(last), torch.as_tensor(cond)
        if last.ndim == 0 or cond.ndim == 0:
            return last.ndim == cond.ndim and torch.equal(last, cond)
        return last.shape[0] >= n and torch.equal(last[:n], cond.to(last.device).expand_as(last[:n]))

    def call_net(self, x: torch.Tensor, t: torch.Tensor, cond=None, w=None) -> torch.Tensor:
        """net(x, t, cond) on the network's device, the result on x's: a sampler runs wholly on
        the network's device (``generate`` puts x_T there), and an edit that starts from CPU
        images still works, paying one copy each way per call. ``w`` goes to the network only
        when given (only a w-conditioned network takes it)."""
        dev = module_device(self.net, default=x.device)
        c = cond.to(dev) if torch.is_tensor(cond) else cond
        if w is None:
            return self.net(x.to(dev), t.to(dev), c).to(x.device)
        return self.net(x.to(dev), t.to(dev), c, w=torch.as_tensor(w).to(dev)).to(x.device)

    def __call__(self, x: torch.Tensor, t, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.raw(x, t, cond)
        return self.from_output(x, t, out)

    def unclipped(self, x: torch.Tensor, t, cond=None, w=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) before the x0 clip: guidance wrappers combine these, then clip once."""
        out = self.raw(x, t, cond) if w is None else self.raw(x, t, cond, w)
        return self.from_output(x, t, out, clip=False)

    def from_output(self, x: torch.Tensor, t, out: torch.Tensor, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a raw network output into (x0_hat, eps_hat)."""
        if self.variance_output:
            out = out[:, : x.shape[1]]  # the prediction; the variance channels follow it
        a, s = self.scales(t, x)
        if self.parameterization == "eps":
            eps = out
            x0 = P.x0_from_eps(x, eps, a, s)
        elif self.parameterization == "x0":
            x0 = out
            eps = P.eps_from_x0(x, x0, a, s)
        else:
            x0 = P.x0_from_v(x, out, a, s)
            eps = P.eps_from_v(x, out, a, s)
        return self.clip_pair(x, t, x0, eps) if clip else (x0, eps)

    def clip_pair(self, x: torch.Tensor, t, x0: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clamp x0_hat to [-clip_x0, clip_x0] (or threshold it dynamically) and recompute eps_hat
        from it (no-op without clip_x0)."""
        if self.clip_x0 is None:
            return x0, eps
        a, s = self.scales(t, x)
        if self.threshold:
            flat = x0.reshape(len(x0), -1).abs()
            q = torch.quantile(flat if flat.dtype == torch.float64 else flat.float(), self.threshold, dim=1)
            q = q.clamp(1.0, max(self.clip_x0, 1.0)).to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
            x0 = torch.maximum(torch.minimum(x0, q), -q) / q
        else:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        return x0, P.eps_from_x0(x, x0, a, s)


class DenoiserWrapper:
    """Base of every denoiser -> denoiser wrapper: the guidance wrappers (``guidance``), the
    composite denoisers of edits (``editing.composite``) and the evaluation counter of
    ``samplers.api.generate``.

    The wrapped denoiser is ``inner``. Every attribute the wrapper does not define itself
    (schedule, parameterization, scales, t_from_sigma, sigma_range, time_range, clip_x0,
    clip_pair, ...) is the inner one's, read at each access, so a wrapper lives on its inner
    denoiser's time axis and every sampler and edit takes it unchanged. ``raw``, ``from_output``
    and ``net`` are refused (``NOT_DELEGATED``): they would reach the network past the wrapper's
    own call, giving an unguided output or an uncounted evaluation. ``device.module_device``
    finds the network through ``inner`` in the instance dict.

    A subclass defines :meth:`unclipped`, its combined (x0_hat, eps_hat) before the x0 clip;
    calling the wrapper applies the inner denoiser's clip once, afterwards: clipping each part
    first would bend the differences that guidance and composites combine.
    """

    NOT_DELEGATED = frozenset({"raw", "from_output", "net"})

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        # Reached only for names the wrapper lacks. Dunders stay unanswered: copy and pickle
        # probe them on an instance whose __init__ has not run, which has no inner yet.
        if name in self.NOT_DELEGATED or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__} has no {name!r}: call the wrapper itself, "
                                 f"which returns its (x0_hat, eps_hat)")
        try:
            inner = self.__dict__["inner"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(inner, name)

    def unclipped(self, x: torch.Tensor, t, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, t, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.clip_pair(x, t, *self.unclipped(x, t, cond))


class FlowDenoiser(Denoiser):
    """Adapter for a flow-matching (rectified flow) network that predicts the velocity.

    Time ``t`` is tau in [0, 1] with x_tau = tau x0 + (1 - tau) eps (tau = 0 noise, tau = 1 data;
    Lipman et al. 2023 eq. 22 with sigma_min = 0; Liu et al. 2023): a process with a = tau,
    s = 1 - tau and sigma = (1 - tau) / tau. The network sees tau * time_scale, as in
    ``process.flow_loss``. From v_hat = x0_hat - eps_hat and x = tau x0 + (1 - tau) eps:
      x0_hat = x + (1 - tau) v_hat,   eps_hat = x - tau v_hat.
    """

    # EDM's sigma range (Karras et al. 2022, sec. 5) for grids that need finite ends; the flow
    # itself is trained on every tau in [0, 1], i.e. sigma in [0, inf].
    SIGMA_RANGE = (0.002, 80.0)

    def __init__(self, net: Callable, time_scale: float = 1000.0, clip_x0: Optional[float] = None):
        self.net = net
        self.schedule = None
        self.parameterization = "velocity"
        self.time_scale = float(time_scale)
        self.clip_x0 = clip_x0

    def scales(self, t, like):
        tau = torch.as_tensor(t, dtype=torch.float64)
        return P._bcast(tau, like), P._bcast(1 - tau, like)

    def raw(self, x: torch.Tensor, t, cond=None, w=None) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.call_net(x, t * self.time_scale, cond, w)

    def from_output(self, x: torch.Tensor, t, out: torch.Tensor, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        tau, s = self.scales(t, x)
        x0 = x + s * out
        eps = x - tau * out
        return self.clip_pair(x, t, x0, eps) if clip else (x0, eps)

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        # tau = a / (a + s) = 1 / (1 + sigma); sigma = inf gives tau = 0 (pure noise).
        return 1 / (1 + torch.as_tensor(sigma, dtype=torch.float64))

    @property
    def sigma_range(self) -> tuple[float, float]:
        return self.SIGMA_RANGE

    @property
    def time_range(self) -> tuple[float, float]:
        return 0.0, 1.0


class AnalyticGaussianDenoiser(Denoiser):
    """The optimal denoiser E[x0 | x_t] for data x0 ~ N(mu, diag(var)): a closed form, no network.

    With x_t = a x0 + s eps, E[x0 | x_t] = mu + a var / (a^2 var + s^2) (x_t - a mu).
    Used to test samplers without training anything.
    """

    def __init__(self, schedule: NoiseSchedule, mu: torch.Tensor, var: torch.Tensor):
        super().__init__(net=None, schedule=schedule, parameterization="x0")
        self.mu = torch.as_tensor(mu)
        self.var = torch.as_tensor(var)

    def raw(self, x, t, cond=None):
        a, s = self.scales(torch.as_tensor(t, dtype=torch.float64), x)
        mu, var = self.mu.to(x.dtype), self.var.to(x.dtype)
        return mu + a * var / (a * a * var + s * s) * (x - a * mu)


def mixture_posterior(x: torch.Tensor, a: torch.Tensor, s: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                      weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed forms for data sum_k w_k N(mu_k, var_k I) seen through x_t = a x0 + s eps (float64).

    Returns (E[x0 | x_t, k] per component, shape (N, K, D); log r_k(x_t) = log p(k | x_t), shape (N, K)),
    with r_k from N(x_t; a mu_k, (a^2 var_k + s^2) I) and
    E[x0 | x_t, k] = mu_k + a var_k / (a^2 var_k + s^2) (x_t - a mu_k).
    """
    flat = x.double().reshape(x.shape[0], -1)
    a1, s1 = a.double().reshape(-1, 1, 1), s.double().reshape(-1, 1, 1)  # (N, 1, 1)
    mu = means[None]  # (1, K, D)
    tot = a1 * a1 * variances[None, :, None] + s1 * s1  # (N, K, 1)
    diff = flat[:, None, :] - a1 * mu
    d = flat.shape[1]
    logp = torch.log(weights)[None] - 0.5 * (diff.pow(2) / tot).sum(-1) - 0.5 * d * torch.log(tot[..., 0])
    comp = mu + a1 * variances[None, :, None] / tot * diff
    return comp, torch.log_softmax(logp, dim=1)


class AnalyticMixtureDenoiser(Denoiser):
    """Optimal denoiser for an isotropic Gaussian mixture sum_k w_k N(mu_k, var_k I) (closed form).

    Posterior responsibilities r_k(x_t) use N(x_t; a mu_k, (a^2 var_k + s^2) I); then
    E[x0 | x_t] = sum_k r_k (mu_k + a var_k / (a^2 var_k + s^2) (x_t - a mu_k)).
    """

    def __init__(self, schedule: NoiseSchedule, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor):
        super().__init__(net=None, schedule=schedule, parameterization="x0")
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.variances = torch.as_tensor(variances, dtype=torch.float64)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)

    def posterior(self, x, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[x0 | x_t, k], log p(k | x_t)): see :func:`mixture_posterior`."""
        a, s = self.scales(torch.as_tensor(t, dtype=torch.float64), x.double())
        return mixture_posterior(x, a, s, self.means, self.variances, self.weights)

    def log_class_probs(self, x, t) -> torch.Tensor:
        """log p(k | x_t): the exact noise-aware classifier of the mixture's components."""
        return self.posterior(x, t)[1].to(x.dtype)

    def raw(self, x, t, cond=None):
        comp, logr = self.posterior(x, t)
        return (logr.exp()[..., None] * comp).sum(1).reshape(x.shape).to(x.dtype)


class ConditionalMixtureDenoiser(AnalyticMixtureDenoiser):
    """The mixture's components as classes: cond k gives the k-th component's closed-form
    E[x0 | x_t, k], cond -1 (or None) the whole mixture's E[x0 | x_t]. The optimal class-conditional
    denoiser with a null class, for testing guidance without training anything."""

    def raw(self, x, t, cond=None):
        comp, logr = self.posterior(x, t)
        mix = (logr.exp()[..., None] * comp).sum(1)
        if cond is None:
            return mix.reshape(x.shape).to(x.dtype)
        cond = torch.as_tensor(cond).long().reshape(-1).expand(x.shape[0])
        picked = comp[torch.arange(x.shape[0]), cond.clamp(min=0)]
        out = torch.where((cond >= 0)[:, None], picked, mix)
        return out.reshape(x.shape).to(x.dtype)


class ConsistencyDenoiser(DenoiserWrapper):
    """A consistency student (Song et al. 2023): f(x_t, t) = c_skip(sigma) x_t / a + c_out(sigma) x0_net,
    where x0_net is the inner denoiser's (the student network's) clean estimate and sigma = s / a.

    With u = scale (sigma - sigma_min) (Song et al. 2023, appendix C; ``scale`` as in latent
    consistency models, so c_skip fades within a tenth of sigma_data of the boundary):
      c_skip = sigma_data^2 / (u^2 + sigma_data^2),
      c_out = u / sqrt(u^2 + sigma_data^2)   (``c_out="lcm"``: latent consistency models, Luo et al.
                                              2023, on the network's x0 estimate), or
      c_out = 1 - c_skip                     (``c_out="complement"``: a convex mix of x / a and x0_net),
    so f(x, sigma_min) = x / a exactly (the boundary condition), and far from it f is the
    network's own x0_hat. The two differ only near the boundary (where "lcm" makes c_skip + c_out
    up to 1.4); which trains the better student depends on the data (docs/results/distill.md). ``c_skip x / a`` is written as sigma_data^2 a x / (k^2 (s - sigma_min a)^2
    + sigma_data^2 a^2), finite at pure noise (a = 0, a flow's tau = 0).
    """

    def __init__(self, inner, sigma_min: float, sigma_data: float = 0.5, scale: float = 10.0,
                 c_out: str = "complement", guidance: Optional[float] = None):
        super().__init__(inner)
        if c_out not in C_OUTS:
            raise DenoiselabError(f"unknown c_out {c_out!r}: choose one of {', '.join(C_OUTS)}")
        self.sigma_boundary = float(sigma_min)
        self.sigma_data = float(sigma_data)
        self.boundary_scale = float(scale)
        self.c_out = c_out
        # A w-conditioned student: the guidance scale is the network's input, not two
        # evaluations combined (``guidance.guided`` sets it through ``at_guidance``).
        self.guidance_input = guidance is not None
        self.w = guidance

    def at_guidance(self, w) -> "ConsistencyDenoiser":
        """This w-conditioned student at guidance scale ``w`` (a number, or one per sample)."""
        if not self.guidance_input:
            raise DenoiselabError("this student does not take the guidance scale as an input")
        out = copy.copy(self)
        out.w = w
        return out

    def coefficients(self, t, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_skip / a, c_out), broadcast against ``like``, computed in float64."""
        a, s = self.inner.scales(t, torch.empty(like.shape[0], dtype=torch.float64))
        k, sd = self.boundary_scale, self.sigma_data
        u = k * (s - self.sigma_boundary * a)  # k (sigma - sigma_min) a
        # sigma_min and s / a are the same number computed two ways: at the boundary u is rounding.
        u = torch.where(u.abs() <= 1e-9 * s, torch.zeros_like(u), u)
        den = u * u + sd * sd * a * a
        skip_over_a = torch.where(u == 0, 1 / a, sd * sd * a / den)
        # "lcm" trained MNIST students 5x better at one step; "complement" kept 2D students from
        # drifting, where "lcm" let them (docs/results/distill.md).
        out = u / den.sqrt() if self.c_out == "lcm" else 1 - skip_over_a * a
        return P._bcast(skip_over_a, like), P._bcast(out, like)

    def unclipped(self, x: torch.Tensor, t, cond=None) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.as_tensor(self.w, dtype=x.dtype, device=x.device).expand(x.shape[0]) if self.guidance_input else None
        x0_net, _ = self.inner.unclipped(x, t, cond) if w is None else self.inner.unclipped(x, t, cond, w=w)
        skip_over_a, out = self.coefficients(t, x)
        x0 = skip_over_a * x + out * x0_net
        a, s = self.inner.scales(t, x)
        return x0, P.eps_from_x0(x, x0, a, s)
