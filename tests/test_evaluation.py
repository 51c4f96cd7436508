"""Evaluation: closed forms of the Frechet distance, unbiasedness of KID, precision/recall limits,
2D metrics, feature networks (tiny, trained a few steps), Inception architecture, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoiselab.cli import main
from denoiselab.data import build_dataset, default_mixture, load_toy
from denoiselab.errors import DenoiselabError
from denoiselab.evaluation.feature_metrics import evaluate_features
from denoiselab.evaluation.featurenet import FeatureNetConfig, load_or_train_feature_net
from denoiselab.evaluation.frechet import frechet_distance, frechet_distance_features, sqrtm_psd
from denoiselab.evaluation.images import FeatureExtractor, check_images, conditional_accuracy, evaluate_images
from denoiselab.evaluation.mmd import kid, mmd_rbf
from denoiselab.evaluation.points import mixture_nll, sliced_wasserstein
from denoiselab.evaluation.precision_recall import precision_recall
from denoiselab.evaluation.report import evaluate_points


def _rand_psd(d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T / d


# -- Frechet distance ---------------------------------------------------------------------

def test_frechet_identical_statistics_is_zero():
    for rank in (None, 5):   # full rank and singular
        s = _rand_psd(32, 0, rank)
        mu = torch.linspace(-1, 1, 32, dtype=torch.float64)
        assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)


def test_frechet_shifted_equal_covariances_is_squared_mean_distance():
    s = _rand_psd(16, 1)
    mu1 = torch.zeros(16, dtype=torch.float64)
    mu2 = torch.arange(16, dtype=torch.float64) / 10
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(float(mu2 @ mu2), rel=1e-9)


def test_frechet_diagonal_closed_form():
    a = torch.tensor([1.0, 4.0, 0.25, 9.0], dtype=torch.float64)
    b = torch.tensor([4.0, 1.0, 0.25, 0.0], dtype=torch.float64)
    mu1, mu2 = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    expected = 4.0 + float(((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_matches_scipy_on_well_conditioned_covariances():
    from scipy import linalg

    s1, s2 = _rand_psd(20, 2) + 0.1 * torch.eye(20, dtype=torch.float64), _rand_psd(20, 3) + 0.1 * torch.eye(20, dtype=torch.float64)
    mu1, mu2 = torch.zeros(20, dtype=torch.float64), torch.full((20,), 0.3, dtype=torch.float64)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy())
    ref = float(mu2 @ mu2) + float(s1.trace() + s2.trace()) - 2 * float(np.trace(covmean).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)


def test_frechet_ill_conditioned_is_finite_and_nonnegative():
    g = torch.Generator().manual_seed(4)
    few = torch.randn(10, 64, generator=g)                      # fewer samples than dimensions
    dup = torch.randn(3, 64, generator=g).repeat(50, 1)         # duplicated images
    for f1, f2 in ((few, few + 1e-3), (dup, dup), (dup, few), (few, torch.randn(12, 64, generator=g))):
        d = frechet_distance_features(f1, f2)
        assert math.isfinite(d) and d >= 0
    assert frechet_distance_features(dup, dup) == pytest.approx(0.0, abs=1e-8)


def test_sqrtm_psd_squares_back():
    s = _rand_psd(10, 5, rank=4)
    r = sqrtm_psd(s)
    assert torch.allclose(r @ r, s, atol=1e-10)


# -- KID, precision/recall ------------------------------------------------------------------

def test_kid_unbiased_on_equal_distributions_and_positive_on_shifted():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(1500, 16, generator=g), torch.randn(1500, 16, generator=g)
    same = kid(x, y, subsets=30, subset_size=300)
    assert abs(same["value"]) < 3 * same["se"] + 1e-4
    shifted = kid(x, y + 0.5, subsets=30, subset_size=300)
    assert shifted["value"] > 20 * shifted["se"]
    grams = kid(x, y + 0.5, subsets=30, subset_size=300, grams=(x @ x.T, (y + 0.5) @ (y + 0.5).T, x @ (y + 0.5).T))
    assert grams["value"] == pytest.approx(shifted["value"], rel=1e-5)


def test_precision_recall_identical_and_disjoint():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(500, 8, generator=g)
    pr = precision_recall(x, x.clone())
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0
    pr = precision_recall(x, x + 100.0)
    assert pr["precision"] == 0.0 and pr["recall"] == 0.0
    # Mode dropping: half of the real modes missing costs recall, not precision.
    real = torch.cat([torch.randn(400, 2, generator=g) * 0.1, torch.randn(400, 2, generator=g) * 0.1 + 10])
    fake = torch.randn(400, 2, generator=g) * 0.1
    pr = precision_recall(real, fake)
    assert pr["precision"] > 0.9 and 0.4 < pr["recall"] < 0.55


def test_evaluate_features_one_pass_with_intervals_and_warnings():
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(400, 32, generator=g), torch.randn(400, 32, generator=g)
    r = evaluate_features(x, y, bootstrap=10, kid_subset_size=200)
    m = r["metrics"]
    assert set(m) == {"FID", "KID", "precision", "recall"}
    for name in m:
        lo, hi = m[name]["ci"]
        assert lo <= m[name]["value"] <= hi
    assert any("2000" in w for w in r["warnings"])            # too few samples to mean much
    tiny = evaluate_features(x[:20], y[:20], bootstrap=0)
    assert any("singular" in w for w in tiny["warnings"])


@pytest.mark.parametrize("bad, match", [
    (torch.full((10, 4), float("nan")), "NaN"),
    (torch.zeros((0, 4)), "empty"),
    (torch.zeros((10, 5)), "dimensions differ"),
])
def test_evaluate_features_bad_input(bad, match):
    with pytest.raises(DenoiselabError, match=match):
        evaluate_features(bad, torch.randn(10, 4))


# -- 2D metrics ----------------------------------------------------------------------------

def test_mmd_and_swd_zero_on_identical_positive_on_shifted():
    x, y = load_toy("gaussians", 1000, 0), load_toy("gaussians", 1000, 1)
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(x, torch.cat([x, x])) == pytest.approx(0.0, abs=1e-9)   # unequal sizes, same law
    assert abs(mmd_rbf(x, y)) < 2e-3
    assert sliced_wasserstein(x, y) < 0.25
    assert mmd_rbf(x, y + 1.0) > 0.05
    assert sliced_wasserstein(x, y + 1.0) > 0.5


def test_nll_of_true_samples_near_entropy():
    mix = default_mixture()
    entropy = float(-mix.log_prob(mix.sample(200_000, 123)).mean())
    x = mix.sample(5000, 1)
    lp = mix.log_prob(x)
    assert mixture_nll(x, mix) == pytest.approx(entropy, abs=4 * lp.std() / math.sqrt(len(x)))


def test_evaluate_points_reports_every_metric_with_floor():
    r = evaluate_points(load_toy("gaussians", 512, 3), "gaussians")
    assert set(r["metrics"]) == {"chamfer", "MMD", "SWD", "NLL"}
    assert all(math.isfinite(m["floor"]) for m in r["metrics"].values())


# -- Feature networks ----------------------------------------------------------------------

TINY = FeatureNetConfig(feature_dim=16, widths=(8, 8, 16), epochs=1, batch_size=256)


def test_feature_net_trains_caches_and_scores_real_near_floor(tmp_path):
    data = build_dataset("digits")
    net, info = load_or_train_feature_net(data.x, data.y, 10, tmp_path, TINY)
    assert 0.0 <= info["heldout_accuracy"] <= 1.0 and info["num_heldout"] == round(0.2 * len(data.x))
    again, info2 = load_or_train_feature_net(data.x, data.y, 10, tmp_path, TINY)
    assert info2["cached"] and info2["heldout_accuracy"] == info["heldout_accuracy"]
    with torch.no_grad():
        assert torch.equal(net.eval().embed(data.x[:8]), again.embed(data.x[:8]))
    ext = FeatureExtractor("featurenet", "tiny", net.embed, net, info)
    real = evaluate_images(data.x[:400], data, "digits", ext, cache_dir=tmp_path, bootstrap=0)
    noise = evaluate_images(torch.rand(400, 1, 8, 8) * 2 - 1, data, "digits", ext, cache_dir=tmp_path, bootstrap=0)
    assert noise["metrics"]["FID"]["value"] > 3 * real["metrics"]["FID"]["floor"]
    assert list(tmp_path.glob("reffeat-*.npy"))                 # reference features cached
    acc = conditional_accuracy(net, data.x[:200], data.y[:200])
    assert 0.0 <= acc["value"] <= 1.0
    with pytest.raises(DenoiselabError, match="labels for"):
        conditional_accuracy(net, data.x[:10], data.y[:9])


def test_feature_net_needs_labels(tmp_path):
    with pytest.raises(DenoiselabError, match="labelled"):
        load_or_train_feature_net(torch.zeros(20, 1, 8, 8), None, 0, tmp_path, TINY)


def test_check_images_shape_mismatch():
    data = build_dataset("digits")
    with pytest.raises(DenoiselabError, match="do not match"):
        check_images(torch.zeros(4, 1, 28, 28), data)
    with pytest.raises(DenoiselabError, match="NaN"):
        check_images(torch.full((4, 1, 8, 8), float("nan")), data)


def test_fid_inception_architecture_keys_and_shape(tmp_path):
    from denoiselab.evaluation.inception import FIDInceptionV3, load_fid_inception

    net = FIDInceptionV3().eval()
    sd = net.state_dict()
    # torchvision's Inception3 minus the auxiliary head, with 1008 classes: pytorch-fid's file.
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    for key, shape in [("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)), ("Conv2d_4a_3x3.bn.running_var", (192,)),
                       ("Mixed_5b.branch_pool.conv.weight", (32, 192, 1, 1)),
                       ("Mixed_6e.branch7x7dbl_5.conv.weight", (192, 192, 1, 7)),
                       ("Mixed_7a.branch7x7x3_4.conv.weight", (192, 192, 3, 3)),
                       ("Mixed_7c.branch3x3dbl_3b.conv.weight", (384, 384, 3, 1)),
                       ("fc.weight", (1008, 2048)), ("fc.bias", (1008,))]:
        assert tuple(sd[key].shape) == shape
    assert not any(k.startswith("AuxLogits") for k in sd)
    path = tmp_path / "pt_inception.pth"
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, path)
    loaded = load_fid_inception(path)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        f = loaded(x)
        assert f.shape == (2, 2048) and torch.isfinite(f).all()
        assert torch.allclose(f, net(x), atol=1e-5)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(DenoiselabError, match="not the FID Inception"):
        load_fid_inception(tmp_path / "bad.pth")


# -- CLI -----------------------------------------------------------------------------------

def test_cli_evaluate_points(tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, load_toy("gaussians", 256, 5).numpy())
    assert main(["evaluate", str(path), "--ref", "gaussians"]) == 0
    out = capsys.readouterr().out
    for name in ("chamfer", "MMD", "SWD", "NLL", "floor"):
        assert name in out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("denoiselab: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_evaluate_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 1, 28, 28), np.float32))
    cache = ["--cache-dir", str(tmp_path / "cache")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(bad), "--ref", str(empty)] + cache) != 0
    _one_line_error(capsys)
    np.save(bad, np.zeros((4, 3), np.float32))
    assert main(["evaluate", str(bad), "--ref", "gaussians"]) != 0
    assert "(N, 2)" in _one_line_error(capsys)
    np.save(bad, np.full((4, 2), np.nan, np.float32))
    assert main(["evaluate", str(bad), "--ref", "gaussians"]) != 0
    assert "NaN" in _one_line_error(capsys)
    assert main(["evaluate", str(tmp_path / "missing.npy"), "--ref", "mnist"]) != 0
    _one_line_error(capsys)


def test_cli_evaluate_images_with_cached_feature_net(tmp_path, capsys, monkeypatch):
    """The CLI path end to end on sklearn digits, with a tiny feature network standing in for the default."""
    import denoiselab.evaluation.images as images_mod

    monkeypatch.setattr(images_mod.domain_extractor, "__defaults__", (TINY, None, None))
    data = build_dataset("digits")
    path = tmp_path / "s.npy"
    np.save(path, data.x[:300].numpy())
    labels = tmp_path / "y.npy"
    np.save(labels, data.y[:300].numpy())
    argv = ["evaluate", str(path), "--ref", "digits", "--cache-dir", str(tmp_path / "c"), "--bootstrap", "5",
            "--labels", str(labels)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("FID", "KID", "precision", "recall", "class accuracy", "floor", "held-out accuracy"):
        assert name in out
    np.save(path, np.zeros((5, 1, 28, 28), np.float32))
    assert main(argv[:4] + ["--cache-dir", str(tmp_path / "c")]) != 0
    assert "do not match" in _one_line_error(capsys)
