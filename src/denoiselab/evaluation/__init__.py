"""Metrics. Each takes arrays it is handed; nothing here reads files it was not given.

2D: chamfer, MMD, sliced Wasserstein, mixture NLL (``report.evaluate_points``). Images: FID,
KID, precision/recall in one pass over features (``feature_metrics.evaluate_features``), with
the domain feature network (``featurenet``) or FID Inception-v3 (``inception``), floors and
cached reference features (``images.evaluate_images``), conditional accuracy.
"""

from .chamfer import chamfer_distance
from .feature_metrics import evaluate_features
from .frechet import frechet_distance, gaussian_stats
from .mmd import kid, mmd_rbf
from .points import mixture_nll, sliced_wasserstein
from .precision_recall import precision_recall

__all__ = ["chamfer_distance", "evaluate_features", "frechet_distance", "gaussian_stats", "kid", "mixture_nll",
           "mmd_rbf", "precision_recall", "sliced_wasserstein"]
