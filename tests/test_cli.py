"""The command line contract: train, sample, evaluate, plot, animate, and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from denoiselab.cli import main

TINY = ["--set", "data.num=4096", "--set", "model.width=32", "--set", "model.depth=2", "--set", "steps=40",
        "--set", "batch_size=64", "--set", "log_every=10"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--preset", "swiss-roll", "--out", str(out), "--quiet", *TINY]) == 0
    return out


def test_train_writes_the_run_directory(run_dir):
    for name in ("config.json", "checkpoint.safetensors", "metrics.jsonl", "loss.png", "forward.png",
                 "samples.png", "reverse.gif"):
        assert (run_dir / name).stat().st_size > 0, name
    assert json.loads((run_dir / "config.json").read_text())["train"]["steps"] == 40


def test_sample_npy_and_png(run_dir, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert main(["sample", str(run_dir), "--num", "100", "--sampler", "ddim", "--steps", "10", "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (100, 2) and x.dtype == np.float32
    assert "NFE 10" in capsys.readouterr().err
    assert main(["sample", str(run_dir), "--num", "100", "--steps", "10", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    # Same seed, same samples; the first samples do not depend on how many are drawn (up to the
    # last-bit differences of batch-size-dependent matrix kernels).
    assert main(["sample", str(run_dir), "--num", "10", "--sampler", "ddim", "--steps", "10", "--out", str(tmp_path / "t.npy")]) == 0
    assert np.allclose(np.load(tmp_path / "t.npy"), x[:10], rtol=1e-4, atol=1e-4)


def test_evaluate_prints_chamfer_with_floor(run_dir, tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32))
    assert main(["evaluate", str(tmp_path / "s.npy"), "--ref", "swiss-roll", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["metrics"]["chamfer"]["value"] > res["metrics"]["chamfer"]["floor"] > 0
    assert main(["evaluate", str(run_dir), "--ref", "swiss-roll", "--num", "128", "--sampler", "ddim", "--steps", "5"]) == 0
    assert "chamfer" in capsys.readouterr().out


def test_plots_and_animation(run_dir, tmp_path):
    assert main(["plot", "schedules", "--out", str(tmp_path / "sched.png")]) == 0
    assert main(["plot", "forward", "moons", "--out", str(tmp_path / "fwd.png")]) == 0
    assert main(["plot", "loss", str(run_dir), "--out", str(tmp_path / "loss.png")]) == 0
    assert main(["animate", str(run_dir), "--out", str(tmp_path / "a.gif"), "--steps", "10", "--num", "64"]) == 0
    for f in ("sched.png", "fwd.png", "loss.png", "a.gif"):
        assert (tmp_path / f).stat().st_size > 1000


def test_resume_continues_a_run(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--out", str(copy), "--resume", "--set", "steps=50", "--quiet", "--no-pictures"]) == 0
    rows = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 50


@pytest.mark.parametrize("argv,needle", [
    (["train", "--preset", "nope", "--out", "{tmp}/x"], "unknown preset"),
    (["train", "--preset", "swiss-roll", "--out", "{tmp}/x", "--set", "data.name=spiral"], "unknown data set"),
    (["train", "--preset", "swiss-roll", "--out", "{tmp}/x", "--set", "diffusion.beta_end=1.5"], "inside (0, 1)"),
    (["train", "--preset", "swiss-roll", "--out", "{tmp}/x", "--set", "bogus=1"], "unknown setting"),
    (["train", "--preset", "swiss-roll", "--out", "{tmp}/x", "--set", "diffusion.t_sampling=range",
      "--set", "diffusion.t_sigma_min=500", "--set", "diffusion.t_sigma_max=600"], "widen diffusion.t_sigma_min"),
    (["train", "--preset", "swiss-roll", "--out", "{tmp}/x", "--set", "diffusion.t_sampling=range",
      "--set", "diffusion.t_sigma_min=2", "--set", "diffusion.t_sigma_max=1"], "make t_sigma_min the smaller"),
    (["train", "--preset", "swiss-roll", "--out", "{tmp}/x", "--set", "diffusion.t_full=1.5"], "inside [0, 1]"),
    (["sample", "{tmp}/missing", "--out", "{tmp}/a.npy"], "run directory not found"),
    (["sample", "{tmp}", "--out", "{tmp}/a.npy"], "no config.json"),
    (["evaluate", "{tmp}/nothing.npy", "--ref", "swiss-roll"], "neither a run directory"),
    (["evaluate", "{tmp}/bad.npy", "--ref", "swiss-roll"], "shape"),
    (["plot", "loss", "{tmp}"], "not found"),
    (["train", "--preset", "mnist", "--out", "{tmp}/x", "--set", "sample.eta_low=-1"], "must be >= 0"),
])
def test_bad_input_gives_one_clear_line(tmp_path, capsys, argv, needle):
    np.save(tmp_path / "bad.npy", np.zeros((10, 3), np.float32))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("denoiselab: error:") and needle in err[0], err
    assert not (tmp_path / "x").exists()  # nothing half-made to block the corrected command


def test_eta_below_a_noise_level_from_the_command_line(run_dir, tmp_path, capsys):
    base = ["sample", str(run_dir), "--num", "50", "--sampler", "dpmpp-2m-sde", "--steps", "8", "--eta", "2"]
    outs = {}
    for name, extra in (("plain", []), ("switch", ["--eta-low", "8", "--eta-switch", "1000"]),
                        ("eight", ["--eta", "8"])):
        assert main(base[:-2] + ["--eta", "2"] + extra + ["--out", str(tmp_path / f"{name}.npy")]) == 0
        outs[name] = np.load(tmp_path / f"{name}.npy")
    log = capsys.readouterr().err
    assert "eta 2, 8 at sigma <= 1000" in log
    # A switch above every noise level gives every step eta_low.
    np.testing.assert_array_equal(outs["switch"], outs["eight"])
    assert not np.array_equal(outs["switch"], outs["plain"])
    assert main(base + ["--eta-low", "-1", "--eta-switch", "1", "--out", str(tmp_path / "x.npy")]) == 2
    assert "--eta-low" in capsys.readouterr().err


def test_corrupt_checkpoint_is_reported(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    # copytree copies the public checkpoint apart from the kept one it links to: garbage in the
    # public file alone leaves the kept one to sample from.
    (copy / "checkpoint.safetensors").write_bytes(b"garbage" * 10)
    assert main(["sample", str(copy), "--out", str(tmp_path / "a.npy"), "--steps", "5", "--num", "8"]) == 0
    for p in (copy / "checkpoints").iterdir():
        p.write_bytes(b"garbage" * 10)
    assert main(["sample", str(copy), "--out", str(tmp_path / "a.npy"), "--steps", "5"]) == 2
    assert "every checkpoint" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(run_dir, capsys):
    assert main(["train", "--preset", "swiss-roll", "--out", str(run_dir)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "denoiselab.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout and "sample" in r.stdout


def test_runs_store_their_datas_moments_and_deterministic_samplers_start_from_them(run_dir, tmp_path, capsys):
    import torch

    from denoiselab import runs
    from denoiselab.data import build_dataset
    from denoiselab.samplers.start import fit_moments

    run = runs.load_run(run_dir)
    assert run.moments is not None  # stored in the checkpoint at training
    cfg = run.config
    fitted = fit_moments(build_dataset(cfg.data.name, cfg.data.options, cfg.data.num, cfg.train.seed).x)
    assert torch.allclose(run.moments.mean, fitted.mean, atol=1e-5)
    assert torch.allclose(run.moments.var, fitted.var, rtol=1e-5)
    assert runs.sampling_plan(run, sampler="dpmpp-2m").start_moments() is run.moments
    assert runs.sampling_plan(run, sampler="dpmpp-2m-sde").start_moments() is None  # stochastic: N(0, I)
    assert runs.sampling_plan(run, sampler="dpmpp-2m", start="gaussian").start_moments() is None
    assert runs.sampling_plan(run, sampler="ddpm", start="moments").start_moments() is run.moments
    with pytest.raises(Exception, match="unknown start"):
        runs.sampling_plan(run, start="uniform")
    # The flag: the same noise, mapped, so the two starts differ; and the log says which.
    outs = {}
    for start in ("moments", "gaussian"):
        out = tmp_path / f"{start}.npy"
        assert main(["sample", str(run_dir), "--num", "50", "--sampler", "dpmpp-2m", "--steps", "8", "--grid", "logsnr",
                     "--sigma-max", "3", "--start", start, "--out", str(out)]) == 0
        outs[start] = np.load(out)
        err = capsys.readouterr().err
        assert ("starting from the data's moments" in err) == (start == "moments")
    assert not np.allclose(outs["moments"], outs["gaussian"])
    with pytest.raises(SystemExit) as e:  # argparse's usage error: one line, exit code 2
        main(["sample", str(run_dir), "--num", "5", "--start", "middle", "--out", str(tmp_path / "x.npy")])
    assert e.value.code == 2 and "invalid choice: 'middle'" in capsys.readouterr().err


def test_runs_trained_before_moments_were_stored_fit_them_from_their_data(run_dir):
    from denoiselab import runs

    run = runs.load_run(run_dir)
    stored = run.moments
    run.moments = None  # as a checkpoint written before they were stored
    again = run.data_moments()
    assert again is not None and np.allclose(again.mean.numpy(), stored.mean.numpy(), atol=1e-5)
