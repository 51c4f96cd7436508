"""denoiselab: a laboratory for denoising diffusion and flow models."""

__version__ = "0.1.0"
