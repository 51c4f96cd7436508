"""Image diffusion: UNets, image loaders, the training path on images, pictures, the image presets."""

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from denoiselab import runs
from denoiselab.cli import main
from denoiselab.config import apply_overrides
from denoiselab.data import build_dataset
from denoiselab.data.image_files import load_cifar10, load_idx, load_image_folder
from denoiselab.errors import DenoiselabError
from denoiselab.models import build_model
from denoiselab.models.cs180 import CS180UNet
from denoiselab.models.unet import UNet
from denoiselab.presets import get_preset
from denoiselab.schedules import make_schedule
from denoiselab.viz import images as V

# -- Models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, shape", [
    (dict(in_channels=1, image_size=28, ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,), groups=8), (3, 1, 28, 28)),
    (dict(in_channels=3, image_size=32, ch=16, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1), (2, 3, 32, 32)),
    (dict(in_channels=1, image_size=28, ch=16, ch_mult=(1, 2), patch=2, attn_resolutions=(7,), groups=8, channels_last=True), (2, 1, 28, 28)),
    (dict(in_channels=3, image_size=8, ch=8, ch_mult=(1,), num_res_blocks=1, mid_attn=False, groups=4), (2, 3, 8, 8)),
    (dict(in_channels=3, image_size=16, ch=16, ch_mult=(1, 2), out_channels=6), (2, 3, 16, 16)),
])
def test_unet_output_shape(kw, shape):
    net = UNet(**kw)
    out = net(torch.randn(shape), torch.tensor([0.0, 999.0, 500.0][:shape[0]]))
    c_out = kw.get("out_channels", shape[1])
    assert out.shape == (shape[0], c_out, *shape[2:])
    assert out.is_contiguous()


def test_unet_starts_at_zero_and_learns_a_nonzero_map():
    net = UNet(in_channels=1, image_size=8, ch=8, ch_mult=(1, 2), groups=4)
    x = torch.randn(2, 1, 8, 8)
    assert net(x, torch.tensor([1.0, 2.0])).abs().max() == 0  # zero-initialised output conv (ADM)


def test_unet_class_conditioning_and_null_class():
    net = UNet(in_channels=1, image_size=8, ch=8, ch_mult=(1, 2), groups=4, num_classes=10)
    for p in net.parameters():  # undo the zero initialisation so the output depends on everything
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5.0, 5.0, 5.0])
    a = net(x, t, torch.tensor([1, 2, 3]))
    b = net(x, t, torch.tensor([4, 2, 3]))
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1:], b[1:])
    # None, -1 and the null index are the same "no label".
    assert torch.allclose(net(x, t, None), net(x, t, torch.tensor([-1, 10, -1])))


def test_unet_rejects_sizes_the_levels_do_not_divide():
    with pytest.raises(DenoiselabError, match="divisible"):
        UNet(image_size=30, ch_mult=(1, 2, 2))
    net = UNet(image_size=28, ch=8, ch_mult=(1, 2, 2), groups=4)
    with pytest.raises(DenoiselabError, match="divisible"):
        net(torch.randn(1, 1, 30, 30), torch.tensor([1.0]))


def test_cs180_unet_shapes_and_conditioning():
    x = torch.randn(4, 1, 28, 28)
    assert CS180UNet(D=8, time_conditioned=False)(x, None).shape == x.shape
    net = CS180UNet(D=8, T=300)
    a, b = net(x, torch.full((4,), 10.0)), net(x, torch.full((4,), 250.0))
    assert a.shape == x.shape and not torch.allclose(a, b)
    cnet = CS180UNet(D=8, num_classes=10)
    assert cnet(x, torch.ones(4), torch.tensor([0, 1, -1, 10])).shape == x.shape
    # A dropped label is the zero one-hot vector.
    assert torch.allclose(cnet(x, torch.ones(4), torch.tensor([-1, 10, -1, -1])), cnet(x, torch.ones(4), None))
    assert sum(p.numel() for p in build_model("cs180-unet", D=64).parameters()) > 0


# -- Training on images -------------------------------------------------------------------------


def test_tiny_image_model_loss_falls(tmp_path):
    cfg = apply_overrides(get_preset("mnist"), [
        "data.name=digits", "model.image_size=8", "model.patch=1", "model.ch=16", "model.ch_mult=[1,2]",
        "model.attn_resolutions=[4]", "model.groups=4", "steps=40", "batch_size=64", "log_every=10",
        "warmup=0", "preview_every=0", "ema_decay=0"])
    data = runs.build_data(cfg)
    result = runs.make_trainer(cfg, tmp_path, data, progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert result["steps"] == 40
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"]


def test_bf16_autocast_option_trains(tmp_path):
    cfg = apply_overrides(get_preset("mnist"), [
        "data.name=digits", "model.image_size=8", "model.patch=1", "model.ch=8", "model.ch_mult=[1]",
        "model.attn_resolutions=[]", "model.groups=4", "steps=3", "batch_size=8", "log_every=1",
        "preview_every=0", "train.autocast=bf16"])
    result = runs.make_trainer(cfg, tmp_path, runs.build_data(cfg), progress=False).fit()
    assert np.isfinite(result["loss"])
    with pytest.raises(DenoiselabError, match="autocast"):
        runs.make_trainer(apply_overrides(cfg, ["train.autocast=fp8"]), tmp_path / "b", runs.build_data(cfg))


def test_flips_are_a_function_of_step_and_seed():
    data = build_dataset("digits", {"flip": True})
    a, _ = data.batch(3, 32, 0)
    b, _ = data.batch(3, 32, 0)
    plain, _ = build_dataset("digits").batch(3, 32, 0)
    assert torch.equal(a, b)
    flipped = [(not torch.equal(a[i], plain[i])) and torch.equal(a[i], plain[i].flip(-1)) for i in range(32)]
    same = [torch.equal(a[i], plain[i]) for i in range(32)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped)


# -- Loaders ------------------------------------------------------------------------------------


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "puppies").mkdir(parents=True)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :15, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "cat" / "sprite.png")
    Image.fromarray(np.full((16, 16), 0, np.uint8), "L").save(root / "dog" / "gray.jpg")
    Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(root / "dog" / "puppies" / "p.webp")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "notes.txt").write_text("ignored")
    return root


def test_image_folder_loader(image_folder):
    x, y, classes, skipped = load_image_folder(image_folder, image_size=8)
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert [s[0] for s in skipped] == ["cat/broken.png"]
    assert classes == ("cat", "dog", "puppies")
    sprite = x[0]  # files are sorted: cat/sprite.png first
    assert torch.allclose(sprite[:, :, -1], torch.ones(3, 8))  # transparent -> white
    assert sprite[0, 4, 0] > 0.9 and sprite[1, 4, 0] < -0.9  # opaque red stays red
    assert torch.allclose(x[1], torch.full((3, 8, 8), -1.0), atol=0.02)  # grayscale black -> RGB
    _, y_top, top, _ = load_image_folder(image_folder, image_size=8, labels="top")
    assert top == ("cat", "dog") and y_top.tolist() == [0, 1, 1]
    xg, *_ = load_image_folder(image_folder, image_size=8, channels=1)
    assert xg.shape == (3, 1, 8, 8)


def test_image_folder_data_set_reports_corrupt_files_and_flips(image_folder):
    with pytest.warns(UserWarning, match="broken.png"):
        data = build_dataset("folder", {"path": str(image_folder), "image_size": 8, "flip": True})
    assert data.kind == "images" and data.num_classes == 3 and data.hflip
    with pytest.raises(DenoiselabError, match="not found"):
        build_dataset("folder", {"path": str(image_folder / "missing")})
    with pytest.raises(DenoiselabError, match="unknown data option"):
        build_dataset("folder", {"path": str(image_folder), "size": 8})


def _write_idx(path, arr: np.ndarray, type_byte: int = 0x08):
    payload = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(">u1").tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def test_idx_loader(tmp_path):
    imgs = np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28) % 256
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([3, 1, 4, 1, 5]))
    x, y, names = load_idx(tmp_path)
    assert x.shape == (5, 1, 28, 28) and y.tolist() == [3, 1, 4, 1, 5] and names[3] == "3"
    assert torch.allclose(x[0, 0, 0, :3], torch.tensor([0, 1, 2]) / 127.5 - 1)
    data = build_dataset("idx", {"path": str(tmp_path), "classes": "fashion"})
    assert data.class_names[0] == "T-shirt/top" and len(data) == 5
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04garbage")
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1]))
    with pytest.raises(DenoiselabError, match="not an IDX file"):
        load_idx(tmp_path, split="test")


def test_cifar10_loader(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2):
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9],
                 b"batch_label": b"training batch"}
        with open(tmp_path / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch, f)
    x, y, names = load_cifar10(tmp_path)
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [0, 1, 2, 9] * 2 and names[9] == "truck"
    raw = pickle.load(open(tmp_path / "data_batch_1", "rb"))[b"data"]
    assert torch.allclose(x[0, 0, 0, 0], torch.tensor(raw[0, 0] / 127.5 - 1.0, dtype=torch.float32))
    # A pickle that would call a function is refused, not run.
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": print, b"labels": []}, f)
    with pytest.raises(DenoiselabError, match="not a CIFAR-10"):
        load_cifar10(tmp_path, split="test")


# -- Pictures -----------------------------------------------------------------------------------


def test_pictures_are_written(tmp_path):
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    sched = make_schedule("linear", 100)
    files = [V.save_grid(x, tmp_path / "grid.png"),
             V.gif_reverse_images([(50, x, x * 0), (10, x, x), (-1, x, x)], tmp_path / "rev.gif"),
             V.plot_forward_grid(x[:3], sched, tmp_path / "fwd.png"),
             V.gif_forward_images(x, sched, tmp_path / "fwd.gif", frames=5),
             V.plot_pixel_histograms(torch.rand(6, 3, 8, 8) * 2 - 1, sched, tmp_path / "hist.png")[0],
             V.plot_schedule_images(x, tmp_path / "sched.png", T=100)[0],
             V.plot_denoiser_sigmas(x[:2], lambda z: z.clamp(-1, 1), tmp_path / "sig.png")[0]]
    for f in files:
        assert f.stat().st_size > 0, f
    with Image.open(tmp_path / "rev.gif") as im:
        assert im.n_frames >= 3
    assert V.tile_images(x, nrow=3, pad=2).shape == (2 * 10 + 2, 3 * 10 + 2, 3)


def test_forward_process_ends_near_a_standard_normal(tmp_path):
    x = build_dataset("digits").x[:500]
    _, stats = V.plot_pixel_histograms(x, make_schedule("linear", 1000), tmp_path / "h.png")
    xt = stats["x_T"]["gray"]
    assert abs(xt["mean"]) < 0.02 and abs(xt["std"] - 1) < 0.02 and xt["ks"] < 0.02
    assert stats["data"]["gray"]["ks"] > 0.2


def test_cli_image_plots_and_forward_animation(tmp_path, capsys):
    assert main(["plot", "histogram", "digits", "--out", str(tmp_path / "h.png")]) == 0
    assert "KS" in capsys.readouterr().out
    assert main(["plot", "schedule-images", "digits", "--out", str(tmp_path / "s.png"), "--T", "200"]) == 0
    assert main(["animate", "forward", "--data", "digits", "--num", "4", "--frames", "4", "--out",
                 str(tmp_path / "f.gif")]) == 0
    for name in ("h.png", "s.png", "f.gif"):
        assert (tmp_path / name).stat().st_size > 0
    assert main(["plot", "histogram", "swiss-roll", "--out", str(tmp_path / "x.png")]) == 2


# -- Presets ------------------------------------------------------------------------------------


def _tiny_folder(root, n=4, size=(24, 20)):
    for i in range(n):
        cls = root / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        arr = np.random.default_rng(i).integers(0, 256, (*size, 4), dtype=np.uint8)
        Image.fromarray(arr, "RGBA").save(cls / f"{i}.png")
    return root


def test_afhq64_architecture_and_two_steps(tmp_path):
    cfg = get_preset("afhq64")
    net = runs.build_net(cfg)
    n = sum(p.numel() for p in net.parameters())
    assert 30e6 < n < 80e6  # ch 128, mults 1,2,2,2, 4 blocks, attention at 32x32
    assert sum(isinstance(m, torch.nn.MultiheadAttention) or type(m).__name__ == "AttentionBlock" for m in net.modules()) > 0
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64), torch.tensor([10.0])).shape == (1, 3, 64, 64)
    folder = _tiny_folder(tmp_path / "afhq")
    out = tmp_path / "run"
    assert main(["train", "--preset", "afhq64", "--out", str(out), "--quiet", "--no-pictures",
                 "--set", f"data.path={folder}", "--set", "steps=2", "--set", "batch_size=2",
                 "--set", "model.ch=16", "--set", "model.num_res_blocks=1", "--set", "log_every=1"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and np.isfinite(rows[-1]["loss"])


def test_pokemon_preset_runs_two_steps_with_pictures(tmp_path):
    cfg = get_preset("pokemon")
    net = runs.build_net(cfg)  # the preset's own architecture, built once
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32), torch.tensor([3.0])).shape == (1, 3, 32, 32)
    folder = _tiny_folder(tmp_path / "sprites", n=3)
    out = tmp_path / "run"
    assert main(["train", "--preset", "pokemon", "--out", str(out), "--quiet",
                 "--set", f"data.path={folder}", "--set", "steps=2", "--set", "batch_size=4",
                 "--set", "model.ch=16", "--set", "model.num_res_blocks=1",
                 "--set", "log_every=1", "--set", "sample.steps=3"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["diffusion"]["parameterization"] == "x0" and cfg["model"]["options"]["image_size"] == 32
    for name in ("samples.png", "reverse.gif", "forward.png", "forward.gif", "histograms.png",
                 "schedule_images.png", "loss.png", "pictures.json"):
        assert (out / name).stat().st_size > 0, name
    hist = json.loads((out / "pictures.json").read_text())["pixel_histograms"]
    assert set(hist["x_T"]) == {"red", "green", "blue"}
    assert main(["sample", str(out), "--num", "4", "--sampler", "ddim", "--steps", "3",
                 "--out", str(tmp_path / "s.png")]) == 0


def test_cs180_presets(tmp_path):
    cfg = get_preset("cs180-time")
    assert (cfg.diffusion.T, cfg.train.batch_size, cfg.model.options["D"]) == (300, 128, 64)
    out = tmp_path / "time"
    assert main(["train", "--preset", "cs180-time", "--out", str(out), "--quiet", "--no-pictures",
                 "--set", "steps=2", "--set", "batch_size=8", "--set", "model.D=8"]) == 0
    out = tmp_path / "denoiser"
    assert main(["train", "--preset", "cs180-denoiser", "--out", str(out), "--quiet",
                 "--set", "steps=2", "--set", "batch_size=8", "--set", "model.D=8"]) == 0
    mse = json.loads((out / "pictures.json").read_text())["denoiser_mse_by_sigma"]
    assert list(mse) == ["0", "0.2", "0.4", "0.5", "0.6", "0.8", "1"]
    assert (out / "denoiser_sigmas.png").stat().st_size > 0
    assert main(["sample", str(out), "--num", "2", "--out", str(tmp_path / "x.png")]) == 2  # clear error


def test_demo_mnist_part_quick(tmp_path):
    from denoiselab.cli.demo import demo_mnist

    lines = demo_mnist(tmp_path, quick=True)
    text = "\n".join(lines)
    assert "## MNIST" in text and "KS to N(0, 1)" in text and "corr(x_t, x_0)" in text
    for name in ("samples.png", "reverse.gif", "forward.gif", "histograms.png", "schedule_images.png"):
        assert (tmp_path / "mnist" / name).stat().st_size > 0, name
    assert list((tmp_path / "mnist" / "previews").glob("*.png"))
