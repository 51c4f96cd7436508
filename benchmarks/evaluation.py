"""Evaluation targets (issue 4): prints a table.

1. FID vs pytorch-fid's formula on the same feature arrays (equal to 1e-3 relative). The
   reference is pytorch-fid's ``calculate_frechet_distance`` algorithm written out below
   (scipy.linalg.sqrtm of sigma1 @ sigma2, eps * I retry when not finite, ValueError on an
   imaginary diagonal above 1e-3, real part kept): pytorch-fid's module imports torchvision,
   which does not import beside this torch, and installing it would pull torchvision in. If
   ``pytorch_fid`` is importable anyway, its own function is used too (torchvision stubbed).
2. FID on ill-conditioned covariances (few samples, duplicated images): ours finite and >= 0,
   the scipy-sqrtm formula shown beside it.
3. Domain feature network on MNIST-5k: held-out accuracy >= 98%, training <= 5 min.
4. 10k vs 10k samples, 512-d features: FID + KID + precision/recall in <= 30 s.

Usage: python benchmarks/evaluation.py [--threads 2] [--skip-featurenet] [--write-results]
(``--write-results``: the table into docs/results/evaluation.md, section ``evaluation``.)
Timings are wall-clock and CPU seconds of this process; on a shared machine the wall time
depends on the load, which the table reports.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import types
import warnings
from contextlib import redirect_stdout

import numpy as np
import torch
from scipy import linalg

from denoiselab.evaluation.feature_metrics import evaluate_features
from denoiselab.evaluation.frechet import frechet_distance
from results import add_write_flag, markdown_table, write_table


def reference_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's formula (fid_score.calculate_frechet_distance, after TTUR), restated."""
    diff = mu1 - mu2
    # pytorch-fid passes disp=False: no message on a singular product, the error estimate dropped.
    # scipy >= 1.16 deprecates that argument; without it every scipy returns the root alone, and
    # the singular case's LinAlgWarning is silenced as disp=False silenced its message.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def pytorch_fid_function():
    """pytorch_fid.fid_score.calculate_frechet_distance if the package is installed, else None."""
    try:
        import importlib.util

        if importlib.util.find_spec("pytorch_fid") is None:
            return None
        if "torchvision" not in sys.modules:   # only its module-level imports need it
            tv = types.ModuleType("torchvision")
            tv.transforms = types.ModuleType("torchvision.transforms")
            tv.models = types.ModuleType("torchvision.models")
            tv.models.inception = types.SimpleNamespace(InceptionA=torch.nn.Module, InceptionC=torch.nn.Module,
                                                        InceptionE=torch.nn.Module)
            tv.__version__ = "0.0"
            sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                                "torchvision.models": tv.models})
        from pytorch_fid.fid_score import calculate_frechet_distance

        return calculate_frechet_distance
    except Exception:
        return None


def _np_stats(f):
    return np.mean(f, axis=0), np.cov(f, rowvar=False)


def relu_features(n, d, seed, shift=0.0):
    """Inception-like features: non-negative, correlated, heavy-ish tails."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(12345).standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mix + shift, 0)


def scipy_outcome(f1, f2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with redirect_stdout(io.StringIO()):
                v = reference_fid(*_np_stats(f1), *_np_stats(f2))
            return v, f"{v:.6g}" + ("  (NEGATIVE)" if v < 0 else "") + ("  (not finite)" if not np.isfinite(v) else "")
        except (ValueError, np.linalg.LinAlgError) as e:
            return None, f"{type(e).__name__}: {str(e)[:40]}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-featurenet", action="store_true")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import scipy

    print(f"torch {torch.__version__}, scipy {scipy.__version__}, numpy {np.__version__}, {args.threads} threads, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []

    # 1. Agreement with pytorch-fid's formula.
    official = pytorch_fid_function()
    print("\n1. FID vs pytorch-fid's formula (reference: "
          + ("pytorch_fid.fid_score.calculate_frechet_distance" if official else "its algorithm restated here") + ")")
    print(f"{'case':34s} {'ours':>14s} {'reference':>14s} {'rel. diff':>10s}")
    worst = 0.0
    for name, (n, d, shift) in {"10k vs 10k, 64-d, shifted": (10_000, 64, 0.3),
                                "10k vs 10k, 512-d, shifted": (10_000, 512, 0.1),
                                "5k vs 5k, 2048-d, shifted": (5_000, 2048, 0.05),
                                "10k vs 10k, 512-d, same law": (10_000, 512, 0.0)}.items():
        f1, f2 = relu_features(n, d, 1), relu_features(n, d, 2, shift)
        m1, s1 = _np_stats(f1)
        m2, s2 = _np_stats(f2)
        ours = frechet_distance(m1, s1, m2, s2)
        ref = official(m1, s1, m2, s2) if official else reference_fid(m1, s1, m2, s2)
        rel = abs(ours - ref) / abs(ref)
        worst = max(worst, rel)
        print(f"{name:34s} {ours:14.8g} {ref:14.8g} {rel:10.2e}")
    rows.append(("FID vs pytorch-fid formula (max rel. diff)", "<= 1e-3", f"{worst:.2e}", worst <= 1e-3))

    # 2. Ill-conditioned covariances.
    print("\n2. Ill-conditioned covariances: ours vs the scipy-sqrtm formula")
    print(f"{'case':44s} {'ours':>12s}   scipy sqrtm formula")
    rng = np.random.default_rng(0)
    base = relu_features(2000, 512, 3)
    uniq = relu_features(20, 512, 4)
    cases = {
        "50 vs 50 samples, 512-d (same law)": (relu_features(50, 512, 5), relu_features(50, 512, 6)),
        "100 vs 2000 samples, 512-d": (relu_features(100, 512, 7), base),
        "duplicated images: 20 unique x 100 vs itself": (np.repeat(uniq, 100, 0), np.repeat(uniq, 100, 0)),
        "duplicated images vs 2000 real, 512-d": (np.repeat(uniq, 100, 0), base),
        "identical sets, 30 samples, 512-d": (uniq[:10].repeat(3, 0), uniq[:10].repeat(3, 0)),
        "identical float32 features, 200 x 1024-d": (relu_features(200, 1024, 10).astype(np.float32),
                                                     relu_features(200, 1024, 10).astype(np.float32)),
        "constant features (zero covariance)": (np.ones((100, 64)), np.ones((100, 64)) + 1e-3),
        "rank 5 features vs rank 5, 256-d": (rng.standard_normal((500, 5)) @ rng.standard_normal((5, 256)),
                                             rng.standard_normal((500, 5)) @ rng.standard_normal((5, 256))),
    }
    all_ok, scipy_bad = True, 0
    for name, (f1, f2) in cases.items():
        m1, s1 = _np_stats(f1)
        m2, s2 = _np_stats(f2)
        ours = frechet_distance(m1, s1, m2, s2)
        ok = np.isfinite(ours) and ours >= 0
        all_ok &= ok
        v, text = scipy_outcome(f1, f2)
        scipy_bad += v is None or not np.isfinite(v) or v < 0
        print(f"{name:44s} {ours:12.6g}   {text}")
    rows.append(("ill-conditioned FID finite and >= 0", "all cases", f"{len(cases)} cases ok={all_ok}; "
                 f"scipy formula failed/negative in {scipy_bad}", bool(all_ok)))

    # 3. Domain feature network on MNIST-5k.
    if not args.skip_featurenet:
        from denoiselab.data import build_dataset
        from denoiselab.evaluation.featurenet import FeatureNetConfig, load_or_train_feature_net

        print("\n3. Domain feature network on MNIST-5k (trained from scratch, temp cache)")
        data = build_dataset("mnist")
        load0 = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            w0, c0 = time.perf_counter(), time.process_time()
            _, info = load_or_train_feature_net(data.x, data.y, 10, tmp, FeatureNetConfig(), log=print)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(f"held-out accuracy {info['heldout_accuracy']:.4f} on {info['num_heldout']} images "
              f"(trained on {info['num_train']}), wall {wall:.0f} s, CPU {cpu:.0f} s, "
              f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        rows.append(("feature net held-out accuracy (MNIST-5k)", ">= 0.98", f"{info['heldout_accuracy']:.4f}",
                     info["heldout_accuracy"] >= 0.98))
        rows.append(("feature net training time", "<= 300 s", f"wall {wall:.0f} s, CPU {cpu:.0f} s", wall <= 300))

    # 4. Timing: 10k vs 10k, 512-d.
    print("\n4. FID + KID + precision/recall, 10k vs 10k, 512-d features")
    f1 = torch.from_numpy(relu_features(10_000, 512, 8)).float()
    f2 = torch.from_numpy(relu_features(10_000, 512, 9, 0.05)).float()
    for boot in (0, 20):
        load0 = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        r = evaluate_features(f1, f2, bootstrap=boot)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        m = r["metrics"]
        print(f"bootstrap {boot:2d}: FID {m['FID']['value']:.4f}, KID {m['KID']['value']:.5f} +- {m['KID']['se']:.1e}, "
              f"precision {m['precision']['value']:.4f}, recall {m['recall']['value']:.4f}; wall {wall:.1f} s, "
              f"CPU {cpu:.1f} s, load average {load0:.1f}")
        rows.append((f"10k vs 10k 512-d, all metrics, bootstrap {boot}", "<= 30 s",
                     f"wall {wall:.1f} s (CPU {cpu:.1f} s)", wall <= 30))

    table = markdown_table(["target", "goal", "measured", "met"],
                           [[what, goal, got, "yes" if met else "NO"] for what, goal, got, met in rows])
    print("\n" + table)
    if args.write_results:
        write_table("evaluation", "evaluation", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
