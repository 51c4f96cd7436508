"""diffusers interop (import, export, sample --noise): each target row of
benchmarks/diffusers_interop.py on tiny random models built with diffusers' own classes, and the
bad inputs that must fail in one line before any work. Nothing is downloaded."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import diffusers_interop as B  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet_diffusers():
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()


def imported(tmp_path_factory, name: str, make_folder) -> Path:
    """`denoiselab import diffusers` of the folder and prompt dictionary ``make_folder`` writes."""
    tmp = tmp_path_factory.mktemp(name)
    folder, prompts = make_folder(tmp / "src")
    code, err = B.cli("import", "diffusers", folder, "--prompts", prompts, "--out", tmp / "run")
    assert code == 0, err
    return tmp / "run"


@pytest.fixture(scope="module")
def if_run(tmp_path_factory):
    """An imported IF-shaped model (UNet2DConditionModel, prompt dictionary, learned-range variance)."""
    return imported(tmp_path_factory, "if", B.if_folder)


def refused(tmp_path, *argv, out=None):
    """The command exits 2 with one line on stderr and writes nothing at ``out``."""
    code, err = B.cli(*argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    if out is not None:
        assert not Path(out).exists()
        assert not [p for p in Path(out).parent.iterdir() if p.name.startswith(f".{Path(out).name}")]
    return err


# -- the target rows ---------------------------------------------------------------------------

def test_ddim_from_the_same_noise_matches_ddim_pipeline(tmp_path):
    r = B.ddim_against_pipeline(tmp_path, clip=False, num=2)  # through `sample --noise`
    assert r["diff"] <= 1e-4
    assert r["diff64"] <= 1e-9


def test_ddim_keeps_diffusers_unclipped_eps_on_request(tmp_path):
    # A random network amplifies float32 rounding along the ODE: float64 isolates the algorithms,
    # and in float32 the difference stays within what rounding moves our own sample.
    r = B.ddim_against_pipeline(tmp_path, clip=True, num=2)
    assert r["diff64"] <= 1e-9
    assert r["diff"] <= max(1e-4, 2 * r["floor"])


def test_on_a_trained_unet_float32_samplers_meet_the_target(tmp_path):
    # Trained a little, the UNet no longer amplifies rounding: the float32 rows meet 1e-4 outright.
    assert B.ddim_against_pipeline(tmp_path, clip=True, num=2, trained=100)["diff"] <= 1e-4
    assert B.dpm_against_scheduler(tmp_path, num=2, steps=10, trained=300)["diff"] <= 1e-4


def test_ddpm_float32_error_is_under_diffusers_own(tmp_path):
    # Against the float64 answer on the same noise draws, ours is the closer of the two.
    r = B.ddpm_against_scheduler(tmp_path, "learned_range", num=2, steps=50)
    assert r["floor"] <= r["theirs_floor"] and r["floor"] <= 1e-5


@pytest.mark.parametrize("variance", ["fixed_small", "learned_range"])
def test_ddpm_matches_ddpm_scheduler_with_the_same_noise(tmp_path, variance):
    assert B.ddpm_against_scheduler(tmp_path, variance, num=2, steps=50)["diff"] <= 1e-4


def test_dpmpp_2m_matches_dpm_solver_multistep_on_the_same_grid(tmp_path):
    r = B.dpm_against_scheduler(tmp_path, num=2, steps=10)
    assert r["diff64"] <= 1e-9
    assert r["diff"] <= max(1e-4, 2 * r["floor"])


def test_cfg_at_one_is_the_conditional_model(tmp_path):
    r = B.cfg_at_one(tmp_path)
    assert r["call"] == 0.0 and r["samples"] == 0.0


def test_every_cs180_part_a_command_runs_on_an_imported_model(if_run, tmp_path):
    for i, (part, argv) in enumerate(B.part_a_commands(if_run, tmp_path).items()):
        out = tmp_path / f"part{i}.png"
        code, err = B.cli(*argv, "--out", out)
        assert code == 0, f"{part}: {err}"
        assert out.is_file(), part


def test_export_loads_in_ddpm_pipeline_with_the_same_unet(tmp_path):
    r = B.export_roundtrip(tmp_path)
    assert r["diff"] <= 1e-6 and r["schedule"]


def test_pickled_weights_are_refused_without_allow_pickle(tmp_path):
    r = B.pickle_refused(tmp_path)
    assert (r["code"], r["lines"], r["written"]) == (2, 1, False)
    assert "--allow-pickle" in r["message"]
    code, err = B.cli("import", "diffusers", tmp_path / "pickled", "--allow-pickle", "--out", tmp_path / "ok")
    assert code == 0, err


# -- more of what the interop promises --------------------------------------------------------

def test_a_diffusers_folder_samples_where_a_run_is_accepted(tmp_path):
    folder = B.unet_folder(tmp_path / "src")
    code, err = B.cli("sample", folder, "--num", 2, "--sampler", "ddim", "--steps", 5, "--out", tmp_path / "x.npy")
    assert code == 0, err
    code, err = B.cli("import", "diffusers", folder, "--out", tmp_path / "run")
    assert code == 0, err
    code, err = B.cli("sample", tmp_path / "run", "--num", 2, "--sampler", "ddim", "--steps", 5,
                      "--out", tmp_path / "y.npy")
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy"))


def test_sample_noise_sets_x_T_and_the_count(tmp_path):
    folder = B.unet_folder(tmp_path / "src")
    x_T = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "n.npy", x_T)
    code, err = B.cli("sample", folder, "--sampler", "ddim", "--steps", 1, "--noise", tmp_path / "n.npy",
                      "--out", tmp_path / "x.npy")
    assert code == 0, err
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (3, 3, 8, 8)
    from denoiselab.runs import load_run
    from denoiselab.samplers.ddpm import sample_ddim

    run = load_run(folder)
    want = sample_ddim(run.denoiser, torch.from_numpy(x_T), torch.tensor([0]))  # the leading grid of 1 step
    assert np.array_equal(x, want.numpy())
    np.save(tmp_path / "bad.npy", x_T[:, :1])
    refused(tmp_path, "sample", folder, "--noise", tmp_path / "bad.npy", "--out", tmp_path / "z.npy",
            out=tmp_path / "z.npy")
    refused(tmp_path, "sample", folder, "--noise", tmp_path / "n.npy", "--num", 5, "--out", tmp_path / "z.npy")


def test_learned_variance_reuses_the_conditional_half_under_guidance(if_run):
    from denoiselab.guidance import ClassifierFreeGuidance
    from denoiselab.runs import load_run

    run = load_run(if_run)
    calls = []
    net = run.denoiser.net
    run.denoiser.net = lambda *a: calls.append(1) or net(*a)
    x = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    cond, uncond = run.net.prompt_condition(["a rocket ship"], 2)
    t = torch.full((2,), 700.0, dtype=torch.float64)
    with torch.no_grad():
        ClassifierFreeGuidance(run.denoiser, 3.0, uncond)(x, t, cond)
        v = run.denoiser.learned_variance(x, t, cond)
        assert len(calls) == 1  # the batched [cond, uncond] call's conditional half, no second call
        alone = net(x, t.float(), cond)[:, 3:]
        assert torch.allclose(v, alone, atol=1e-5)  # a batch of 2n rounds a little differently
        v = run.denoiser.learned_variance(x.flip(-1), t, cond)  # other inputs: the network runs
        assert len(calls) == 2 and torch.allclose(v, net(x.flip(-1), t.float(), cond)[:, 3:], atol=1e-6)


def test_a_diffusers_unet2d_trains_here_and_exports(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("""
[presets.tiny]
source = "test"
summary = "diffusers' UNet2DModel on 8x8 digits"
[presets.tiny.data]
name = "digits"
[presets.tiny.model]
name = "diffusers-unet2d"
[presets.tiny.model.options]
sample_size = 8
in_channels = 1
out_channels = 1
layers_per_block = 1
block_out_channels = [8, 16]
down_block_types = ["DownBlock2D", "DownBlock2D"]
up_block_types = ["UpBlock2D", "UpBlock2D"]
norm_num_groups = 4
[presets.tiny.diffusion]
T = 100
clip_x0 = 1.0
[presets.tiny.train]
steps = 3
batch_size = 8
log_every = 1
[presets.tiny.sample]
sampler = "ddim"
steps = 5
num = 4
""")
    code, err = B.cli("train", "--preset", f"{preset}:tiny", "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    code, err = B.cli("export", "diffusers", tmp_path / "run", "--out", tmp_path / "exp")
    assert code == 0, err
    import diffusers

    from denoiselab.runs import load_run

    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path / "exp", local_files_only=True)
    run = load_run(tmp_path / "run")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([50.0, 3.0])
    with torch.no_grad():
        assert (pipe.unet(x, t).sample - run.net(x, t)).abs().max() <= 1e-6
    assert pipe.scheduler.config.num_train_timesteps == 100


# -- bad input: one line, exit 2, nothing written ----------------------------------------------

def test_a_folder_without_a_model_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    err = refused(tmp_path, "import", "diffusers", tmp_path / "empty", "--out", tmp_path / "run", out=tmp_path / "run")
    assert "no model config" in err


def test_an_unknown_scheduler_class_is_refused(tmp_path):
    folder = B.unet_folder(tmp_path / "src", "PNDMScheduler")
    err = refused(tmp_path, "import", "diffusers", folder, "--out", tmp_path / "run", out=tmp_path / "run")
    assert "unknown scheduler class 'PNDMScheduler'" in err and "DDPMScheduler" in err


def test_a_prompt_missing_from_the_dictionary_names_the_nearest(if_run, tmp_path):
    err = refused(tmp_path, "sample", if_run, "--num", 1, "--steps", 2, "--prompt", "a man wearing hat",
                  "--out", tmp_path / "x.png", out=tmp_path / "x.png")
    assert "'a man wearing a hat'" in err


def test_a_mismatched_embedding_width_is_refused(tmp_path):
    from safetensors.torch import save_file

    folder, _ = B.if_folder(tmp_path / "src")
    save_file({"": torch.zeros(1, 5, 31), "a dog": torch.zeros(1, 5, 31)}, str(tmp_path / "narrow.safetensors"))
    err = refused(tmp_path, "import", "diffusers", folder, "--prompts", tmp_path / "narrow.safetensors",
                  "--out", tmp_path / "run", out=tmp_path / "run")
    assert "31 wide" in err and "32" in err


def test_a_condition_model_without_a_dictionary_or_a_pickled_one_is_refused(tmp_path):
    folder, _ = B.if_folder(tmp_path / "src")
    err = refused(tmp_path, "import", "diffusers", folder, "--out", tmp_path / "run", out=tmp_path / "run")
    assert "--prompts" in err
    torch.save({"": torch.zeros(1, 5, 32)}, tmp_path / "p.pth")
    err = refused(tmp_path, "import", "diffusers", folder, "--prompts", tmp_path / "p.pth", "--out", tmp_path / "run",
                  out=tmp_path / "run")
    assert "--allow-pickle" in err


def test_channels_that_do_not_fit_the_variance_type_are_refused(tmp_path):
    folder = B.unet_folder(tmp_path / "src", variance_type="learned_range")  # a 3-channel UNet
    err = refused(tmp_path, "import", "diffusers", folder, "--out", tmp_path / "run", out=tmp_path / "run")
    assert "outputs 3 channels" in err and "needs 6" in err


def test_a_latent_pipeline_with_a_bad_vae_is_refused(tmp_path):
    folder = B.unet_folder(tmp_path / "src")
    (folder / "vae").mkdir()
    (folder / "vae" / "config.json").write_text('{"_class_name": "VQModel"}')
    err = refused(tmp_path, "import", "diffusers", folder, "--out", tmp_path / "run", out=tmp_path / "run")
    assert "AutoencoderKL" in err
    # A VAE whose latents have other channels than the UNet reads.
    import diffusers

    (folder / "vae" / "config.json").unlink()
    diffusers.AutoencoderKL(**{**B.SD_VAE, "latent_channels": 2}).save_pretrained(folder / "vae")
    err = refused(tmp_path, "import", "diffusers", folder, "--out", tmp_path / "run", out=tmp_path / "run")
    assert "2-channel latents" in err


# -- latent models (Stable Diffusion's shape) ----------------------------------------------------

@pytest.fixture(scope="module")
def sd_run(tmp_path_factory):
    """An imported SD-shaped latent model (AutoencoderKL in vae/, UNet2DConditionModel, prompts)."""
    return imported(tmp_path_factory, "sd", B.sd_folder)


def test_a_latent_model_samples_as_diffusers_loop_does(tmp_path):
    r = B.latent_against_diffusers(tmp_path, steps=10)
    assert r["shape"] == (2, 3, 8, 8) and r["diff"] <= 1e-4


def test_an_imported_latent_run_keeps_its_vae_and_moves_whole(sd_run, tmp_path):
    import shutil

    from denoiselab.runs import load_run

    assert (sd_run / "vae" / "config.json").is_file()
    moved = tmp_path / "moved"
    shutil.copytree(sd_run, moved)  # the VAE is named relative to the run
    run = load_run(moved)
    assert run.sample_shape == (4, 4, 4) and run.image_shape == (3, 8, 8)
    assert run.codec.run_dir == moved / "vae" and run.codec.scale == B.SD_VAE["scaling_factor"]


def test_edits_and_guidance_on_an_imported_latent_model(sd_run, tmp_path):
    from PIL import Image

    img = tmp_path / "in.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(img)
    prompt = B.PROMPTS[2]
    for argv in (["edit", "sdedit", sd_run, "--input", img, "--prompt", prompt, "--strength", 0.6],
                 ["edit", "inpaint", sd_run, "--input", img, "--prompt", prompt, "--mask-box", "2,2,6,6",
                  "--jump-count", 1],
                 ["edit", "anagram", sd_run, "--prompt", prompt, "--view-prompt", B.PROMPTS[3], "--num", 1],
                 ["sample", sd_run, "--prompt", prompt, "--guidance", 4, "--num", 2]):
        out = tmp_path / f"{argv[1]}.npy"
        code, err = B.cli(*argv, "--steps", 3, "--out", out)
        assert code == 0, err
        assert np.load(out).shape[1:] == (3, 8, 8)


def test_a_latent_run_does_not_export_to_a_pixel_pipeline(sd_run, tmp_path):
    err = refused(tmp_path, "export", "diffusers", sd_run, "--out", tmp_path / "exp", out=tmp_path / "exp")
    assert "latent" in err


def test_a_shifted_vae_is_refused(tmp_path):
    import diffusers

    folder, prompts = B.sd_folder(tmp_path / "src")
    diffusers.AutoencoderKL(**{**B.SD_VAE, "shift_factor": 0.1}).save_pretrained(folder / "vae")
    assert json.loads((folder / "vae" / "config.json").read_text())["shift_factor"] == 0.1
    err = refused(tmp_path, "import", "diffusers", folder, "--prompts", prompts, "--out", tmp_path / "run",
                  out=tmp_path / "run")
    assert "shift_factor" in err


# -- dynamic thresholding (Saharia et al. 2022) ---------------------------------------------------

def test_dynamic_thresholding_matches_ddpm_scheduler(tmp_path):
    r = B.ddpm_against_scheduler(tmp_path, "thresholding", num=2, steps=50)
    assert r["diff"] <= 1e-4 and r["diff64"] <= 1e-9


def test_dynamic_thresholding_closed_form():
    from denoiselab.denoiser import Denoiser
    from denoiselab.schedules import make_schedule

    den = Denoiser(lambda x, t, c=None: x, make_schedule("linear", 10), "x0", clip_x0=1.5, threshold=0.5)
    x0 = torch.tensor([[[[0.2, -0.4, 3.0, -5.0]]], [[[0.1, 0.2, -0.3, 0.4]]]], dtype=torch.float64)
    got, _ = den.clip_pair(torch.zeros_like(x0), torch.tensor([3, 3]), x0, torch.zeros_like(x0))
    # Sample 1: the median of |x0| is 1.7, held to 1.5: clamp to [-1.5, 1.5], then / 1.5.
    assert torch.allclose(got[0], x0[0].clamp(-1.5, 1.5) / 1.5)
    # Sample 2: every |x0| < 1, so s = 1: x0 is unchanged (the static clip at 1).
    assert torch.equal(got[1], x0[1])


def test_a_run_without_a_diffusers_twin_is_refused_by_export(tmp_path, if_run):
    err = refused(tmp_path, "export", "diffusers", if_run, "--out", tmp_path / "exp", out=tmp_path / "exp")
    assert "diffusers-unet2d" in err
