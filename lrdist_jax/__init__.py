"""lrdist-jax: layer-group learning-rate distributions and fine-tuning stabilisers for JAX.

Reimplements Kenneweg et al., "Intelligent Learning Rate Distribution to reduce Catastrophic
Forgetting in Transformers" (arXiv 2404.01317), component-wise gradient norm clipping (Yang & Ma,
arXiv 2210.10325) and R3F/R4F (Aghajanyan et al., arXiv 2008.03156) as Optax transforms and loss
functions, with a sequential fine-tuning engine and a Hyperband + Gaussian-process search.
"""

from lrdist_jax.models import (
    BertClassifier,
    BertConfig,
    BertModel,
    TaskHead,
    load_hf_bert,
    load_tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "BertClassifier",
    "BertConfig",
    "BertModel",
    "TaskHead",
    "load_hf_bert",
    "load_tokenizer",
]
