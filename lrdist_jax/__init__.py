"""lrdist-jax: layer-group learning-rate distributions and fine-tuning stabilisers for JAX.

Reimplements Kenneweg et al., "Intelligent Learning Rate Distribution to reduce Catastrophic
Forgetting in Transformers" (arXiv 2404.01317), component-wise gradient norm clipping (Yang & Ma,
arXiv 2210.10325) and R3F/R4F (Aghajanyan et al., arXiv 2008.03156) as Optax transforms and loss
functions, with a sequential fine-tuning engine and a Hyperband + Gaussian-process search.

The flat namespace holds the building blocks a Flax project imports; the engine lives in
``lrdist_jax.train``, the search in ``lrdist_jax.search``, data in ``lrdist_jax.data``.
"""

from lrdist_jax.host import tune_host_allocator

tune_host_allocator()  # before JAX starts its CPU threads; LRDIST_JAX_MALLOC_TUNING=0 disables

from lrdist_jax.distributions import (
    PAPER_COMBINED,
    Distribution,
    load_distribution,
    map_distribution,
    resolve_distribution,
    save_distribution,
)
from lrdist_jax.losses import (
    EWCState,
    ewc_penalty,
    fisher_diagonal,
    make_ewc_state,
    r3f_loss,
    sample_noise,
    symmetric_kl,
    task_loss,
)
from lrdist_jax.models import (
    BertClassifier,
    BertConfig,
    BertModel,
    SpectralDense,
    TaskHead,
    load_hf_bert,
    load_tokenizer,
)
from lrdist_jax.paths import label_params, param_paths, path_str, tree_map_with_path_str
from lrdist_jax.schedules import phase_lengths, schedule_factor
from lrdist_jax.slots import bert_lr_slots, bert_slot_rules, slot_layers, slot_names
from lrdist_jax.transforms import (
    ClipByComponentNormState,
    GroupLrState,
    clip_by_component_norm,
    component_norms,
    get_group_lrs,
    layerwise_adam,
    partitioned_adam,
    scale_by_group_lr,
    set_group_lrs,
    start_phase,
)

__version__ = "0.1.0"

__all__ = [
    "PAPER_COMBINED",
    "BertClassifier",
    "BertConfig",
    "BertModel",
    "ClipByComponentNormState",
    "Distribution",
    "EWCState",
    "GroupLrState",
    "SpectralDense",
    "TaskHead",
    "bert_lr_slots",
    "bert_slot_rules",
    "clip_by_component_norm",
    "component_norms",
    "ewc_penalty",
    "fisher_diagonal",
    "get_group_lrs",
    "label_params",
    "layerwise_adam",
    "load_distribution",
    "load_hf_bert",
    "load_tokenizer",
    "make_ewc_state",
    "map_distribution",
    "param_paths",
    "partitioned_adam",
    "path_str",
    "phase_lengths",
    "r3f_loss",
    "resolve_distribution",
    "sample_noise",
    "save_distribution",
    "scale_by_group_lr",
    "schedule_factor",
    "set_group_lrs",
    "slot_layers",
    "slot_names",
    "start_phase",
    "symmetric_kl",
    "task_loss",
    "tree_map_with_path_str",
]
