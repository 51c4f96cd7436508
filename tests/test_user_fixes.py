"""What a new user met: one .npy reader with one message, readable titles, early and clear errors
for negative guidance and a reference of the wrong kind, and help texts that say what each flag is."""

import re

import numpy as np
import pytest

from conftest import train_tiny
from denoiselab.cli import main
from denoiselab.errors import DenoiselabError

POINTS_TINY = ["--set", "data.num=4096", "--set", "model.width=32", "--set", "model.depth=2", "--set", "steps=20",
               "--set", "batch_size=64", "--set", "log_every=10"]
IMAGE_TINY = ["--set", "data.name=digits", "--set", "model.image_size=8", "--set", "model.patch=1",
              "--set", "model.ch=8", "--set", "model.ch_mult=[1]", "--set", "model.attn_resolutions=[]",
              "--set", "model.groups=4", "--set", "steps=2", "--set", "batch_size=8", "--set", "log_every=1",
              "--set", "preview_every=0", "--no-pictures"]
NOT_NPY = "is not a .npy file (no NUMPY header): save the array with np.save"


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """A tiny 2D run with its pictures (reverse.gif) and its page."""
    return train_tiny(tmp_path_factory, "fixes", "swiss", "swiss-roll", *POINTS_TINY)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny class-conditional 8x8 digits run (no pictures)."""
    return train_tiny(tmp_path_factory, "fixes", "digits", "mnist-class", *IMAGE_TINY)


def one_error_line(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("denoiselab: error:"), err
    return err[0]


def no_work(monkeypatch):
    """Make loading a run fail loudly: an error raised before it was raised before any work."""
    import denoiselab.runs

    def refuse(*a, **k):
        raise AssertionError("the run was loaded: the check came after the work")

    monkeypatch.setattr(denoiselab.runs, "load_run", refuse)


# -- 1. one .npy reader, one message ----------------------------------------------------------

def test_a_text_file_named_npy_gets_the_same_line_everywhere(image_run, points_run, tmp_path, capsys):
    fake = tmp_path / "x.npy"
    fake.write_text("1 2 3\n4 5 6\n")
    out = ["--out", tmp_path / "o.npy", "--steps", "2"]
    r = image_run
    for argv in (["edit", "sdedit", r, "--input", fake, *out],
                 ["edit", "inpaint", r, "--input", fake, "--mask-box", "0,0,4,4", *out],
                 ["edit", "reconstruct", r, "--noise", fake, *out],
                 ["evaluate", fake, "--ref", "swiss-roll"],
                 ["evaluate", points_run, "--ref", fake, "--num", "16", "--steps", "2"]):
        line = one_error_line(capsys, argv)
        assert NOT_NPY in line and "pickle" not in line, (argv, line)
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((1, 1, 8, 8), np.float32))
    line = one_error_line(capsys, ["edit", "inpaint", r, "--input", good, "--mask", fake, *out])
    assert NOT_NPY in line and "pickle" not in line, line


def test_image_io_reads_arrays_through_io_load_npy(tmp_path):
    from denoiselab.image_io import as_nchw, read_images, read_mask

    fake = tmp_path / "x.npy"
    fake.write_text("not an array")
    for read in (lambda: read_images(fake, (1, 8, 8)), lambda: read_mask(fake, (1, 8, 8), 1)):
        with pytest.raises(DenoiselabError, match=re.escape(NOT_NPY)):
            read()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DenoiselabError, match="Python objects") as e:
        read_images(tmp_path / "obj.npy", (1, 8, 8))
    assert "allow_pickle" not in str(e.value)
    np.save(tmp_path / "m.npy", np.ones((8, 8), bool))  # boolean masks stay welcome
    assert read_mask(tmp_path / "m.npy", (1, 8, 8), 1).shape == (1, 1, 8, 8)
    assert as_nchw(np.zeros((8, 8)), (1, 8, 8), tmp_path / "z.npy", "noise").shape == (1, 1, 8, 8)


def test_np_load_reads_no_user_file_outside_io():
    """io.load_npy is the one reader of a user's .npy; the other np.load calls read caches."""
    from pathlib import Path

    import denoiselab

    src = Path(denoiselab.__file__).parent
    readers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if "np.load(" in p.read_text())
    assert readers == ["io.py"], readers  # io.load_npy (users' files) and io.read_cache (the project's caches)


# -- 2. readable titles, captions that describe the picture -------------------------------------

def test_gif_titles_round_times(monkeypatch, tmp_path):
    import torch
    from matplotlib.axes import Axes
    from PIL import ImageDraw

    from denoiselab.viz.images import gif_reverse_images
    from denoiselab.viz.plots import gif_reverse_points

    drawn = []
    title = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, text, *a, **k: drawn.append(text) or title(self, text, *a, **k))
    text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, t, *a, **k: drawn.append(t) or text(self, xy, t, *a, **k))
    x = torch.zeros(4, 2)
    gif_reverse_points([x, x], [629.4668257323739, 0], tmp_path / "p.gif")
    img = torch.zeros(4, 1, 8, 8)
    gif_reverse_images([(629.4668257323739, img, img), (-1, img, img)], tmp_path / "i.gif")
    assert "reverse process, t = 629.5" in drawn and "x_t, t = 629.5" in drawn, drawn
    assert not any("629.46" in t for t in drawn), drawn


def test_the_2d_reverse_gif_caption_describes_the_gif(points_run, capsys):
    assert (points_run / "reverse.gif").is_file()
    assert main(["report", str(points_run)]) == 0
    page = (points_run / "report.html").read_text()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    reverse = [c for c in captions if "reverse process" in c.lower()]
    assert reverse and all("x0_hat" not in c and "prediction" not in c for c in reverse), captions
    assert any("2D" in c for c in reverse), reverse


# -- 3. errors before any work ------------------------------------------------------------------

def test_negative_guidance_is_refused_before_any_work(points_run, image_run, tmp_path, capsys, monkeypatch):
    no_work(monkeypatch)
    for argv in (["sample", image_run, "--guidance", "-2", "--out", tmp_path / "a.npy"],
                 ["evaluate", image_run, "--ref", "digits", "--guidance", "-0.5"],
                 ["animate", image_run, "--guidance", "-1", "--out", tmp_path / "a.gif"],
                 ["edit", "sdedit", image_run, "--input", tmp_path / "x.npy", "--guidance", "-3",
                  "--out", tmp_path / "b.npy"],
                 ["plot", "guidance", image_run, "--scales", "0", "-1"]):
        line = one_error_line(capsys, argv)
        assert "is negative" in line and ">= 0" in line, (argv, line)
    assert not (tmp_path / "a.npy").exists()


def test_a_reference_of_the_wrong_kind_fails_before_sampling(points_run, image_run, tmp_path, capsys, monkeypatch):
    no_work(monkeypatch)
    line = one_error_line(capsys, ["evaluate", points_run, "--ref", "mnist"])
    assert ("the samples are 2D points but --ref mnist is an image data set: compare with a 2D data set "
            "(swiss-roll, moons") in line and "or a .npy of points" in line, line
    line = one_error_line(capsys, ["evaluate", image_run, "--ref", "swiss-roll"])
    assert "the samples are images but --ref swiss-roll is a 2D data set" in line, line
    np.save(tmp_path / "pts.npy", np.zeros((64, 2), np.float32))
    line = one_error_line(capsys, ["evaluate", tmp_path / "pts.npy", "--ref", "digits"])
    assert "the samples are 2D points but --ref digits is an image data set" in line, line
    (tmp_path / "folder").mkdir()
    line = one_error_line(capsys, ["evaluate", tmp_path / "pts.npy", "--ref", tmp_path / "folder"])
    assert "is an image folder" in line, line


# -- 4. help texts and wording --------------------------------------------------------------------

def help_of(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_says_what_every_flag_is(capsys):
    from denoiselab.samplers import SAMPLERS

    sample = help_of(capsys, "sample")
    assert "--num NUM number of samples" in sample, sample
    assert "see `denoiselab sample --help`" not in sample
    assert "sampler: " + ", ".join(SAMPLERS) in sample
    demo = help_of(capsys, "demo")
    assert re.search(r"--out OUT folder for", demo), demo


def test_every_option_of_sample_evaluate_and_demo_has_a_help_text():
    from denoiselab.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in ("sample", "evaluate", "animate", "benchmark-samplers", "demo"):
        missing = [a.option_strings or a.dest for a in sub.choices[cmd]._actions if not a.help]
        assert not missing, (cmd, missing)


def test_counts_are_pluralised(image_run, tmp_path, capsys):
    np.save(tmp_path / "one.npy", np.zeros((1, 1, 8, 8), np.float32))
    assert main(["edit", "sdedit", str(image_run), "--input", str(tmp_path / "one.npy"), "--strength", "0.5",
                 "--steps", "2", "--out", str(tmp_path / "o.npy")]) == 0
    err = capsys.readouterr().err
    assert "1 image each" in err and "1 images" not in err, err
    assert main(["sample", str(image_run), "--num", "1", "--steps", "2", "--out", str(tmp_path / "s.npy")]) == 0
    err = capsys.readouterr().err
    assert "wrote 1 sample to" in err, err


def test_negative_estimates_are_explained():
    from denoiselab.evaluation.report import NEGATIVE_NOTE, format_results

    assert NEGATIVE_NOTE == "(MMD and KID are unbiased estimates: values near 0 may be negative)"
    res = {"metrics": {"chamfer": {"value": 0.5, "floor": 0.4}, "MMD": {"value": 1e-3, "floor": -2e-4}}}
    assert format_results(res).splitlines()[-1] == NEGATIVE_NOTE
    res["metrics"]["MMD"]["floor"] = 2e-4
    assert NEGATIVE_NOTE not in format_results(res)
