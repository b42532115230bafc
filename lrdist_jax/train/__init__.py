"""Sequential fine-tuning: configuration, jitted steps and the protocol engine."""

from lrdist_jax.train.config import PRESETS, SHIFTS, RunConfig, make_config
from lrdist_jax.train.sequential import Experiment, Phase, run_sequential
from lrdist_jax.train.step import (
    LossConfig,
    StepFns,
    TrainState,
    TrainStep,
    abstract_state,
    make_step_fns,
)

__all__ = [
    "PRESETS",
    "SHIFTS",
    "Experiment",
    "LossConfig",
    "Phase",
    "RunConfig",
    "StepFns",
    "TrainState",
    "TrainStep",
    "abstract_state",
    "make_config",
    "make_step_fns",
    "run_sequential",
]
