"""Editing with any trained denoiser (CS180 project 5, part A): denoising, SDEdit, RePaint
inpainting, visual anagrams, hybrid images, DDIM inversion, reconstruction and interpolation.

Built only from the process scales, the denoiser, the samplers and the guidance wrappers, so
every sampler edits and every process (eps, x0, v, flow) is edited. See ``edits`` for the
edits, ``core`` for noise levels and sampler steps, ``views`` and ``composite`` for anagrams
and hybrids.
"""

from .composite import AnagramDenoiser, HybridDenoiser, gaussian_blur, highpass, hybrid_filter, lowpass
from .core import EditResult, reference_sigma, time_at_level
from .edits import (
    DENOISE_LEVELS,
    REPAINT_JUMP_COUNT,
    SDEDIT_STRENGTHS,
    anagram,
    denoise,
    hybrid,
    inpaint,
    repaint_schedule,
    sdedit,
)
from .inversion import interpolate, invert, reconstruct, slerp
from .views import USER_VIEWS, VIEWS, View, get_view

EDITS = {
    "denoise": denoise,
    "sdedit": sdedit,
    "inpaint": inpaint,
    "anagram": anagram,
    "hybrid": hybrid,
    "invert": invert,
    "reconstruct": reconstruct,
    "interpolate": interpolate,
}

__all__ = ["AnagramDenoiser", "DENOISE_LEVELS", "EDITS", "EditResult", "HybridDenoiser", "REPAINT_JUMP_COUNT",
           "SDEDIT_STRENGTHS", "USER_VIEWS", "VIEWS", "View", "anagram", "denoise", "gaussian_blur", "get_view",
           "highpass", "hybrid", "hybrid_filter", "inpaint", "interpolate", "invert", "lowpass", "reconstruct", "reference_sigma",
           "repaint_schedule", "sdedit", "slerp", "time_at_level"]
