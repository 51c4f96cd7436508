"""Scoring an autoencoder: PSNR, SSIM and reconstruction FID of held-out images.

| symbol | meaning |
| --- | --- |
| x, y | images in [-1, 1], (N, C, H, W); scored in [0, 1] with peak L = 1 |
| mu, sigma^2, sigma_xy | local means, variances and covariance under an 11x11 Gaussian window, sigma 1.5 |
| C1, C2 | (K1 L)^2 and (K2 L)^2 with K1 = 0.01, K2 = 0.03 (Wang et al. 2004, eq. 7 and sec. III-C) |

PSNR and SSIM are computed per image and averaged over images (as latent diffusion reports its
autoencoders, Rombach et al. 2022, Table 8). Reconstruction FID is the Frechet distance between
the domain features of the reconstructions and of the same originals: 0 for a perfect
autoencoder, so its floor is 0, not a real-vs-real split.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import DenoiselabError
from .frechet import frechet_distance_features

SSIM_WINDOW, SSIM_SIGMA, SSIM_K = 11, 1.5, (0.01, 0.03)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], in float64 (sums of squares over a few thousand pixels)."""
    return (x.double() + 1) / 2


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, 10 log10(L^2 / MSE) with L = 1 on the [0, 1] scale; inf where equal."""
    mse = (to_unit(x) - to_unit(y)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The (size, size) Gaussian window of Wang et al. 2004, sec. III-C, normalised to sum 1."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004, eq. 13, with the Gaussian window of sec. III-C), the mean
    over channels and over every window that lies inside the image (a "valid" filter, as the
    authors' reference code), on the [0, 1] scale."""
    if x.shape != y.shape or x.ndim != 4:
        raise DenoiselabError(f"SSIM compares two image batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise DenoiselabError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(x.shape[-2:])}")
    c = x.shape[1]
    w = gaussian_window().to(x.device).expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)
    x, y = to_unit(x), to_unit(y)

    def blur(z):
        return F.conv2d(z, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    # Local (co)variances E[xy] - E[x]E[y] under the window (eq. 14-16).
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K[0] ** 2, SSIM_K[1] ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


@torch.no_grad()
def reconstruct(net, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """decode(mean of q(z given x)) for every image, on the network's device, clipped to [-1, 1]
    as a decoded image is shown and saved; returned on the CPU."""
    dev = next(net.parameters()).device
    out = [net.decode(net.encode(x[i:i + batch].to(dev))[0]).float().clamp(-1, 1).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out)


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor,
                           features: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> dict:
    """{"PSNR", "SSIM", "reconstruction FID"} of ``x_hat`` against ``x``: each a value with its
    standard error over images (the FID without one) and its floor, the perfect score. The FID
    needs ``features``, those of (x_hat, x)."""
    p, s = psnr(x, x_hat), ssim(x, x_hat)
    if not torch.isfinite(p).all():
        p = p.clamp(max=100.0)  # an exact copy: 100 dB stands for "identical" so the mean stays finite
    n = len(x)
    metrics = {"PSNR": {"value": float(p.mean()), "se": float(p.std() / math.sqrt(n)) if n > 1 else 0.0,
                        "floor": math.inf, "unit": "dB"},
               "SSIM": {"value": float(s.mean()), "se": float(s.std() / math.sqrt(n)) if n > 1 else 0.0, "floor": 1.0}}
    if features is not None:
        metrics["reconstruction FID"] = {"value": frechet_distance_features(*features), "floor": 0.0}
    return metrics


def evaluate_reconstruction(net, x: torch.Tensor, ref_name: str, extractor=None, split: str = "held-out") -> dict:
    """Reconstruct ``x`` through ``net`` and score it (see ``reconstruction_metrics``); ``extractor``
    (an ``evaluation.images.FeatureExtractor``) adds the reconstruction FID."""
    from .images import extract

    if x.ndim != 4 or len(x) < 2:
        raise DenoiselabError(f"an autoencoder is scored on at least 2 images (N, C, H, W), got {tuple(x.shape)}")
    x_hat = reconstruct(net, x)
    feats = None if extractor is None else (extract(extractor, x_hat), extract(extractor, x))
    res = {"ref": ref_name, "kind": "reconstruction", "split": split, "num": len(x), "num_ref": len(x),
           "num_floor": len(x), "metrics": reconstruction_metrics(x, x_hat, feats), "warnings": []}
    if feats is not None:
        res["features"] = {"network": extractor.name, "dim": int(feats[0].shape[1]),
                           **{k: v for k, v in extractor.info.items() if k in ("heldout_accuracy", "sha256")}}
        if len(x) < 2 * 256:
            res["warnings"].append(f"reconstruction FID on {len(x)} images: its bias is large below a few "
                                   "thousand; compare it only at the same image count")
    return res


def format_reconstruction(results: dict) -> str:
    """One line per metric with its standard error and its floor (the perfect score)."""
    lines = [f"{results['num']} {results.get('split', '')} images of {results['ref']} reconstructed"
             + (f"; FID features: {results['features']['network']}" if results.get("features") else "")]
    for name, r in results["metrics"].items():
        text = f"{name:20s} {r['value']:10.4f}" + (f" +- {r['se']:.2g}" if "se" in r else "")
        perfect = {"PSNR": "inf: identical images"}.get(name, f"{r['floor']:g}: identical images")
        lines.append(f"{text:44s} ({r.get('unit', '') + ' ' if r.get('unit') else ''}best {perfect})")
    return "\n".join(lines)


__all__ = ["SSIM_K", "SSIM_SIGMA", "SSIM_WINDOW", "evaluate_reconstruction", "format_reconstruction",
           "gaussian_window", "psnr", "reconstruct", "reconstruction_metrics", "ssim", "to_unit"]
