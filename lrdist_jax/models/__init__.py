"""Flax BERT with task heads, and Hugging Face checkpoint loading."""

from lrdist_jax.models.bert import BertClassifier, BertModel, BertOutput
from lrdist_jax.models.config import BertConfig, TaskHead
from lrdist_jax.models.dropout import Dropout
from lrdist_jax.models.hf_io import (
    OFFLINE_MODELS,
    load_hf_bert,
    load_tokenizer,
    resolve_model_dir,
    torch_state_to_flax,
)
from lrdist_jax.models.spectral import SPECTRAL_COLLECTION, SpectralDense

__all__ = [
    "OFFLINE_MODELS",
    "SPECTRAL_COLLECTION",
    "BertClassifier",
    "BertConfig",
    "BertModel",
    "BertOutput",
    "Dropout",
    "SpectralDense",
    "TaskHead",
    "load_hf_bert",
    "load_tokenizer",
    "resolve_model_dir",
    "torch_state_to_flax",
]
