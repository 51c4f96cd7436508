"""Text conditioning: the offline prompt encoder and its cache, captioned colour MNIST, the text
UNet, prompt dropout to the empty prompt, guided sampling with prompts, and the clear errors."""

import numpy as np
import pytest
import torch

from denoiselab import losses, runs
from denoiselab.cli import main
from denoiselab.data.captioned import (
    COLOURS,
    DIGIT_WORDS,
    PALETTE,
    build_captioned,
    colourise,
    grayscale,
    measure_colour,
)
from denoiselab.denoiser import Denoiser
from denoiselab.errors import DenoiselabError
from denoiselab.models import text_encoder
from denoiselab.models.unet import UNet
from denoiselab.schedules import make_schedule

TINY_UNET = ["--set", "model.ch=8", "--set", "model.attn_resolutions=[]", "--set", "model.mid_attn=false",
             "--set", "batch_size=8", "--set", "log_every=1", "--set", "preview_every=0"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh embedding cache for this module (the first encode runs the real encoder)."""
    return tmp_path_factory.mktemp("text-cache")


@pytest.fixture(scope="module")
def data(cache):
    return build_captioned({}, 0, 0, cache_dir=cache, encode=text_encoder.encode)


@pytest.fixture(scope="module")
def text_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("DENOISELAB_CACHE", str(cache))
    try:
        assert main(["train", "--preset", "mnist-text", "--out", str(out), "--quiet", "--no-pictures",
                     "--set", "steps=6", *TINY_UNET]) == 0
    finally:
        mp.undo()
    return out


def test_encoder_loads_offline_and_gives_unit_384d_embeddings(cache, monkeypatch):
    e = text_encoder.encode(["a red seven", "the digit 3 in green", ""], cache)
    assert e.shape == (3, 384) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (e[0] @ e[1]).item() < 0.99  # different prompts, different embeddings
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    # Cached: a second call never loads the encoder and returns the same numbers.
    monkeypatch.setattr(text_encoder, "load_encoder", lambda: (_ for _ in ()).throw(AssertionError("encoder loaded")))
    assert torch.equal(text_encoder.encode(["the digit 3 in green", "a red seven"], cache), e[[1, 0]])


def test_captions_match_digit_and_colour_of_their_images(data):
    ref_gray = (data.intensity * 2 - 1)
    for step in (0, 7, 123):
        d = data.draw(step, 64, seed=3)
        x, cond = data.batch(step, 64, seed=3)
        assert torch.equal(x, d["x"]) and x.shape == (64, 3, 28, 28)
        assert x.min() >= -1 and x.max() <= 1
        assert torch.equal(cond, data.embeddings[d["caption"]])
        # The image: the digit data.y[index] in the drawn colour, on a black background.
        assert torch.allclose(grayscale(x), ref_gray[d["index"]], atol=1e-6)
        assert torch.equal(measure_colour(x), d["colour"])
        for i in range(64):
            cap = data.captions[int(d["caption"][i])]
            dig, col = int(data.caption_digit[d["caption"][i]]), int(data.caption_colour[d["caption"][i]])
            assert dig in (-1, int(d["digit"][i])) and col in (-1, int(d["colour"][i])), cap
            assert dig >= 0 or col >= 0
            if dig >= 0:
                assert str(dig) in cap.split() or DIGIT_WORDS[dig] in cap.replace(",", "").split(), cap
            if col >= 0:
                assert COLOURS[col] in cap, cap
    # A pure function of (step, seed): replays exactly, and another seed draws differently.
    a, b = data.draw(5, 32, seed=1), data.draw(5, 32, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(data.draw(5, 32, seed=2)["caption"], a["caption"])
    # Most captions name both; some name only one, as the templates say.
    caps = torch.cat([data.draw(s, 64, 0)["caption"] for s in range(20)])
    partial = ((data.caption_digit[caps] < 0) | (data.caption_colour[caps] < 0)).double().mean()
    assert 0.04 < partial < 0.18


def test_measure_colour_reads_every_palette_colour_and_tolerates_noise():
    a = torch.zeros(len(PALETTE), 1, 28, 28)
    a[:, :, 8:20, 12:16] = 1.0
    k = torch.arange(len(PALETTE))
    x = colourise(a, k)
    assert torch.equal(measure_colour(x), k)
    noisy = (x + 0.15 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert torch.equal(measure_colour(noisy), k)
    assert measure_colour(-torch.ones(1, 3, 28, 28)).item() == -1  # nothing drawn


def _text_unet(**kw) -> UNet:
    torch.manual_seed(0)
    net = UNet(in_channels=3, image_size=28, patch=2, ch=8, ch_mult=(1, 2), num_res_blocks=1, groups=8,
               cond_dim=384, **kw)
    # Zero-initialised output convs make a fresh net ignore its input; randomise them to see the condition.
    for p in net.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def test_text_unet_forward_with_pooled_condition():
    net = _text_unet()
    net.null_cond.copy_(torch.nn.functional.normalize(torch.randn(384), dim=0))
    x, t = torch.randn(4, 3, 28, 28), torch.full((4,), 500.0)
    c = torch.nn.functional.normalize(torch.randn(4, 384), dim=1)
    with torch.no_grad():
        out = net(x, t, c)
        assert out.shape == x.shape
        # None is the null condition; each sample sees its own row.
        assert torch.allclose(net(x, t, None), net(x, t, net.null_cond.expand(4, -1)))
        assert not torch.allclose(out, net(x, t, None), atol=1e-4)
        assert torch.allclose(net(x[1:2], t[1:2], c[1:2]), out[1:2], atol=1e-5)
    assert "null_cond" in net.state_dict()  # saved with the weights: sampling needs no encoder for it
    with pytest.raises(DenoiselabError, match="pass a prompt"):
        net(x, t, torch.tensor([1, 2, 3, 4]))
    with pytest.raises(DenoiselabError, match="not both"):
        UNet(in_channels=3, image_size=28, num_classes=10, cond_dim=384)


def test_cond_norm_standardises_the_embedding_before_the_mlp():
    torch.manual_seed(0)
    plain, normed = _text_unet(), _text_unet(cond_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)  # same weights; stats still identity
    x, t = torch.randn(2, 3, 28, 28), torch.full((2,), 300.0)
    c = torch.nn.functional.normalize(torch.randn(2, 384), dim=1)
    with torch.no_grad():
        assert torch.allclose(plain(x, t, c), normed(x, t, c))
        train = torch.nn.functional.normalize(torch.randn(50, 384) + 3, dim=1)
        normed.set_cond_stats(train)
        mean = train.double().mean(0)
        scale = 1 / (train.double() - mean).pow(2).mean().sqrt()
        assert torch.allclose(normed(x, t, c), plain(x, t, ((c - mean) * scale).float()), atol=1e-5)


def test_value_channel_feeds_max_rgb_so_every_hue_of_a_stroke_looks_alike():
    """value_channel appends V = max(R, G, B) to the input (before the patch fold): the same stroke
    in any palette colour gives the first conv the same V plane, and the output keeps 3 channels."""
    torch.manual_seed(0)
    net = UNet(in_channels=3, ch=8, ch_mult=(1, 2), num_res_blocks=1, image_size=28, groups=4, patch=2,
               value_channel=True)
    assert net.conv_in.in_channels == 4 * 2 * 2
    seen = []
    net.conv_in.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    a = torch.rand(1, 1, 28, 28)
    x = torch.cat([colourise(a, torch.tensor([k])) for k in range(len(COLOURS))])
    with torch.no_grad():
        out = net(x, torch.full((len(COLOURS),), 10.0))
    assert out.shape == x.shape
    v = torch.nn.functional.pixel_shuffle(seen[0][:, 3 * 4:], 2)  # the folded V plane, unfolded
    assert torch.allclose(v, 2 * a.expand(len(COLOURS), -1, -1, -1) - 1, atol=1e-6)
    assert torch.allclose(seen[0][:, :3 * 4], torch.nn.functional.pixel_unshuffle(x, 2))


def test_prompt_dropout_to_the_empty_prompt_at_the_configured_rate():
    n, p = 40_000, 0.1
    cond = torch.nn.functional.normalize(torch.randn(n, 8), dim=1)
    null = torch.nn.functional.normalize(torch.randn(8), dim=0)
    out = losses.drop_labels(cond, p, torch.Generator().manual_seed(0), null)
    dropped = (out == null).all(1)
    assert torch.equal(out[~dropped], cond[~dropped])
    # Binomial(n, p): sd = sqrt(p (1 - p) / n) = 0.0015; 4 sd.
    assert abs(dropped.double().mean().item() - p) < 0.006
    # Class labels: the same draws drop the same rows to -1.
    labels = torch.arange(n) % 10
    out_l = losses.drop_labels(labels, p, torch.Generator().manual_seed(0))
    assert torch.equal(out_l == -1, dropped)
    with pytest.raises(DenoiselabError):
        losses.drop_labels(cond, p, torch.Generator().manual_seed(0))  # embeddings need a null to drop to


def test_text_run_trains_with_the_empty_prompt_as_null(text_run, cache):
    run = runs.load_run(text_run)
    assert run.info["condition"] == "text" and run.sample_shape == (3, 28, 28)
    assert torch.allclose(run.net.null_cond, text_encoder.encode([""], cache)[0])
    # The preset standardises embeddings by the training captions' statistics, saved with the weights.
    emb = build_captioned({}, 0, 0, cache_dir=cache, encode=text_encoder.encode).embeddings.double()
    assert run.net.cond_norm and "cond_mean" in run.net.state_dict()
    z = (emb - run.net.cond_mean.double()) * run.net.cond_scale.double()
    assert z.mean(0).abs().max() < 1e-5 and abs(z.pow(2).mean().item() - 1) < 1e-4


def test_guidance_with_a_negative_prompt_contrasts_against_it(cache):
    """scale 0 is the negative prompt's conditional model, scale 1 the prompt's (Ho & Salimans 2022, eq. 6)."""
    from denoiselab.guidance import guided

    net = _text_unet()
    den = Denoiser(net, make_schedule("linear", 1000), "eps")
    cond, uncond = text_encoder.prompt_condition(net.null_cond, ["a red seven"], 3, "a blue seven", cache)
    x, t = torch.randn(3, 3, 28, 28), torch.full((3,), 400.0)
    with torch.no_grad():
        e_c = den(x, t, cond)[1]
        e_n = den(x, t, uncond.expand(3, -1))[1]
        assert torch.allclose(guided(den, scale=0.0, uncond=uncond)(x, t, cond)[1], e_n, atol=1e-5)
        assert torch.allclose(guided(den, scale=1.0, uncond=uncond)(x, t, cond)[1], e_c, atol=1e-5)
        assert torch.allclose(guided(den, scale=3.0, uncond=uncond)(x, t, cond)[1], e_n + 3 * (e_c - e_n), atol=1e-4)
    # No negative prompt: the model's own null (the empty prompt's embedding).
    assert torch.equal(text_encoder.prompt_condition(net.null_cond, ["a red seven"], 2, None, cache)[1], net.null_cond[None])


def test_sample_with_prompt_and_negative_prompt(text_run, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENOISELAB_CACHE", str(cache))
    base = ["sample", str(text_run), "--num", "4", "--sampler", "ddim", "--steps", "3", "--guidance", "3"]
    assert main([*base, "--prompt", "a red seven", "--prompt", "a blue 3", "--out", str(tmp_path / "a.npy")]) == 0
    assert main([*base, "--prompt", "a red seven", "--prompt", "a blue 3", "--negative-prompt", "a green seven",
                 "--out", str(tmp_path / "b.npy")]) == 0
    assert main([*base, "--prompt", "a red seven", "--prompt", "a blue 3", "--sampler", "euler",
                 "--out", str(tmp_path / "c.png")]) == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (4, 3, 28, 28) and np.isfinite(a).all() and np.isfinite(b).all()
    assert not np.allclose(a, b)  # the negative prompt reaches the model


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "run"
    assert main(["train", "--preset", "mnist-class", "--out", str(out), "--quiet", "--no-pictures",
                 "--set", "steps=1", *TINY_UNET]) == 0
    return out


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pts") / "run"
    assert main(["train", "--preset", "swiss-roll", "--out", str(out), "--quiet", "--no-pictures", "--set", "steps=1",
                 "--set", "data.num=256", "--set", "model.width=16"]) == 0
    return out


@pytest.mark.parametrize("which,args,needle", [
    ("points", ["--prompt", "a red seven"], "unconditional"),
    ("class", ["--prompt", "a red seven"], "class-conditional"),
    ("text", ["--prompt", ""], "empty"),
    ("text", ["--prompt", "a red seven", "--prompt", "  "], "prompt 2 is empty"),
    ("text", ["--prompt", "a red seven", "missing-extra"], "text extra"),
])
def test_bad_prompt_input_gives_one_line_and_exit_2(which, args, needle, text_run, class_run, points_run, cache,
                                                    tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENOISELAB_CACHE", str(cache))
    if "missing-extra" in args:
        args = [a for a in args if a != "missing-extra"]
        monkeypatch.setattr(text_encoder, "encoder_available", lambda: False)
    run = {"points": points_run, "class": class_run, "text": text_run}[which]
    capsys.readouterr()
    rc = main(["sample", str(run), "--num", "2", "--steps", "2", "--sampler", "ddim", *args,
               "--out", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x.npy").exists()


def test_empty_prompt_list_is_refused():
    with pytest.raises(DenoiselabError, match="prompt list is empty"):
        text_encoder.prompt_condition(torch.zeros(384), [], 4)


def test_plot_guidance_takes_prompts(text_run, class_run, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENOISELAB_CACHE", str(cache))
    out = tmp_path / "g.png"
    assert main(["plot", "guidance", str(text_run), "--prompts", "a red seven", "a blue 3", "--scales", "1", "3",
                 "--negative-prompt", "a green seven", "--batch-size", "1", "--steps", "2", "--out", str(out)]) == 0
    from PIL import Image

    w, h = Image.open(out).size
    assert out.stat().st_size > 500 and h > w / 2  # two rows of scales, two prompt columns
    capsys.readouterr()
    assert main(["plot", "guidance", str(class_run), "--prompts", "a red seven", "--steps", "2",
                 "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a text-conditional model" in err and len(err.splitlines()) == 1
