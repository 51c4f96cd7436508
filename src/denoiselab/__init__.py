"""denoiselab: a laboratory for denoising diffusion and flow models.

    import denoiselab
    run = denoiselab.train("swiss-roll", out="runs/swiss", steps=300)   # or denoiselab.load("runs/swiss")
    x = run.sample(512, seed=0)                                          # the data's frame
    run.save_grid(x, "samples.png")

The building blocks (schedules, process, denoiser, samplers, guidance, editing) are plain modules
of this package; ``denoiselab.runs`` builds and loads whole runs.
"""

__version__ = "0.1.0"

__all__ = ["Run", "__version__", "load", "train"]


def load(path, device=None):
    """A trained run from its folder: ``.sample(n)``, ``.save_grid(x, path)``, ``.config``."""
    from .runs.api import load as load_run

    return load_run(path, device=device)


def train(preset: str = "swiss-roll", out="runs/run", **kwargs):
    """Train a preset into ``out`` (as `denoiselab train`); keyword settings override the preset
    (``steps=300``, ``lr=1e-3``, ``seed=1``). Returns the trained :class:`Run`."""
    from .runs.api import train as train_run

    return train_run(preset, out, **kwargs)


def __getattr__(name: str):
    # `denoiselab.Run` without importing torch for `import denoiselab` alone.
    if name == "Run":
        from .runs.api import Run

        return Run
    raise AttributeError(f"module 'denoiselab' has no attribute {name!r}")
