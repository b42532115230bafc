"""BERT configuration, read from and written to Hugging Face ``config.json`` files."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from lrdist_jax.models.dropout import MASK_HASHES

__all__ = ["BertConfig", "TaskHead"]

_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape and numerics of a BERT encoder (the Hugging Face ``BertConfig`` fields we use).

    ``hidden_act="gelu"`` is the exact erf GELU, as in PyTorch and Hugging Face; the tanh
    approximation is ``"gelu_new"`` / ``"gelu_pytorch_tanh"``. ``dropout_hash`` (ours, not a
    Hugging Face field) picks how dropout masks are drawn: ``"lowbias32"`` (fast, default) or
    ``"threefry"`` (``flax.linen.Dropout``'s masks bit for bit); see
    :mod:`lrdist_jax.models.dropout`.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    dropout_hash: str = "lowbias32"

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}."
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not supported; use one of {_ACTIVATIONS}."
            )
        if self.dropout_hash not in MASK_HASHES:
            raise ValueError(
                f"dropout_hash={self.dropout_hash!r} is not supported; use one of {MASK_HASHES}."
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> BertConfig:
        """Builds a config from a Hugging Face config dict, ignoring fields we do not use."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(
                f"{source}: model_type={model_type!r} is not a BERT checkpoint "
                "(expected model_type 'bert')."
            )
        required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{source}: missing BERT config fields {missing}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e}).") from e
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "bert", **dataclasses.asdict(self)}

    @classmethod
    def tiny(cls, **overrides) -> BertConfig:
        """A 2-layer, hidden-32 configuration for smoke runs and tests."""
        base = dict(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
        )
        base.update(overrides)
        return cls(**base)


@dataclasses.dataclass(frozen=True)
class TaskHead:
    """One named output head: ``num_labels`` classes, or regression when ``num_labels == 1``."""

    name: str
    num_labels: int

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"head name {self.name!r} must be a Python identifier.")
        if self.num_labels < 1:
            raise ValueError(f"head {self.name!r}: num_labels must be >= 1.")

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1
