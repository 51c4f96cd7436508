"""Per-sample counter-based noise: Gaussian, independent, and independent of batch size."""

import torch
from scipy import stats

from denoiselab.rng import SampleNoise


def test_standard_normal():
    z = SampleNoise(0, 50_000).randn(3, (4,))
    assert z.shape == (50_000, 4)
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert stats.kstest(z.flatten().numpy()[:100_000], "norm").pvalue > 1e-3


def test_streams_samples_and_elements_are_uncorrelated():
    a = SampleNoise(1, 40_000).randn(1, (2,))
    b = SampleNoise(1, 40_000).randn(2, (2,))
    c = torch.corrcoef(torch.stack([a[:-1, 0], a[1:, 0], a[:, 1][:-1], b[:-1, 0]]))
    assert (c - torch.eye(4)).abs().max() < 0.03


def test_batch_and_offset_independence():
    whole = SampleNoise(9, 100).randn(5, (3, 2))
    part = SampleNoise(9, 30, offset=50).randn(5, (3, 2))
    assert torch.equal(whole[50:80], part)
    assert not torch.equal(SampleNoise(10, 100).randn(5, (3, 2)), whole)
