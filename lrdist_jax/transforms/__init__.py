"""Optax gradient transformations: layer-group learning rates and component-wise clipping."""

from lrdist_jax.transforms._clipping import (
    ClipByComponentNormState,
    clip_by_component_norm,
    component_norms,
)
from lrdist_jax.transforms._group_lr import (
    GroupLrState,
    get_group_lrs,
    layerwise_adam,
    partitioned_adam,
    scale_by_group_lr,
    set_group_lrs,
    start_phase,
)

__all__ = [
    "ClipByComponentNormState",
    "GroupLrState",
    "clip_by_component_norm",
    "component_norms",
    "get_group_lrs",
    "layerwise_adam",
    "partitioned_adam",
    "scale_by_group_lr",
    "set_group_lrs",
    "start_phase",
]
