"""diffusers interop: imported models sample as diffusers samples them, and exported runs load in
diffusers. Every model is a tiny random one built with diffusers' own classes and saved with
``save_pretrained`` into a temporary folder (nothing is downloaded), float32 on the CPU.

Rows (the targets of the interop issue):

- our ``ddim`` 50 steps on an imported ``UNet2DModel`` against ``DDIMPipeline`` from the same
  noise (``sample --noise``), its scheduler with and without ``clip_sample``;
- our ``ddpm`` against ``DDPMScheduler.step`` with the same noise, fixed_small and learned_range;
- our ``dpmpp-2m`` against ``DPMSolverMultistepScheduler`` on the same (trailing) grid;
- an IF-shaped ``UNet2DConditionModel`` with a prompt dictionary: CFG at w = 1 against the
  conditional model, and every CS180 part A edit from the command line;
- an exported run loaded by ``DDPMPipeline.from_pretrained``: its UNet's output against ours;
- a pickled weight file without ``--allow-pickle``: refused in one line, exit 2, nothing written.

A deterministic sampler on a random network amplifies float32 rounding step after step (the rows
"UNet trained N steps" run the same samplers on the UNet after ``train_toy``), so each
deterministic row also gives the float64 difference (both sides in float64, diffusers handed our
float64 alpha_bar table: the algorithms' own difference) and each side's float32 error: its
float32 sample against the float64 one (ours in float64; for ``ddpm`` on the float32 run's own
noise draws), what rounding alone moves on that side.

    python benchmarks/diffusers_interop.py [--write-results]

``--write-results`` writes the table into docs/results/interop.md, section ``interop``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from denoiselab.rng import SampleNoise
from results import add_write_flag, markdown_row, markdown_table, write_table

# Tiny, but every kind of block the real models have: resnets, attention, a down and an up level.
UNET = dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4, attention_head_dim=4)
# DeepFloyd IF stage I's shape at toy size: simple cross-attention blocks, text_proj of the prompt
# embeddings (T5's 4096 there, 32 here), a text addition embedding, learned-range variance (6 = 2 x 3).
IF_UNET = dict(sample_size=8, in_channels=3, out_channels=6, layers_per_block=1, block_out_channels=(8, 16),
               down_block_types=("SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"),
               up_block_types=("SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D"),
               mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_num_groups=4, cross_attention_dim=16,
               attention_head_dim=4, encoder_hid_dim=32, encoder_hid_dim_type="text_proj", addition_embed_type="text",
               addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift")
IF_SCHEDULER = dict(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", clip_sample=True)
PROMPTS = ("", "an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship",
           "an oil painting of an old man", "a lithograph of waterfalls", "a photo of a dog")
EMBED = (5, 32)  # (tokens, width) of each prompt's embedding
# Stable Diffusion's shape at toy size: an AutoencoderKL with f = 2 (8x8x3 images, 4x4x4 latents) and
# a cross-attention UNet2DConditionModel on its latents, a DDIM scheduler on the scaled-linear betas.
SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
              up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), latent_channels=4,
              norm_num_groups=4, sample_size=8, scaling_factor=0.5)
SD_UNET = dict(sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
               norm_num_groups=4, cross_attention_dim=32, attention_head_dim=4)
# set_alpha_to_one: the last DDIM step lands on clean data, as ours does (SD's own configs say False:
# a last step to alpha_bar[0], which moved these samples by 1e-3; docs/results/interop.md).
SD_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                    set_alpha_to_one=True, steps_offset=0)


def cli(*argv) -> tuple[int, str]:
    """``denoiselab ARGV`` in this process: (exit code, what it wrote on stderr)."""
    from denoiselab.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def unet_folder(root: Path, scheduler: str = "DDPMScheduler", seed: int = 0, safe: bool = True, trained: int = 0,
                **sched) -> Path:
    """A DDPMPipeline-shaped folder (model_index.json, unet/, scheduler/) of a random UNet2DModel,
    or of one trained for ``trained`` steps on toy images (``train_toy``)."""
    import diffusers

    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(**UNET)
    if trained:
        train_toy(unet, diffusers.DDPMScheduler(), trained)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=getattr(diffusers, scheduler)(**sched))
    pipe.save_pretrained(root, safe_serialization=safe)
    return root


def toy_images(num: int, generator: torch.Generator) -> torch.Tensor:
    """8x8 RGB images in [-1, 1]: a flat background with a square of another colour on it."""
    x = (torch.rand((num, 3, 1, 1), generator=generator) * 2 - 1).expand(num, 3, 8, 8).clone()
    colour = torch.rand((num, 3), generator=generator) * 2 - 1
    corner = torch.randint(0, 5, (num, 2), generator=generator)
    for i in range(num):
        r, c = corner[i].tolist()
        x[i, :, r:r + 4, c:c + 4] = colour[i, :, None, None]
    return x


def train_toy(unet, scheduler, steps: int, batch: int = 32) -> None:
    """The objective of diffusers' train_unconditional.py (eps MSE at uniform t, noised by the
    scheduler's add_noise), Adam 1e-3, on toy images: a model that has seen data, as imported
    models have, where a random one is chaotic."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(unet.parameters(), lr=1e-3)
    for _ in range(steps):
        x0 = toy_images(batch, g)
        eps = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=g)
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(x0, eps, t), t).sample, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    unet.eval()


def if_folder(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """(an IF-shaped UNet2DConditionModel folder, its prompt dictionary as safetensors)."""
    import diffusers
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    diffusers.UNet2DConditionModel(**IF_UNET).save_pretrained(root / "unet")
    diffusers.DDPMScheduler(**IF_SCHEDULER).save_pretrained(root / "scheduler")
    g = torch.Generator().manual_seed(seed)
    table = {p: torch.randn(1, *EMBED, generator=g) for p in PROMPTS}
    save_file(table, str(root / "prompts.safetensors"))
    return root, root / "prompts.safetensors"


def sd_folder(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """(a Stable-Diffusion-shaped latent folder: vae/, unet/, scheduler/; its prompt dictionary)."""
    import diffusers
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    diffusers.AutoencoderKL(**SD_VAE).save_pretrained(root / "vae")
    diffusers.UNet2DConditionModel(**SD_UNET).save_pretrained(root / "unet")
    diffusers.DDIMScheduler(**SD_SCHEDULER).save_pretrained(root / "scheduler")
    g = torch.Generator().manual_seed(seed)
    table = {p: torch.randn(1, 5, SD_UNET["cross_attention_dim"], generator=g) for p in PROMPTS}
    save_file(table, str(root / "prompts.safetensors"))
    return root, root / "prompts.safetensors"


@torch.no_grad()
def latent_against_diffusers(tmp: Path, num: int = 2, steps: int = 50) -> dict:
    """An imported SD-shaped latent model: `denoiselab sample --noise` (ddim on the latents, then the
    VAE's decoder) against diffusers' own loop from the same latents: DDIMScheduler stepping the
    UNet under the prompt's embedding, then ``vae.decode(latents / scaling_factor)``."""
    import diffusers

    folder, prompts = sd_folder(tmp / "sd-src")
    code, err = cli("import", "diffusers", folder, "--prompts", prompts, "--out", tmp / "sd-run")
    assert code == 0, err
    prompt = PROMPTS[3]
    z_T = torch.randn((num, 4, 4, 4), generator=torch.Generator().manual_seed(2))
    np.save(tmp / "sd-noise.npy", z_T.numpy())
    code, err = cli("sample", tmp / "sd-run", "--prompt", prompt, "--guidance", 1, "--sampler", "ddim",
                    "--steps", steps, "--grid", "leading", "--noise", tmp / "sd-noise.npy", "--out", tmp / "sd.npy")
    assert code == 0, err
    ours = torch.from_numpy(np.load(tmp / "sd.npy"))
    from safetensors.torch import load_file

    emb = load_file(str(prompts))[prompt].expand(num, -1, -1)
    unet = diffusers.UNet2DConditionModel.from_pretrained(folder / "unet")
    vae = diffusers.AutoencoderKL.from_pretrained(folder / "vae")
    sched = diffusers.DDIMScheduler.from_pretrained(folder / "scheduler")
    sched.set_timesteps(steps)
    z = z_T
    for t in sched.timesteps:
        z = sched.step(unet(z, t, encoder_hidden_states=emb).sample, t, z, eta=0.0).prev_sample
    theirs = vae.decode(z / vae.config.scaling_factor).sample.clamp(-1, 1)
    return {"diff": (ours - theirs).abs().max().item(), "shape": tuple(ours.shape), "scale": ours.std().item()}


def _load(folder: Path):
    from denoiselab.runs import load_run

    return load_run(folder)


def _float64(run) -> None:
    run.net.double()


# -- deterministic samplers: ddim, dpmpp-2m --------------------------------------------------

def ddim_against_pipeline(tmp: Path, clip: bool, num: int = 4, steps: int = 50, trained: int = 0) -> dict:
    """Our ddim against DDIMPipeline from the same noise. Without clip_sample it runs through
    ``denoiselab sample --noise``; with it, DDIMScheduler keeps the network's eps beside the clipped
    x0 (``use_clipped_model_output=False``), which ddim's ``clipped_eps=False`` matches."""
    import diffusers

    from denoiselab.samplers import time_grid
    from denoiselab.samplers.ddpm import sample_ddim

    folder = unet_folder(tmp / f"ddim-{clip}-{trained}", "DDIMScheduler", trained=trained, clip_sample=clip)
    pipe = diffusers.DDIMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn((num, 3, 8, 8), generator=torch.Generator().manual_seed(0))  # what the pipeline draws
    theirs = pipe(batch_size=num, generator=g, num_inference_steps=steps, eta=0.0, output_type="np").images
    theirs = torch.from_numpy(theirs).permute(0, 3, 1, 2) * 2 - 1  # the pipeline's [0, 1] -> our [-1, 1]
    run = _load(folder)
    ts = time_grid(run.denoiser, "leading", steps)
    if clip:
        ours = sample_ddim(run.denoiser, x_T, ts, clipped_eps=False)
    else:
        np.save(tmp / "noise.npy", x_T.numpy())
        code, err = cli("sample", folder, "--sampler", "ddim", "--steps", steps, "--noise", tmp / "noise.npy",
                        "--out", tmp / "ours.npy")
        assert code == 0, err
        ours = torch.from_numpy(np.load(tmp / "ours.npy"))
    # The pipeline clamps its images to [0, 1]: compare in that range.
    diff = (ours.clamp(-1, 1) - theirs).abs().max().item()
    _float64(run)
    ours64 = sample_ddim(run.denoiser, x_T.double(), ts, clipped_eps=not clip)
    sched = diffusers.DDIMScheduler.from_pretrained(folder / "scheduler")
    sched.alphas_cumprod, sched.final_alpha_cumprod = run.denoiser.schedule.alpha_bar.clone(), torch.tensor(1.0).double()
    theirs64 = _step_loop(sched, run.net.unet, x_T.double(), steps, eta=0.0)
    return {"diff": diff, "diff64": (ours64 - theirs64).abs().max().item(),
            "floor": (ours.clamp(-1, 1).double() - ours64.clamp(-1, 1)).abs().max().item(),
            "theirs_floor": (theirs.double() - ours64.clamp(-1, 1)).abs().max().item(), "scale": ours.std().item()}


@torch.no_grad()
def _step_loop(sched, unet, x: torch.Tensor, steps: int, noise=None, **kw) -> torch.Tensor:
    """A scheduler's own loop: set_timesteps, then step after step on the UNet's output."""
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(unet(x, t).sample, t, x, generator=noise, **kw).prev_sample
    return x


def dpm_against_scheduler(tmp: Path, num: int = 4, steps: int = 20, trained: int = 0) -> dict:
    """Our dpmpp-2m against DPMSolverMultistepScheduler (dpmsolver++, order 2, trailing spacing,
    final sigma 0) on the same grid: our trailing grid is diffusers' trailing spacing."""
    import diffusers

    from denoiselab.samplers import SAMPLERS, time_grid

    folder = unet_folder(tmp / f"dpm-{trained}", "DPMSolverMultistepScheduler", trained=trained, timestep_spacing="trailing",
                         final_sigmas_type="zero", lower_order_final=True, algorithm_type="dpmsolver++")
    run = _load(folder)
    x_T = torch.randn((num, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    ts = time_grid(run.denoiser, "trailing", steps)
    ours = SAMPLERS["dpmpp-2m"](run.denoiser, x_T, ts)
    sched = diffusers.DPMSolverMultistepScheduler.from_pretrained(folder / "scheduler")
    theirs = _step_loop(sched, run.net.unet, x_T, steps)
    _float64(run)
    ours64 = SAMPLERS["dpmpp-2m"](run.denoiser, x_T.double(), ts)
    # diffusers in float64 with the exact sigmas, as benchmarks/dpm_solver_diffusers.py runs it.
    from dpm_solver_diffusers import diffusers_sample

    theirs64 = diffusers_sample(run, x_T.double(), [int(t) for t in ts], order=2)
    return {"diff": (ours - theirs).abs().max().item(), "diff64": (ours64 - theirs64).abs().max().item(),
            "floor": (ours.double() - ours64).abs().max().item(), "theirs_floor": (theirs.double() - ours64).abs().max().item(),
            "scale": ours.std().item()}


# -- ddpm: stochastic, the same noise on both sides ------------------------------------------

# Dynamic thresholding as IF's scheduler sets it (Saharia et al. 2022, sec. 2.3).
THRESHOLDING = dict(thresholding=True, dynamic_thresholding_ratio=0.995, sample_max_value=1.5)


def ddpm_against_scheduler(tmp: Path, variance: str, num: int = 4, steps: int = 1000) -> dict:
    """Our ddpm against DDPMScheduler.step with the same noise: both draw each step's noise from
    one torch.Generator in the same order (ours: the generator handed in as ``noise``). ``variance``
    fixed_small, learned_range, or thresholding (fixed_small under dynamic thresholding)."""
    from denoiselab.samplers import SAMPLERS, time_grid
    if variance == "learned_range":
        folder, prompts = if_folder(tmp / "ddpm-if")
        run_dir = tmp / "ddpm-if-run"
        code, err = cli("import", "diffusers", folder, "--prompts", prompts, "--out", run_dir)
        assert code == 0, err
        cond = torch.full((num,), PROMPTS.index("a man wearing a hat"))
    else:
        extra = THRESHOLDING if variance == "thresholding" else {}
        folder = run_dir = unet_folder(tmp / f"ddpm-{variance}", "DDPMScheduler", **extra)
        cond = None
    run = _load(run_dir)
    x_T = torch.randn((num, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    ours, theirs = _ddpm_pair(run, folder / "scheduler", cond, x_T, steps)
    _float64(run)
    ours64, theirs64 = _ddpm_pair(run, folder / "scheduler", cond, x_T.double(), steps)
    # The float64 reference for the floors: our sampler in float64 on the float32 run's own noise draws.
    ref = SAMPLERS["ddpm"](run.denoiser, x_T.double(), time_grid(run.denoiser, "leading", steps),
                           noise=Float32Draws(3, num), cond=cond)
    return {"diff": (ours - theirs).abs().max().item(), "diff64": (ours64 - theirs64).abs().max().item(),
            "floor": (ours.double() - ref).abs().max().item(), "theirs_floor": (theirs.double() - ref).abs().max().item(),
            "scale": ours.std().item()}


class Float32Draws(SampleNoise):
    """A torch.Generator's float32 draws in the order the samplers ask for them, cast to the
    asked dtype: a float64 run on exactly the noise a float32 run gets."""

    def __init__(self, seed: int, num: int):
        super().__init__(seed, num)
        self.generator = torch.Generator().manual_seed(seed)

    def randn(self, stream: int, sample_shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
        return torch.randn((self.num, *sample_shape), generator=self.generator).to(dtype)


def _ddpm_pair(run, sched_dir: Path, cond, x_T: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ours, DDPMScheduler's) from x_T with the same per-step noise; in float64 the scheduler is
    handed our float64 betas and alpha_bar (it keeps float32 tables of its own)."""
    import diffusers

    from denoiselab.samplers import SAMPLERS, time_grid

    ts = time_grid(run.denoiser, "leading", steps)
    ours = SAMPLERS["ddpm"](run.denoiser, x_T, ts, noise=torch.Generator().manual_seed(3), cond=cond)
    sched = diffusers.DDPMScheduler.from_pretrained(sched_dir)
    if x_T.dtype == torch.float64:
        s = run.denoiser.schedule
        sched.betas, sched.alphas, sched.alphas_cumprod = s.betas.clone(), 1 - s.betas, s.alpha_bar.clone()
        sched.one = torch.tensor(1.0, dtype=torch.float64)

    def unet(x, t):  # diffusers' UNet itself, handed the prompt's embeddings as IF's pipeline does
        if cond is None:
            return run.net.unet(x, t)
        return run.net.unet(x, t, encoder_hidden_states=run.net.embeddings(cond, len(x)).to(x.dtype))

    return ours, _step_loop(sched, unet, x_T, steps, noise=torch.Generator().manual_seed(3))


# -- an IF-shaped model: guidance and the CS180 part A edits ---------------------------------

def cfg_at_one(tmp: Path) -> dict:
    """Classifier-free guidance at w = 1 against the conditional model: one call on the same
    (x_t, t, prompt), and whole ddpm samples through the CLI (--guidance 1 against no guidance)."""
    from denoiselab.guidance import ClassifierFreeGuidance

    folder, prompts = if_folder(tmp / "cfg")
    run_dir = tmp / "cfg-run"
    code, err = cli("import", "diffusers", folder, "--prompts", prompts, "--out", run_dir)
    assert code == 0, err
    run = _load(run_dir)
    x = torch.randn((3, 3, 8, 8), generator=torch.Generator().manual_seed(4))
    cond, uncond = run.net.prompt_condition(["a man wearing a hat"], 3)
    with torch.no_grad():
        guided = ClassifierFreeGuidance(run.denoiser, 1.0, uncond)(x, torch.tensor(500.0), cond)
        plain = run.denoiser(x, torch.tensor(500.0), cond)
    one = max((a - b).abs().max().item() for a, b in zip(guided, plain))
    outs = []
    for extra in ([], ["--guidance", "1"]):
        out = tmp / f"cfg{len(extra)}.npy"
        code, err = cli("sample", run_dir, "--num", 2, "--steps", 20, "--prompt", "a man wearing a hat", *extra,
                        "--out", out)
        assert code == 0, err
        outs.append(np.load(out))
    return {"call": one, "samples": float(np.abs(outs[0] - outs[1]).max())}


def part_a_commands(run_dir: Path, tmp: Path) -> dict[str, list]:
    """The CS180 part A sequence, one command each (docs/cs180-part-a.md), at toy sizes."""
    img = tmp / "input.npy"
    np.save(img, np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32))
    p, q = "an oil painting of a snowy mountain village", "a man wearing a hat"
    fast = ["--steps", 10]
    return {
        "1.1-1.4 denoise (forward, one step, iterative)": ["edit", "denoise", run_dir, "--input", img,
                                                           "--prompt", p, *fast],
        "1.5 sample": ["sample", run_dir, "--num", 2, "--prompt", p, "--steps", 10],
        "1.6 CFG": ["sample", run_dir, "--num", 2, "--prompt", p, "--guidance", 7, "--steps", 10],
        "1.7 SDEdit": ["edit", "sdedit", run_dir, "--input", img, "--prompt", p, "--guidance", 7,
                       "--strength", 0.3, 0.6, *fast],
        "1.7.2 inpainting": ["edit", "inpaint", run_dir, "--input", img, "--prompt", p, "--mask-box", "2,2,6,6",
                             "--jump-count", 1, *fast],
        "1.7.3 text image-to-image": ["edit", "sdedit", run_dir, "--input", img, "--prompt", q, "--guidance", 7,
                                      "--strength", 0.5, *fast],
        "1.8 visual anagram": ["edit", "anagram", run_dir, "--prompt", p, "--view-prompt", q, "--num", 1, *fast],
        "1.9 hybrid image": ["edit", "hybrid", run_dir, "--low-prompt", p, "--high-prompt", q, "--num", 1, *fast],
    }


def part_a(tmp: Path) -> dict:
    """Every part A command on an imported IF-shaped model: {part: (exit code, seconds)}."""
    folder, prompts = if_folder(tmp / "parta")
    run_dir = tmp / "parta-run"
    code, err = cli("import", "diffusers", folder, "--prompts", prompts, "--out", run_dir)
    assert code == 0, err
    out = {}
    for i, (part, argv) in enumerate(part_a_commands(run_dir, tmp).items()):
        t0 = time.perf_counter()
        code, err = cli(*argv, "--out", tmp / f"part{i}.png")
        out[part] = (code, time.perf_counter() - t0, err.strip().splitlines()[-1:] if code else [])
    return out


# -- export and safety -------------------------------------------------------------------------

def export_roundtrip(tmp: Path) -> dict:
    """A diffusers-unet2d run exported, loaded by DDPMPipeline.from_pretrained offline (the Hub
    switched off), its UNet's output against ours on the same input."""
    import os

    import diffusers

    run_dir = tmp / "export-run"
    code, err = cli("import", "diffusers", unet_folder(tmp / "export-src"), "--out", run_dir)
    assert code == 0, err
    code, err = cli("export", "diffusers", run_dir, "--out", tmp / "exported")
    assert code == 0, err
    os.environ["HF_HUB_OFFLINE"] = "1"
    pipe = diffusers.DDPMPipeline.from_pretrained(tmp / "exported", local_files_only=True)
    run = _load(run_dir)
    x = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(5))
    t = torch.tensor([999.0, 10.0])
    with torch.no_grad():
        diff = (pipe.unet(x, t).sample - run.net(x, t)).abs().max().item()
    same_sched = torch.allclose(pipe.scheduler.alphas_cumprod.double(), run.denoiser.schedule.alpha_bar, rtol=1e-5)
    return {"diff": diff, "schedule": same_sched}


def pickle_refused(tmp: Path) -> dict:
    """A pipeline saved with pickled weights (.bin), imported without --allow-pickle."""
    folder = unet_folder(tmp / "pickled", safe=False)
    out = tmp / "pickled-run"
    code, err = cli("import", "diffusers", folder, "--out", out)
    written = out.exists() or any(p.name.startswith(".pickled-run") for p in tmp.iterdir())
    return {"code": code, "lines": len(err.strip().splitlines()), "written": written, "message": err.strip()}


# -- the table -----------------------------------------------------------------------------------

def _e(v: float) -> str:
    return "n/a" if v != v else f"{v:.1e}"


# Steps of train_toy for the rows on a trained UNet: enough to leave the random network's chaos.
TRAINED = 600


def _trained(steps: int) -> str:
    return f", UNet trained {steps} steps" if steps else ""


def measure(tmp: Path, ddpm_steps: int = 1000) -> list[list]:
    rows = []
    for clip, trained in ((False, 0), (True, 0), (True, TRAINED)):
        r = ddim_against_pipeline(tmp, clip, trained=trained)
        rows.append([f"ddim 50 vs DDIMPipeline, clip_sample={clip}{_trained(trained)}", "<= 1e-4", _e(r["diff"]),
                     _e(r["diff64"]), _e(r["floor"]), _e(r["theirs_floor"]), f"{r['scale']:.3g}"])
    for variance in ("fixed_small", "learned_range", "thresholding"):
        r = ddpm_against_scheduler(tmp, variance, steps=ddpm_steps)
        rows.append([f"ddpm {ddpm_steps} vs DDPMScheduler.step, {variance}", "<= 1e-4", _e(r["diff"]),
                     _e(r["diff64"]), _e(r["floor"]), _e(r["theirs_floor"]), f"{r['scale']:.3g}"])
    for trained in (0, TRAINED):
        r = dpm_against_scheduler(tmp, trained=trained)
        rows.append([f"dpmpp-2m 20 vs DPMSolverMultistepScheduler (trailing){_trained(trained)}", "<= 1e-4",
                     _e(r["diff"]), _e(r["diff64"]), _e(r["floor"]), _e(r["theirs_floor"]), f"{r['scale']:.3g}"])
    r = latent_against_diffusers(tmp)
    rows.append(["SD-shaped latent model (AutoencoderKL + UNet2DConditionModel): ddim 50 + decode vs diffusers' loop",
                 "<= 1e-4", _e(r["diff"]), "n/a", "n/a", "n/a", f"{r['scale']:.3g}"])
    r = cfg_at_one(tmp)
    rows.append(["IF-shaped model: CFG w = 1 vs conditional (one call; samples)", "exactly equal",
                 f"{r['call']:.1e}; {r['samples']:.1e}", "n/a", "n/a", "n/a", ""])
    parts = part_a(tmp)
    ok = sum(code == 0 for code, _, _ in parts.values())
    rows.append(["IF-shaped model: CS180 part A commands", "all run", f"{ok} of {len(parts)} exit 0", "n/a", "n/a", "n/a", ""])
    r = export_roundtrip(tmp)
    rows.append(["exported run: DDPMPipeline.from_pretrained offline, UNet output", "<= 1e-6",
                 f"{r['diff']:.1e} (schedule equal: {r['schedule']})", "n/a", "n/a", "n/a", ""])
    r = pickle_refused(tmp)
    rows.append(["pickled weights without --allow-pickle", "refused, 1 line, exit 2, nothing written",
                 f"exit {r['code']}, {r['lines']} line, written: {r['written']}", "n/a", "n/a", "n/a", ""])
    return rows


HEADER = ["what", "target", "float32 max abs diff", "float64 max abs diff", "ours: float32 vs float64",
          "diffusers: float32 vs float64", "sample std"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ddpm-steps", type=int, default=1000, help="ddpm rows: steps (DDPMPipeline's default 1000)")
    add_write_flag(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        import diffusers
    except ImportError:
        sys.exit("diffusers is not installed: pip install -e .[diffusers]")
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    print(markdown_table(HEADER, []))
    with tempfile.TemporaryDirectory() as d:
        rows = measure(Path(d), args.ddpm_steps)
    for row in rows:
        print(markdown_row(row))
    summary = f"diffusers {diffusers.__version__}, torch {torch.__version__}, float32 on the CPU, one thread"
    print(f"\n{summary}")
    if args.write_results:
        write_table("interop", "interop", f"{markdown_table(HEADER, rows)}\n\n{summary}")


if __name__ == "__main__":
    main()
