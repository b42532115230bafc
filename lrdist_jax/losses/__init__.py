"""Losses and regularisers: task loss, R3F (arXiv 2008.03156) and EWC (arXiv 1612.00796)."""

from lrdist_jax.losses._classification import task_loss
from lrdist_jax.losses._ewc import (
    EWCState,
    ewc_penalty,
    fisher_diagonal,
    load_ewc_state,
    make_ewc_state,
    save_ewc_state,
)
from lrdist_jax.losses._r3f import NOISE_KINDS, r3f_loss, sample_noise, symmetric_kl

__all__ = [
    "NOISE_KINDS",
    "EWCState",
    "ewc_penalty",
    "fisher_diagonal",
    "load_ewc_state",
    "make_ewc_state",
    "r3f_loss",
    "sample_noise",
    "save_ewc_state",
    "symmetric_kl",
    "task_loss",
]
