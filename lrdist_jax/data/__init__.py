"""GLUE data: task registry and loaders, tokenisation and batching, distribution shifts."""

from lrdist_jax.data.batching import epoch_permutation, iterate_batches, num_batches, tokenize
from lrdist_jax.data.glue import (
    GLUE_TASKS,
    VENDORED_TASKS,
    DataUnavailableError,
    Examples,
    TaskSpec,
    get_task,
    load_glue,
)
from lrdist_jax.data.shifts import (
    ClusterSplit,
    authors_lengths,
    cluster_split,
    length_split,
    length_split_indices,
)

__all__ = [
    "GLUE_TASKS",
    "VENDORED_TASKS",
    "ClusterSplit",
    "DataUnavailableError",
    "Examples",
    "TaskSpec",
    "authors_lengths",
    "cluster_split",
    "epoch_permutation",
    "get_task",
    "iterate_batches",
    "length_split",
    "length_split_indices",
    "load_glue",
    "num_batches",
    "tokenize",
]
