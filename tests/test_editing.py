"""Editing: views, filters, noise levels, SDEdit, RePaint, anagrams, hybrids, inversion, the CLI."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from denoiselab import editing as E
from denoiselab.cli import main
from denoiselab.denoiser import AnalyticGaussianDenoiser, ConditionalMixtureDenoiser, Denoiser, FlowDenoiser
from denoiselab.editing.core import reference_sigma, sampler_step, time_at_level
from denoiselab.guidance import guided
from denoiselab.image_io import mask_box, read_images, read_mask
from denoiselab.models import build_model
from denoiselab.samplers import SAMPLERS
from denoiselab.schedules import make_schedule

SHAPE = (1, 28, 28)


# -- views and filters ------------------------------------------------------------------------

@pytest.mark.parametrize("name", E.USER_VIEWS)
def test_views_are_invertible_permutations_or_involutions(name):
    v = E.get_view(name)
    x = torch.randn(3, 2, 28, 28, dtype=torch.float64)
    assert torch.equal(v.inverse(v.apply(x)), x) and torch.equal(v.apply(v.inverse(x)), x)
    ramp = torch.arange(28 * 28, dtype=torch.float64).reshape(1, 1, 28, 28)
    if v.permutation:
        # Every pixel lands somewhere and nothing is duplicated; and the view does move pixels.
        assert torch.equal(v.apply(ramp).flatten().sort().values, ramp.flatten())
        assert not torch.equal(v.apply(ramp), ramp)
    if name in ("flip", "rot180", "negate"):
        assert torch.equal(v.apply(v.apply(x)), x)
    if name == "rot90":
        y = x
        for _ in range(4):
            y = v.apply(y)
        assert torch.equal(y, x) and not torch.equal(v.apply(v.apply(x)), x)
    # Orthogonal: N(0, I) noise stays N(0, I) (Geng et al. 2024, sec. 3.2); norms are kept.
    assert torch.allclose(v.apply(x).norm(), x.norm())


def test_jigsaw_moves_every_tile_and_flip_is_upside_down():
    _, perm = E.views.jigsaw_permutation(28, 28)
    assert sorted(perm.tolist()) == list(range(16)) and all(p != k for k, p in enumerate(perm.tolist()))
    x = torch.zeros(1, 1, 4, 4)
    x[..., 0, :] = 1
    assert torch.equal(E.get_view("flip").apply(x)[..., 3, :], torch.ones(1, 1, 4))


def test_unknown_view_names_the_choices():
    with pytest.raises(Exception, match="unknown view 'mirror'.*rot180"):
        E.get_view("mirror")


def test_hybrid_filters_sum_to_identity_and_scale_with_size():
    assert E.hybrid_filter(64) == (33, 2.0)
    assert E.hybrid_filter(28) == (15, 0.875) and E.hybrid_filter(128) == (67, 4.0)
    for side in (8, 28, 64):
        x = torch.randn(2, 3, side, side, dtype=torch.float64)
        assert torch.allclose(E.lowpass(x) + E.highpass(x), x, atol=1e-12)
        const = torch.full((1, 1, side, side), 0.3, dtype=torch.float64)
        assert torch.allclose(E.lowpass(const), const)  # the kernel sums to 1
        assert torch.allclose(E.highpass(const), torch.zeros_like(const), atol=1e-12)
    # The low-pass does low-pass: a checkerboard (highest frequency) nearly vanishes.
    board = (torch.arange(28)[:, None] + torch.arange(28)[None]) % 2 * 2.0 - 1
    assert E.lowpass(board[None, None]).abs().max() < 0.05


# -- noise levels ------------------------------------------------------------------------------

def _vp(schedule="linear", T=1000):
    return Denoiser(lambda x, t, c: torch.zeros_like(x), make_schedule(schedule, T), "eps")


def test_levels_match_the_reference_noise_on_every_process():
    vp = _vp()
    for level in (0.25, 0.5, 0.75):
        assert time_at_level(vp, level) == pytest.approx(level * 1000, abs=1e-6)
    assert time_at_level(vp, 0.0) is None and time_at_level(vp, 1.0) == 999
    flow = FlowDenoiser(lambda x, t, c: torch.zeros_like(x))
    cos = _vp("cosine", 500)
    for level in (0.1, 0.5, 0.9):
        sig = reference_sigma(level)
        tau = time_at_level(flow, level)
        assert (1 - tau) / tau == pytest.approx(sig, rel=1e-9)
        ab = float(cos.schedule.alpha_bar_at(torch.tensor(time_at_level(cos, level), dtype=torch.float64)))
        assert math.sqrt((1 - ab) / ab) == pytest.approx(sig, rel=1e-6)
    assert time_at_level(flow, 1.0) == 0.0  # a flow starts from pure noise
    with pytest.raises(Exception, match="outside \\[0, 1\\]"):
        time_at_level(vp, 1.5)


# -- analytic denoisers --------------------------------------------------------------------------

def _gauss(dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    mu = (torch.rand(1, 4, 4, generator=g, dtype=dtype) - 0.5)
    var = 0.05 + 0.2 * torch.rand(1, 4, 4, generator=g, dtype=dtype)
    return AnalyticGaussianDenoiser(make_schedule("linear", 1000), mu, var), mu, var


def test_sdedit_at_strength_zero_returns_the_input_and_strength_one_forgets_it():
    den, mu, var = _gauss()
    x0 = torch.randn(4, 1, 4, 4, dtype=torch.float64) * 3
    res = E.sdedit(den, x0, [0.0, 1.0], sampler="ddpm", steps=50, seed=3)
    assert torch.equal(res.x[:4], x0)
    # From pure noise the analytic denoiser lands on its own data, far from the outlying input.
    assert (res.x[4:] - mu).abs().mean() < (x0 - mu).abs().mean() / 3


def test_sdedit_distance_grows_with_strength_and_images_are_batch_independent():
    den, mu, var = _gauss()
    x0 = mu + 2.0  # off the data: SDEdit pulls it towards the data, more with more strength
    x0 = x0.expand(6, 1, 4, 4).clone()
    res = E.sdedit(den, x0, [0.2, 0.5, 0.9], sampler="ddpm", steps=50, seed=0)
    d = [(res.x[i * 6:(i + 1) * 6] - x0).abs().mean().item() for i in range(3)]
    assert d[0] < d[1] < d[2]
    part = E.sdedit(den, x0[:2], [0.5], sampler="ddpm", steps=50, seed=0)
    assert torch.allclose(part.x, res.x[6:8], atol=1e-6)


def test_inversion_round_trips_on_an_analytic_denoiser():
    den, mu, var = _gauss()
    x0 = mu + var.sqrt() * torch.randn(8, 1, 4, 4, dtype=torch.float64)
    err = {}
    for iters in (0, 3):
        z = E.invert(den, x0, steps=50, fixed_point_iters=iters).x
        err[iters] = (E.reconstruct(den, z, steps=50).x - x0).abs().max().item()
    # The plain inversion takes eps_hat at the wrong end of each step; the fixed point fixes that.
    assert err[3] < 1e-3 and err[3] < err[0] / 10
    # The encoding is noise-like: its per-pixel spread is about 1, not the data's.
    assert 0.5 < z.std().item() < 1.5


def test_slerp_keeps_ends_and_norms():
    a, b = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    assert torch.allclose(E.slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(E.slerp(a, b, 1.0), b, atol=1e-6)
    mid = E.slerp(a, b, 0.5)
    assert abs(mid.flatten(1).norm(dim=1) / ((a.flatten(1).norm(dim=1) + b.flatten(1).norm(dim=1)) / 2) - 1).max() < 0.1


def test_repaint_schedule():
    assert E.repaint_schedule(5, 2, 1) == [4, 3, 2, 1, 0, -1]
    path = E.repaint_schedule(20, 5, 3)
    assert path[0] == 19 and path[-1] == -1 and max(path) == 19
    downs = sum(1 for u, v in zip(path, path[1:]) if v == u - 1)
    ups = [(u, v) for u, v in zip(path, path[1:]) if v > u]
    assert all(v - u == 5 for u, v in ups) and len(ups) == 3 * 2  # jumps at u = 0, 5, 10, twice each
    assert downs == 20 + len(ups) * 5


def test_anagram_denoiser_averages_the_views_estimates():
    means = torch.tensor([[1.0] * 8 + [-1.0] * 8, [-1.0] * 8 + [1.0] * 8], dtype=torch.float64)
    den = ConditionalMixtureDenoiser(make_schedule("linear", 1000), means, torch.tensor([0.1, 0.1]),
                                     torch.tensor([0.5, 0.5]))
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    t = torch.full((3,), 400.0, dtype=torch.float64)
    flip = E.get_view("flip")
    c0, c1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    wrapped = E.AnagramDenoiser(den, [E.VIEWS["identity"], flip], [c0, c1])
    x0, eps = wrapped(x, t)
    e_a = den(x, t, c0)[1]
    e_b = flip.inverse(den(flip.apply(x), t, c1)[1])
    assert torch.allclose(eps, (e_a + e_b) / 2, atol=1e-12)
    a, s = den.scales(t, x)
    assert torch.allclose(a * x0 + s * eps, x, atol=1e-12)  # consistent pair
    # Class 0 (top half bright) upside down is class 1: both readings agree, the anagram is class 0.
    res = E.anagram(den, 4, (1, 4, 4), 0, 1, "flip", sampler="ddim", steps=30, seed=0)
    assert (res.x - means[0].reshape(1, 4, 4)).abs().mean() < 0.5


def test_hybrid_denoiser_is_lowpass_of_one_plus_highpass_of_other():
    means = torch.randn(2, 16 * 16, dtype=torch.float64)
    den = ConditionalMixtureDenoiser(make_schedule("linear", 1000), means, torch.tensor([0.1, 0.1]),
                                     torch.tensor([0.5, 0.5]))
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    t = torch.full((2,), 300.0, dtype=torch.float64)
    c0, c1 = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    x0, eps = E.HybridDenoiser(den, c0, c1)(x, t)
    assert torch.allclose(eps, E.lowpass(den(x, t, c0)[1]) + E.highpass(den(x, t, c1)[1]), atol=1e-12)
    same = E.HybridDenoiser(den, c0, c0)(x, t)
    assert torch.allclose(same[1], den(x, t, c0)[1], atol=1e-12)  # the filters sum to the identity


# -- inpainting ---------------------------------------------------------------------------------

def test_inpainting_leaves_known_pixels_untouched_with_every_sampler():
    den, mu, var = _gauss(torch.float32)
    x0 = torch.randn(3, 1, 4, 4)
    m = torch.ones(1, 1, 4, 4)
    m[..., 1:3, 2:] = 0
    for sampler in SAMPLERS:
        res = E.inpaint(den, x0, m, sampler=sampler, steps=8, jump_length=2, jump_count=2, seed=1)
        keep = m.expand_as(x0) > 0
        assert torch.equal(res.x[keep], x0[keep]), sampler
        assert torch.isfinite(res.x).all() and not torch.equal(res.x[~keep], x0[~keep])


def test_inpainting_fills_from_the_data_conditioned_on_the_known_part():
    # A mixture of two well-separated modes: the known left half says which one; the filled
    # right half must follow it (RePaint's harmonisation, sec. 4.2).
    left = torch.zeros(1, 4, 4, dtype=torch.float64)
    left[..., :2] = 1
    means = torch.stack([left.flatten() * 2 - 1, -(left.flatten() * 2 - 1)])
    den = ConditionalMixtureDenoiser(make_schedule("linear", 1000), means, torch.tensor([0.01, 0.01]),
                                     torch.tensor([0.5, 0.5]))
    x0 = torch.stack([means[0], means[1], means[0]]).reshape(3, 1, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2] = 1
    res = E.inpaint(den, x0, m, sampler="ddpm", steps=50, jump_length=5, jump_count=3, seed=0)
    assert (res.x - x0).abs().max() < 0.5


# -- every edit with a guided denoiser and with a flow model -------------------------------------

def _tiny_unet(num_classes=10):
    torch.manual_seed(0)
    return build_model("unet", in_channels=1, image_size=8, patch=2, ch=8, ch_mult=[1], num_res_blocks=1,
                       attn_resolutions=[], groups=4, num_classes=num_classes).eval()


@pytest.mark.parametrize("kind", ["eps-guided", "v", "flow-guided"])
def test_every_edit_runs(kind):
    net = _tiny_unet()
    if kind.startswith("flow"):
        den = FlowDenoiser(net, clip_x0=1.0)
    else:
        den = Denoiser(net, make_schedule("linear", 1000), kind.split("-")[0], clip_x0=1.0)
    if kind.endswith("guided"):
        den = guided(den, scale=3.0)
    shape = (1, 8, 8)
    x0 = torch.rand(2, *shape) * 2 - 1
    m = mask_box("0,0,4,8", shape)
    kw = {"steps": 4}
    results = {
        "denoise": E.denoise(den, x0, cond=3, **kw),
        "sdedit": E.sdedit(den, x0, [0.0, 0.5], cond=3, **kw),
        "inpaint": E.inpaint(den, x0, m, cond=3, jump_length=2, jump_count=2, **kw),
        "anagram": E.anagram(den, 2, shape, 6, 9, "rot90", sampler="heun", **kw),
        "hybrid": E.hybrid(den, 2, shape, 1, 7, sampler="dpmpp-2m", **kw),
        "invert": E.invert(den, x0, cond=3, **kw),
        "interpolate": E.interpolate(den, x0[:1], x0[1:], frames=3, cond=3, **kw),
    }
    results["reconstruct"] = E.reconstruct(den, results["invert"].x, cond=3, **kw)
    assert set(results) == set(E.EDITS)
    for name, r in results.items():
        assert torch.isfinite(r.x).all() and r.x.shape[1:] == shape, name
        assert r.shots and r.rows, name


def test_sampler_step_is_the_samplers_first_step():
    den, mu, var = _gauss()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    for name in ("ddim", "heun", "dpmpp-2m"):
        seen = []
        SAMPLERS[name](den, x, torch.tensor([600.0, 300.0], dtype=torch.float64),
                       callback=lambda d: seen.append(d["x_next"]))
        step = sampler_step(SAMPLERS[name], den, x, 600.0, 300.0)
        assert torch.equal(step, seen[0]), name


# -- image input --------------------------------------------------------------------------------

def test_pictures_of_any_size_and_mode_are_read_into_the_models_frame(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).convert("P").save(tmp_path / "c.png")
    x = read_images([tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"], SHAPE)
    assert x.shape == (3, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    rgb = read_images(tmp_path / "b.jpg", (3, 16, 16), value_range=(0.0, 1.0))
    assert rgb.shape == (1, 3, 16, 16) and rgb.min() >= 0 and rgb.max() <= 1
    white = tmp_path / "w.png"
    Image.new("L", (40, 40), 255).save(white)
    assert torch.equal(read_images(white, SHAPE), torch.ones(1, *SHAPE))
    assert torch.equal(read_images(white, SHAPE, negate=True), -torch.ones(1, *SHAPE))
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.float32))
    assert read_images(tmp_path / "x.npy", SHAPE).shape == (1, 1, 28, 28)


def test_masks(tmp_path):
    m = np.full((56, 84), 255, np.uint8)
    m[:, 42:] = 0
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png", SHAPE, 1, source_size=(84, 56))
    assert mask.shape == (1, 1, 28, 28) and set(mask.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(Exception, match="must be 28x28"):
        read_mask(tmp_path / "m.png", SHAPE, 1)
    np.save(tmp_path / "soft.npy", np.full((28, 28), 0.5, np.float32))
    with pytest.raises(Exception, match="not binary"):
        read_mask(tmp_path / "soft.npy", SHAPE, 1)
    box = mask_box("2,3,10,12", SHAPE)
    assert box[0, 0, 3:12, 2:10].sum() == 0 and box.sum() == 28 * 28 - 9 * 8
    with pytest.raises(Exception, match="leaves the 28x28 image"):
        mask_box("0,0,29,5", SHAPE)


# -- command line ---------------------------------------------------------------------------------

TINY = ["--set", "steps=2", "--set", "model.ch=8", "--set", "batch_size=8", "--set", "train.preview_every=0",
        "--no-pictures", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    assert main(["train", "--preset", "mnist-class", "--out", str(root / "class"), *TINY]) == 0
    assert main(["train", "--preset", "mnist", "--out", str(root / "uncond"), "--set", "diffusion.kind=flow",
                 *TINY]) == 0
    from denoiselab.data.images import load_mnist5k

    imgs = load_mnist5k()[0][:2].numpy()
    np.save(root / "d.npy", imgs)
    Image.fromarray(((imgs[0, 0] + 1) * 127.5).astype(np.uint8)).resize((60, 45)).save(root / "d.png")
    return root


def test_cli_every_edit_writes_result_grid_and_gif(runs, tmp_path):
    d, r = str(runs / "d.npy"), str(runs / "class")
    cmds = {
        "den.png": ["denoise", r, "--input", str(runs / "d.png")],
        "sd.npy": ["sdedit", r, "--input", d, "--strength", "0.2", "0.6", "--class", "3", "--guidance", "2"],
        "in.npy": ["inpaint", r, "--input", d, "--mask-box", "14,0,28,28", "--sampler", "euler-ancestral"],
        "an.npy": ["anagram", r, "--class", "6", "--view-class", "9", "--view", "rot180", "--num", "2"],
        "hy.png": ["hybrid", r, "--low-class", "1", "--high-class", "7", "--num", "2"],
        "z.npy": ["invert", r, "--input", d],
        "int.png": ["interpolate", r, "--input", d, "--input", d, "--frames", "3"],
    }
    for out, args in cmds.items():
        assert main(["edit", *args, "--steps", "4", "--out", str(tmp_path / out)]) == 0, out
        stem = out.split(".")[0]
        for f in (out, f"{stem}_grid.png", f"{stem}.gif"):
            assert (tmp_path / f).stat().st_size > 0, f
    assert main(["edit", "reconstruct", r, "--noise", str(tmp_path / "z.npy"), "--steps", "4",
                 "--out", str(tmp_path / "rec.npy")]) == 0
    x = np.load(d)
    inp = np.load(tmp_path / "in.npy")
    assert np.abs(inp[..., :14] - x[..., :14]).max() == 0  # known pixels exactly, through .npy
    assert np.load(tmp_path / "sd.npy").shape == (4, 1, 28, 28)
    assert np.load(tmp_path / "an.npy").shape == (2, 1, 28, 28)
    assert np.load(tmp_path / "rec.npy").shape == (2, 1, 28, 28)
    # The unconditional flow run edits too.
    assert main(["edit", "sdedit", str(runs / "uncond"), "--input", d, "--strength", "0.5", "--steps", "4",
                 "--sampler", "dpmpp-2m", "--out", str(tmp_path / "f.npy")]) == 0


def _one_error_line(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("denoiselab: error:") and match in err, err


def test_cli_bad_input_gives_one_line_and_exit_2(runs, tmp_path, capsys):
    r, u, d = str(runs / "class"), str(runs / "uncond"), str(runs / "d.npy")
    out = ["--out", str(tmp_path / "o.npy"), "--steps", "2"]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    Image.new("L", (10, 10), 255).save(tmp_path / "small.png")
    np.save(tmp_path / "soft.npy", np.full((28, 28), 0.5, np.float32))
    _one_error_line(capsys, ["edit", "sdedit", r, "--input", str(tmp_path / "bad.png"), *out], "cannot read")
    _one_error_line(capsys, ["edit", "sdedit", r, "--input", str(tmp_path / "nope.png"), *out], "not found")
    _one_error_line(capsys, ["edit", "sdedit", r, "--input", d, "--strength", "1.5", *out], "outside [0, 1]")
    _one_error_line(capsys, ["edit", "inpaint", r, "--input", d, "--mask", str(tmp_path / "small.png"), *out],
                    "must be 28x28")
    _one_error_line(capsys, ["edit", "inpaint", r, "--input", d, "--mask", str(tmp_path / "soft.npy"), *out],
                    "not binary")
    _one_error_line(capsys, ["edit", "inpaint", r, "--input", d, *out], "needs a mask")
    _one_error_line(capsys, ["edit", "anagram", r, "--class", "6", "--view-class", "9", "--view", "mirror", *out],
                    "unknown view")
    _one_error_line(capsys, ["edit", "anagram", r, "--class", "6", "--view-class", "12", *out], "out of range")
    _one_error_line(capsys, ["edit", "sdedit", u, "--input", d, "--class", "3", *out], "unconditional")
    _one_error_line(capsys, ["edit", "hybrid", u, "--low-class", "1", "--high-class", "7", *out], "unconditional")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 1, 32, 32), np.float32))
    _one_error_line(capsys, ["edit", "invert", r, "--input", str(tmp_path / "wrong.npy"), *out], "has shape")


@pytest.mark.parametrize("flags, scale", [([], 5.0), (["--guidance", "2"], 2.0)])
def test_anagram_guides_each_view_at_five_unless_told(flags, scale, runs, tmp_path, monkeypatch):
    seen = {}

    def fake(den, num, shape, *a, **kw):
        seen["scale"] = den.scale
        return E.EditResult(torch.zeros(num, *shape), [], {"upright": torch.zeros(num, *shape)}, {})

    monkeypatch.setattr(E, "anagram", fake)
    assert main(["edit", "anagram", str(runs / "class"), "--class", "6", "--view-class", "9", "--num", "1",
                 "--out", str(tmp_path / "a.npy"), *flags]) == 0
    assert seen["scale"] == scale
