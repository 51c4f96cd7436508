"""Classifier-free guidance and classifier guidance as denoiser wrappers.

The closed-form optimal denoiser of a Gaussian mixture whose components are the classes
(``ConditionalMixtureDenoiser``) gives exact answers: guided sampling at scale 1 must recover
the asked component, and classifier guidance with the mixture's exact p(k | x_t) at scale 1
must equal the conditional denoiser (Bayes: grad log p(x_t | k) = grad log p(x_t) + grad log p(k | x_t)).
"""

import json
import math

import numpy as np
import pytest
import torch

from denoiselab import process as P
from denoiselab.denoiser import (
    AnalyticMixtureDenoiser,
    ConditionalMixtureDenoiser,
    Denoiser,
    FlowDenoiser,
    mixture_posterior,
)
from denoiselab.guidance import ClassifierFreeGuidance, ClassifierGuidance, guided
from denoiselab.losses import drop_labels
from denoiselab.models import CS180UNet, UNet
from denoiselab.samplers import SAMPLERS
from denoiselab.samplers.api import generate
from denoiselab.schedules import make_schedule

F64 = torch.float64
MEANS = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=F64)
VARS = torch.tensor([0.25, 0.16, 0.09], dtype=F64)
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=F64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mixture():
    return ConditionalMixtureDenoiser(make_schedule("linear", 1000), MEANS, VARS, WEIGHTS)


class FlowMixtureNet:
    """The mixture's exact flow velocity v = x0_hat - eps_hat at tau = t / 1000 (x_tau = tau x0 + (1 - tau) eps)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        tau = (torch.as_tensor(t, dtype=F64) / 1000).expand(x.shape[0])
        s = (1 - tau).clamp(min=1e-9)
        comp, logr = mixture_posterior(x, tau, s, MEANS, VARS, WEIGHTS)
        x0 = (logr.exp()[..., None] * comp).sum(1)
        if cond is not None:
            cond = torch.as_tensor(cond).long()
            x0 = torch.where((cond >= 0)[:, None], comp[torch.arange(len(x)), cond.clamp(min=0)], x0)
        eps = (x - tau[:, None] * x0) / s[:, None]
        return (x0 - eps).to(x.dtype)


def _random_unet(kind: str, num_classes: int = 3) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    if kind == "unet":
        net = UNet(in_channels=1, image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, groups=4,
                   num_classes=num_classes, heads=2)
    else:
        net = CS180UNet(in_channels=1, D=4, image_size=8, T=1000, num_classes=num_classes)
    with torch.no_grad():  # the UNet's zero-initialised output layers would make every prediction 0
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.double().eval()  # float64: x0 = (x - s eps) / a divides by a = 0.006 at t = 999


# -- Classifier-free guidance: the formula ----------------------------------------------------

@pytest.mark.parametrize("param", ["eps", "x0", "v", "flow"])
@pytest.mark.parametrize("kind", ["unet", "cs180"])
def test_cfg_scale_one_is_conditional_and_zero_unconditional(param, kind):
    net = _random_unet(kind)
    den = FlowDenoiser(net, clip_x0=1.0) if param == "flow" else Denoiser(net, make_schedule("linear", 1000), param, clip_x0=1.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 1, 8, 8, generator=g, dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.2, 0.9, 0.7], dtype=F64) if param == "flow" else torch.tensor([10., 200, 999, 500, 3, 640], dtype=F64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.no_grad():
        cond, uncond = den(x, t, y), den(x, t, torch.full_like(y, -1))
        for w, want in ((1.0, cond), (0.0, uncond)):
            got = ClassifierFreeGuidance(den, w)(x, t, y)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
        # Scale 3: eps combined from the unclipped halves, x0 from that eps, clipped once.
        (_, ec), (_, eu) = den.unclipped(x, t, y), den.unclipped(x, t, torch.full_like(y, -1))
        eps = eu + 3 * (ec - eu)
        a, s = den.scales(t, x)
        x0 = (x - s * eps) / a
        want = den.clip_pair(x, t, x0, eps)
        got = ClassifierFreeGuidance(den, 3.0)(x, t, y)
        for a_, b_ in zip(got, want):
            torch.testing.assert_close(a_, b_)
    assert got[0].abs().max() <= 1.0  # the clip applied after combining


def test_cfg_is_one_batched_forward():
    calls = []

    def net(x, t, cond):
        calls.append((x.shape[0], cond.tolist()))
        return x * 0.5 + cond.to(x.dtype)[:, None]

    den = Denoiser(net, make_schedule("linear", 1000), "eps")
    x = torch.randn(4, 2)
    ClassifierFreeGuidance(den, 2.0)(x, torch.full((4,), 100.0), torch.tensor([0, 1, 2, 1]))
    assert calls == [(8, [0, 1, 2, 1, -1, -1, -1, -1])]


def test_cfg_uncond_tensor_is_broadcast_to_cond():
    """A (1, D) null condition (e.g. an empty- or negative-prompt embedding) is expanded to cond's shape."""
    seen = []

    def net(x, t, cond):
        seen.append(cond.clone())
        return x * 0 + cond.sum(1, keepdim=True)

    den = Denoiser(net, make_schedule("linear", 1000), "eps")
    cond, null = torch.ones(3, 5), torch.full((1, 5), 2.0)
    _, eps = ClassifierFreeGuidance(den, 4.0, uncond=null)(torch.zeros(3, 1), torch.full((3,), 10.0), cond)
    assert seen[0].shape == (6, 5) and torch.equal(seen[0][3:], null.expand(3, 5))
    torch.testing.assert_close(eps, torch.full((3, 1), 10.0 + 4 * (5.0 - 10.0)))


def test_wrappers_delegate_the_process_but_not_the_network(mixture):
    w = guided(mixture, scale=2.0)
    assert w.schedule is mixture.schedule and w.sigma_range == mixture.sigma_range
    assert w.time_range == mixture.time_range and w.parameterization == "x0"
    torch.testing.assert_close(w.t_from_sigma(torch.tensor([1.0], dtype=F64)), mixture.t_from_sigma(torch.tensor([1.0], dtype=F64)))
    with pytest.raises(AttributeError):
        w.raw
    assert guided(mixture) is mixture  # scale 1, no classifier: nothing to wrap


# -- Guided sampling on the analytic mixture --------------------------------------------------

# Consistency sampling needs a consistency model: on a denoiser its last jump returns a posterior
# mean, whose spread is too small (tests/test_distill.py samples the exact consistency function).
@pytest.mark.parametrize("sampler", sorted(set(SAMPLERS) - {"consistency"}))
def test_guided_sampling_at_scale_one_recovers_the_asked_component(mixture, sampler):
    """CFG at w = 1 is the conditional model: every sampler lands in component k with its variance."""
    k, n = 2, 600
    steps = 250 if sampler in ("ddpm", "euler-ancestral", "dpmpp-2m-sde", "dpmpp-3m-sde") else 100
    den = ClassifierFreeGuidance(mixture, 1.0)
    x, _ = generate(den, n, (2,), sampler=sampler, steps=steps, seed=3, cond=torch.full((n,), k))
    x = x.double()
    se = math.sqrt(VARS[k] / n)
    assert (x.mean(0) - MEANS[k]).abs().max() < 5 * se
    assert abs(x.var(0).mean() / VARS[k] - 1) < 0.2


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs_guided_vp_and_flow(mixture, sampler):
    """Strong guidance (w = 4) on VP and on a flow: finite samples, all nearest to the asked component."""
    y = torch.arange(90) % 3
    dens = [ClassifierFreeGuidance(mixture, 4.0)]
    if sampler != "ddpm":  # ddpm needs a beta schedule
        dens.append(ClassifierFreeGuidance(FlowDenoiser(FlowMixtureNet()), 4.0))
    for den in dens:
        x, nfe = generate(den, 90, (2,), sampler=sampler, steps=20, seed=4, cond=y)
        assert torch.isfinite(x).all() and nfe >= 20
        nearest = torch.cdist(x.double(), MEANS).argmin(1)
        assert torch.equal(nearest, y)


def test_flow_cfg_combines_velocity_like_eps():
    """For a flow, eps = x - tau v is affine in v, so guiding eps is guiding v: check against v_u + w (v_c - v_u)."""
    net = FlowMixtureNet()
    den = FlowDenoiser(net)
    x = torch.randn(5, 2, dtype=F64)
    tau = torch.tensor([0.0, 0.2, 0.5, 0.7, 0.95], dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1])
    v_c, v_u = net(x, tau * 1000, y), net(x, tau * 1000, torch.full_like(y, -1))
    x0, eps = ClassifierFreeGuidance(den, 2.5)(x, tau, y)
    v = v_u + 2.5 * (v_c - v_u)
    torch.testing.assert_close(eps, x - tau[:, None] * v)
    torch.testing.assert_close(x0, x + (1 - tau[:, None]) * v)


# -- Classifier guidance -----------------------------------------------------------------------

def test_classifier_guidance_with_the_exact_classifier_is_the_conditional_model(mixture):
    """Bayes: the score of p(x_t) p(k | x_t) is the score of p(x_t | k) (Dhariwal & Nichol 2021, eq. 10-11)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 2, generator=g, dtype=F64) * 3
    t = torch.linspace(5, 990, 12, dtype=F64)
    y = torch.arange(12) % 3
    uncond = AnalyticMixtureDenoiser(mixture.schedule, MEANS, VARS, WEIGHTS)  # ignores cond
    den = ClassifierGuidance(uncond, mixture.log_class_probs, 1.0)
    x0, eps = den(x, t, y)
    x0_k, eps_k = mixture(x, t, y)
    torch.testing.assert_close(eps, eps_k)
    torch.testing.assert_close(x0, x0_k, atol=1e-6, rtol=1e-6)  # x0 = (x - s eps) / a: a ~ 0.006 at t = 990
    # Scale 0 and label -1 leave the unconditional model alone.
    torch.testing.assert_close(den(x, t, torch.full_like(y, -1))[1], mixture(x, t, None)[1])


def test_classifier_gradient_reaches_x_t_under_no_grad(mixture):
    x = torch.randn(8, 2, dtype=F64)
    t = torch.full((8,), 300.0, dtype=F64)
    y = torch.arange(8) % 3
    den = ClassifierGuidance(mixture, mixture.log_class_probs, 2.0)
    with torch.no_grad():  # samplers run under no_grad
        grad = den.grad_log_prob(x, t, y)
    # Finite differences of log p(y | x_t) along each axis.
    h = 1e-5
    for d in range(2):
        e = torch.zeros(2, dtype=F64)
        e[d] = h
        lp = lambda z: mixture.log_class_probs(z, t).gather(1, y[:, None])[:, 0]
        torch.testing.assert_close(grad[:, d], (lp(x + e) - lp(x - e)) / (2 * h), atol=1e-6, rtol=1e-5)
    assert grad.abs().sum() > 0


def test_classifier_guided_sampling_on_the_unconditional_mixture(mixture):
    """Classifier guidance turns the unconditional mixture into the asked component (DDIM, 30 steps)."""
    uncond = AnalyticMixtureDenoiser(mixture.schedule, MEANS, VARS, WEIGHTS)  # ignores cond
    den = guided(uncond, classifier=mixture.log_class_probs, classifier_scale=1.0)
    y = torch.arange(300) % 3
    x, _ = generate(den, 300, (2,), sampler="ddim", steps=30, seed=6, cond=y)
    assert torch.equal(torch.cdist(x.double(), MEANS).argmin(1), y)


def test_cfg_and_classifier_guidance_compose(mixture):
    den = guided(mixture, scale=1.5, classifier=mixture.log_class_probs, classifier_scale=0.5)
    assert isinstance(den, ClassifierGuidance) and isinstance(den.inner, ClassifierFreeGuidance)
    x, t, y = torch.randn(6, 2, dtype=F64), torch.full((6,), 400.0, dtype=F64), torch.arange(6) % 3
    _, eps = den(x, t, y)
    _, e_cfg = ClassifierFreeGuidance(mixture, 1.5)(x, t, y)
    a, s = mixture.scales(t, x)
    want = e_cfg - s * 0.5 * ClassifierGuidance(mixture, mixture.log_class_probs, 1).grad_log_prob(x, t, y)
    torch.testing.assert_close(eps, want)


# -- Label dropout ----------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.3])
def test_label_dropout_happens_at_the_configured_rate(p):
    n = 200_000
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(7))
    out = drop_labels(y, p, torch.Generator().manual_seed(8))
    dropped = out == -1
    assert abs(dropped.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(out[~dropped], y[~dropped])
    assert drop_labels(y, 0.0, torch.Generator()) is y


# -- Runs, presets and the command line -------------------------------------------------------

# Tiny image runs on the 8x8 sklearn digits: seconds to train, every code path of the real presets.
DIGITS = ["--set", "data.name=digits", "--set", "model.image_size=8", "--set", "model.ch=8", "--set", "steps=6",
          "--set", "batch_size=16", "--set", "preview_every=0", "--quiet", "--no-pictures"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from denoiselab.cli import main

    root = tmp_path_factory.mktemp("guide")
    argv = {"class": ["--preset", "mnist-class"], "uncond": ["--preset", "mnist"],
            "clf": ["--preset", "mnist-classifier"],
            "clf300": ["--preset", "mnist-classifier", "--set", "diffusion.T=300"]}
    for name, a in argv.items():
        assert main(["train", *a, "--out", str(root / name), *DIGITS]) == 0
    return root


def _one_error(capsys, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("denoiselab: error:") and needle in err[0], err


@pytest.mark.parametrize("run,argv,needle", [
    ("uncond", ["--class", "3"], "unconditional model: drop --class"),
    ("uncond", ["--guidance", "3"], "unconditional model: --guidance"),
    ("class", ["--class", "10"], "class 10 is out of range"),
    ("class", ["--class", "-2"], "class -2 is out of range"),
    ("uncond", ["--classifier", "{root}/clf", "--class", "11"], "class 11 is out of range"),
    ("uncond", ["--classifier", "{root}/class", "--class", "1"], "not a classifier run"),
    ("uncond", ["--classifier", "{root}/clf300", "--class", "1"], "another noise schedule"),
    ("uncond", ["--classifier-scale", "2"], "needs --classifier"),
    ("clf", [], "noise-aware classifier: it cannot be sampled"),
])
def test_bad_conditioning_gives_one_clear_line(runs, tmp_path, capsys, run, argv, needle):
    from denoiselab.cli import main

    argv = [a.replace("{root}", str(runs)) for a in argv]
    assert main(["sample", str(runs / run), "--num", "4", "--steps", "3", "--sampler", "ddim",
                 "--out", str(tmp_path / "x.npy"), *argv]) == 2
    _one_error(capsys, needle)


def test_sample_class_guidance_and_classifier(runs, tmp_path):
    from denoiselab.cli import main

    common = ["--num", "6", "--steps", "4", "--sampler", "ddim", "--seed", "5"]
    outs = {}
    for name, run, extra in [("w3", "class", ["--class", "2", "--guidance", "3"]),
                             ("w3b", "class", ["--class", "2", "--guidance", "3", "--batch-size", "4"]),
                             ("w1", "class", ["--class", "2", "--guidance", "1"]),
                             ("w2", "class", ["--class", "2", "--guidance", "2"]),
                             ("default", "class", ["--class", "2"]),
                             ("clf", "uncond", ["--classifier", str(runs / "clf"), "--class", "2",
                                                "--classifier-scale", "5"]),
                             ("noclf", "uncond", [])]:
        assert main(["sample", str(runs / run), *common, "--out", str(tmp_path / f"{name}.npy"), *extra]) == 0
        outs[name] = np.load(tmp_path / f"{name}.npy")
    assert outs["w3"].shape == (6, 1, 8, 8) and np.isfinite(outs["w3"]).all()
    np.testing.assert_allclose(outs["w3"], outs["w3b"], atol=1e-5)  # sample i depends only on (seed, i)
    np.testing.assert_array_equal(outs["default"], outs["w2"])      # the preset's default scale is 2
    assert np.abs(outs["w3"] - outs["w1"]).max() > 0  # tiny 6-step nets: the class barely matters yet
    assert np.abs(outs["clf"] - outs["noclf"]).max() > 0


def test_classifier_run_trains_loads_and_checks_its_schedule(runs):
    from denoiselab import runs as R
    from denoiselab.errors import DenoiselabError
    from denoiselab.runs import check_classifier, load_classifier

    clf = load_classifier(runs / "clf")
    x = torch.zeros(3, 1, 8, 8)
    assert clf.net(x, torch.tensor([0.0, 500.0, 999.0])).shape == (3, 10)
    assert not any(p.requires_grad for p in clf.net.parameters())
    run = R.load_run(runs / "uncond")
    check_classifier(run, clf)
    with pytest.raises(DenoiselabError, match="another noise schedule"):
        check_classifier(run, load_classifier(runs / "clf300"))


def test_classifier_objective_is_cross_entropy_at_q_sample():
    """The objective draws t ~ U{0..T-1}, eps ~ N(0, I) from the trainer's generator, scores x_t."""
    from denoiselab.presets import get_preset
    from denoiselab.runs import build_objective, build_schedule

    cfg = get_preset("mnist-classifier")
    seen = {}

    def net(xt, t, cond=None):
        seen["xt"], seen["t"] = xt, t
        return torch.stack([xt.flatten(1).mean(1), -xt.flatten(1).mean(1)], 1)

    x0 = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 1, 0, 1])
    loss = build_objective(cfg)(net, x0, y, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    t = torch.randint(0, cfg.diffusion.T, (5,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    torch.testing.assert_close(seen["xt"], P.q_sample(build_schedule(cfg.diffusion), x0, t, eps))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(net(seen["xt"], t), y))


def test_classifier_learns_digits_at_low_noise(tmp_path):
    """A few hundred steps of the trainer make the noise-aware classifier see clean 8x8 digits."""
    from denoiselab import runs as R
    from denoiselab.config import apply_overrides
    from denoiselab.presets import get_preset
    from denoiselab.training.trainer import Trainer

    cfg = apply_overrides(get_preset("mnist-classifier"), ["data.name=digits", "model.image_size=8", "model.ch=16",
                                                            "steps=150", "batch_size=64", "ema_decay=0", "warmup=10"])
    data = R.build_data(cfg)
    torch.manual_seed(0)
    net = R.build_net(R.resolve_config(cfg, data))
    Trainer(net, R.build_objective(cfg), data, cfg.train, tmp_path, cfg.to_dict(), progress=False).fit()
    net.eval()
    with torch.no_grad():
        acc = (net(data.x[:500], torch.zeros(500)).argmax(1) == data.y[:500]).double().mean().item()
    assert acc > 0.6  # chance is 0.1


def test_plot_guidance_and_animate(runs, tmp_path, capsys):
    from denoiselab.cli import main

    out = tmp_path / "grid.png"
    assert main(["plot", "guidance", str(runs / "class"), "--scales", "0", "3", "--classes", "1", "7",
                 "--batch-size", "2", "--num-batches", "2", "--steps", "3", "--out", str(out)]) == 0
    from PIL import Image

    w, h = Image.open(out).size
    assert w > h > 0  # 2 classes of 2x2 tiles side by side, 2 scale rows
    # The start is an option here too: a deterministic sampler from N(0, I) draws another grid.
    for start in ("moments", "gaussian"):
        assert main(["plot", "guidance", str(runs / "class"), "--scales", "3", "--classes", "1", "--batch-size", "2",
                     "--sampler", "ddim", "--steps", "3", "--start", start, "--out", str(tmp_path / f"{start}.png")]) == 0
    assert Image.open(tmp_path / "moments.png").tobytes() != Image.open(tmp_path / "gaussian.png").tobytes()
    capsys.readouterr()
    assert main(["plot", "guidance", str(runs / "uncond"), "--steps", "3", "--out", str(out)]) == 2
    _one_error(capsys, "unconditional")
    assert main(["animate", str(runs / "class"), "--class", "4", "--num", "4", "--steps", "3",
                 "--out", str(tmp_path / "a.gif")]) == 0


def test_class_conditional_pictures_show_every_class_in_its_column(runs, tmp_path, monkeypatch):
    """samples.png of a class-conditional run: 4 rows x 10 columns, one class per column; a guided GIF."""
    import dataclasses
    import shutil

    from PIL import Image

    from denoiselab import runs as R

    run_dir = tmp_path / "run"
    shutil.copytree(runs / "class", run_dir)
    data = R.build_data(R.read_config(run_dir))
    calls, real_gif, real_load = [], R.reverse_gif, R.load_run

    def load(d, use_ema=True, device=None):  # 2 sampling steps instead of the preset's own
        r = real_load(d, use_ema, device)
        r.config = dataclasses.replace(r.config, sample=dataclasses.replace(r.config.sample, steps=2))
        return r

    def gif(*a, **k):
        calls.append(k)
        return real_gif(*a, **k)

    monkeypatch.setattr(R.pictures, "load_run", load)
    monkeypatch.setattr(R.pictures, "reverse_gif", gif)
    written = R.image_pictures(run_dir, data)
    grid = Image.open(run_dir / "samples.png")
    side = (grid.size[0] - 2) / 10  # 10 columns of equal tiles with 2-pixel padding
    assert abs(grid.size[1] - 2 - 4 * side) < 1e-6  # 4 rows
    assert calls[0]["cond"].tolist() == list(range(10)) * 2 and calls[0]["nrow"] == 10
    assert calls[0]["denoiser"].scale == 2.0  # the preset's guidance
    assert run_dir / "reverse.gif" in written


def test_training_sweep_writes_guidance_grid_for_class_runs_only(runs, tmp_path):
    """After training, a class-conditional image run gets guidance.png (scales x classes) for its page."""
    import shutil

    from PIL import Image

    from denoiselab import runs as R
    from denoiselab.runs.sweeps import training_sweep

    run_dir = tmp_path / "run"
    shutil.copytree(runs / "class", run_dir)
    data = R.build_data(R.read_config(run_dir))
    path = training_sweep(run_dir, data)
    assert path == run_dir / "guidance.png"
    w, h = Image.open(path).size
    assert w > h > 0  # 10 class columns, 6 scale rows of single tiles
    assert training_sweep(runs / "uncond", R.build_data(R.read_config(runs / "uncond"))) is None


def test_presets_for_conditioning(tmp_path):
    from denoiselab import runs as R
    from denoiselab.config import apply_overrides
    from denoiselab.data import build_dataset
    from denoiselab.errors import DenoiselabError
    from denoiselab.models import CS180UNet
    from denoiselab.presets import get_preset

    c = get_preset("cs180-class")
    assert (c.model.name, c.model.options["num_classes"], c.diffusion.T, c.diffusion.p_uncond) == ("cs180-unet", 10, 300, 0.1)
    assert (c.sample.guidance, c.sample.sampler, c.sample.steps) == (5.0, "ddpm", 300)
    assert isinstance(R.build_net(c), CS180UNet)
    m = get_preset("mnist-class")
    assert m.sample.guidance == 2.0 and m.diffusion.p_uncond == 0.1 and m.model.options["num_classes"] == 10
    k = get_preset("mnist-classifier")
    assert k.diffusion.kind == "classifier" and k.diffusion.T == get_preset("mnist").diffusion.T
    # folder-class: the class count comes from the sub-folders.
    from PIL import Image

    for cls in ("cat", "dog", "fox"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(tmp_path / cls / f"{i}.png")
    f = apply_overrides(get_preset("folder-class"), [f"data.path={tmp_path}", "data.image_size=8"])
    data = R.build_data(f)
    assert R.resolve_config(f, data).model.options["num_classes"] == 3
    with pytest.raises(DenoiselabError, match="no labels"):
        R.resolve_config(f, build_dataset("swiss-roll", {}, 100, 0))
    with pytest.raises(DenoiselabError, match="num_classes=2 but the data has 3 classes"):
        R.resolve_config(apply_overrides(f, ["model.num_classes=2"]), data)
    # The spelt-out form sets the same option.
    assert apply_overrides(f, ["model.options.num_classes=3"]).model.options["num_classes"] == 3


def test_evaluate_a_class_run_scores_the_asked_classes(runs, tmp_path, capsys, monkeypatch):
    """`evaluate RUN` on a class-conditional run samples every class in turn and reports their accuracy."""
    import denoiselab.evaluation.images as images_mod
    from denoiselab.cli import main
    from denoiselab.evaluation.featurenet import FeatureNetConfig

    tiny = FeatureNetConfig(feature_dim=16, widths=(8, 8, 16), epochs=1, batch_size=256)
    monkeypatch.setattr(images_mod.domain_extractor, "__defaults__", (tiny, None, None))
    argv = ["evaluate", str(runs / "class"), "--ref", "digits", "--num", "20", "--steps", "2", "--guidance", "2",
            "--cache-dir", str(tmp_path / "c"), "--bootstrap", "0", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    acc = res["metrics"]["class accuracy"]
    assert sorted(int(k) for k in acc["per_class"]) == list(range(10))
    assert acc["balanced"] == pytest.approx(sum(acc["per_class"].values()) / 10)
    # sklearn's digits hold 174 to 183 images a class: the samples are drawn in those proportions.
    assert "drawing the 10 classes in the proportions of digits" in out.err


def test_class_labels_follow_the_weights_in_every_prefix():
    from denoiselab.errors import DenoiselabError
    from denoiselab.runs import class_labels

    counts = [134, 1883, 122, 108, 174, 68, 210, 178, 215]  # the emoji categories of the training split
    labels = class_labels(sum(counts), 9, weights=counts)
    assert torch.bincount(labels, minlength=9).tolist() == counts  # one whole cycle: the counts exactly
    seen = torch.nn.functional.one_hot(labels, 9).cumsum(0).double()
    share = torch.arange(1, len(labels) + 1).double()[:, None] * torch.tensor(counts).double() / sum(counts)
    assert (seen - share).abs().max() < 1  # every prefix within one sample of the proportions
    assert class_labels(7, 3, weights=[4, 4, 4]).tolist() == [0, 1, 2, 0, 1, 2, 0]  # equal: the usual cycle
    assert class_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(DenoiselabError, match="give 3 counts"):
        class_labels(4, 3, weights=[1, 2])


@pytest.mark.parametrize("preset,sampler", [("cs180-class", "ddpm"), ("cs180-flow-class", "euler"),
                                            ("cs180-flow-class", "heun")])
def test_cs180_class_presets_sample_guided(tmp_path, preset, sampler):
    """The CS180 class-conditioned teaching UNets (DDPM T = 300 and flow matching) sample with their default w = 5."""
    from denoiselab.cli import main

    out = tmp_path / "run"
    assert main(["train", "--preset", preset, "--out", str(out), "--set", "data.name=digits", "--set", "model.image_size=8",
                 "--set", "model.D=4", "--set", "steps=3", "--set", "batch_size=8", "--set", "preview_every=0",
                 "--quiet", "--no-pictures"]) == 0
    assert main(["sample", str(out), "--class", "3", "--num", "5", "--sampler", sampler, "--steps", "4",
                 "--out", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (5, 1, 8, 8) and np.isfinite(x).all()
