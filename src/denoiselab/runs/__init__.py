"""Runs: build the parts of a run from its config, load a run, plan its sampling, resume it,
draw its pictures, condition and guide it. The layer between the components and the CLI."""

from .build import (
           FLOW_TIME_SCALE,
           build_data,
           build_denoiser,
           build_net,
           build_objective,
           build_schedule,
           data_info,
           fit_data_moments,
           make_trainer,
           moments_to_store,
           open_dataset,
           preview_hook,
           resolve_config,
)
from .conditions import (
           check_classifier,
           class_labels,
           classifier_accuracy_by_t,
           guided_run,
           is_text,
           load_classifier,
           num_classes,
           text_condition,
)
from .fit import fit_run
from .load import CONFIG, LoadedRun, load_run, read_config, require_sampler
from .pictures import classifier_pictures, image_pictures, reverse_frames, reverse_gif, run_pictures
from .plan import LEVELS, START_MODES, SamplingPlan, eta_text, measured_levels, sampling_plan, start_moments
from .resume import RESUME_FIXED, RESUME_FREE, config_diff, resolve_train_config
from .validate import validate_config

__all__ = ["CONFIG", "LEVELS", "FLOW_TIME_SCALE", "RESUME_FIXED", "RESUME_FREE", "START_MODES", "LoadedRun", "SamplingPlan", "measured_levels",
           "build_data", "build_denoiser", "build_net", "build_objective", "build_schedule", "check_classifier",
           "class_labels", "classifier_accuracy_by_t", "classifier_pictures", "config_diff", "data_info", "eta_text",
           "fit_data_moments", "fit_run", "guided_run", "image_pictures", "is_text", "load_classifier", "load_run",
           "make_trainer", "moments_to_store", "num_classes", "open_dataset", "preview_hook", "read_config",
           "require_sampler", "resolve_config", "resolve_train_config", "reverse_frames", "reverse_gif",
           "run_pictures", "sampling_plan", "start_moments", "text_condition", "validate_config"]
