"""Named learning-rate distributions over BERT slots, their mapping across depths, and files.

A *distribution* is a vector ``f32[num_slots]`` of learning rates, one per slot of the layout
of :mod:`lrdist_jax.slots` (slot 0 embeddings, slots ``1..n-2`` encoder layer groups, slot
``n-1`` heads and everything else) for a model with ``num_layers`` encoder layers.

Named distributions:

- ``flat``: ``base_lr`` everywhere.
- ``llrd``: layer-wise decay, ``base_lr * decay ** depth`` with depth counted from the top:
  the head slot has depth 0, the top layer group depth 1, ..., the embeddings depth ``n-1``.
- ``paper-combined``: the authors' combined distribution (METHODS.md §1.8, ``average_lr``),
  absolute values for bert-base (12 layers, 10 slots), times an optional ``scale``; ``base_lr``
  does not change it.
- ``paper-rounded``: the authors' rounded ratios ``[1, 1, 0.3, 0.7, 1, 1, 1, 1, 1, 3]``
  times ``base_lr`` (``average_lr_int``).

Mapping (:func:`map_distribution`) a distribution defined on ``(n, L)`` onto ``(n', L')``:
expand it to per-layer values (each encoder layer gets its slot's rate), map every target
layer ``j`` to the source layer at the same relative depth (the layer containing the target
layer's centre, ``floor((j + 0.5) * L / L')``), then take the geometric mean over the layers
of each target slot. Embeddings map to embeddings and head to head. A single target slot
(``n' = 1``) gets the geometric mean of the embeddings, every layer and the head. Mapping onto
the same ``(n, L)`` is the identity.

Distribution files are JSON::

    {"format": "lrdist-jax/distribution", "version": 1, "lrs": [...], "num_layers": 12,
     "slots": ["embeddings", "layers 0-1", ...], "source": "free text"}

References:
  Kenneweg et al., "Intelligent Learning Rate Distribution to reduce Catastrophic Forgetting in
  Transformers", arXiv 2404.01317.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from lrdist_jax.slots import slot_layers, slot_names

__all__ = [
    "DISTRIBUTION_FORMAT",
    "DISTRIBUTION_NAMES",
    "PAPER_COMBINED",
    "PAPER_NUM_LAYERS",
    "PAPER_ROUNDED_RATIOS",
    "Distribution",
    "expand_to_layers",
    "flat",
    "llrd",
    "load_distribution",
    "map_distribution",
    "paper_combined",
    "paper_rounded",
    "resolve_distribution",
    "save_distribution",
]

DISTRIBUTION_FORMAT = "lrdist-jax/distribution"
DISTRIBUTION_NAMES = ("flat", "llrd", "paper-combined", "paper-rounded")
PAPER_NUM_LAYERS = 12
PAPER_COMBINED = (
    3.295e-6, 4.363e-6, 9.215e-7, 1.923e-6, 2.849e-6, 2.143e-6, 3.267e-6, 3.699e-6, 3.186e-6,
    1.119e-5,
)  # fmt: skip
"""The authors' combined distribution (``average_lr``) for bert-base, 10 slots (METHODS §1.8)."""
PAPER_ROUNDED_RATIOS = (1.0, 1.0, 0.3, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0)
"""The authors' rounded ratios (``average_lr_int``), to be multiplied by a base rate."""


def _check_base(base_lr: float) -> None:
    if not (math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a positive finite number, got {base_lr}")


def flat(base_lr: float, *, num_slots: int = 10) -> np.ndarray:
    """``base_lr`` in every slot: ``f32[num_slots]``.

    Examples:
      >>> flat(2e-5, num_slots=3).tolist() == [np.float32(2e-5)] * 3
      True
    """
    _check_base(base_lr)
    return np.full((num_slots,), base_lr, np.float32)


def llrd(base_lr: float, decay: float = 0.9, *, num_slots: int = 10) -> np.ndarray:
    """Layer-wise decay ``base_lr * decay ** depth``, depth 0 for the head slot.

    Returns:
      ``f32[num_slots]``; slot ``s`` gets ``base_lr * decay ** (num_slots - 1 - s)``.

    Examples:
      >>> [round(float(v), 3) for v in llrd(1.0, 0.5, num_slots=4)]
      [0.125, 0.25, 0.5, 1.0]
    """
    _check_base(base_lr)
    if not (0 < decay and math.isfinite(decay)):
        raise ValueError(f"decay must be positive, got {decay}")
    depth = np.arange(num_slots - 1, -1, -1, dtype=np.float64)
    return (base_lr * decay**depth).astype(np.float32)


def paper_combined(scale: float = 1.0) -> np.ndarray:
    """The authors' combined distribution (12 layers, 10 slots), times ``scale``: ``f32[10]``."""
    _check_base(scale)
    return (np.asarray(PAPER_COMBINED, np.float64) * scale).astype(np.float32)


def paper_rounded(base_lr: float) -> np.ndarray:
    """``[1, 1, 0.3, 0.7, 1, 1, 1, 1, 1, 3] * base_lr`` (12 layers, 10 slots): ``f32[10]``."""
    _check_base(base_lr)
    return (np.asarray(PAPER_ROUNDED_RATIOS, np.float64) * base_lr).astype(np.float32)


def _validate_lrs(lrs: ArrayLike, num_layers: int, where: str = "") -> np.ndarray:
    arr = np.asarray(lrs, np.float64)
    prefix = f"{where}: " if where else ""
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{prefix}lrs must be a non-empty list of numbers, got shape {arr.shape}")
    bad = [i for i, v in enumerate(arr) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(
            f"{prefix}every learning rate must be positive and finite; slot(s) {bad} are "
            f"{[float(arr[i]) for i in bad]}"
        )
    try:
        slot_layers(arr.size, num_layers)
    except ValueError as e:
        raise ValueError(f"{prefix}{len(arr)} rates do not fit {num_layers} layers: {e}") from e
    return arr


def expand_to_layers(lrs: ArrayLike, num_layers: int) -> tuple[float, np.ndarray, float]:
    """Splits a distribution into (embeddings rate, per-layer rates ``f64[L]``, head rate)."""
    arr = _validate_lrs(lrs, num_layers)
    n = arr.size
    if n == 1:
        return float(arr[0]), np.full((num_layers,), arr[0]), float(arr[0])
    per_layer = np.empty((num_layers,), np.float64)
    for slot, group in enumerate(slot_layers(n, num_layers)):
        per_layer[group] = arr[slot]
    return float(arr[0]), per_layer, float(arr[-1])


def map_distribution(
    lrs: ArrayLike,
    *,
    num_layers: int,
    num_slots_target: int,
    num_layers_target: int,
) -> np.ndarray:
    """Maps a distribution from ``(len(lrs), num_layers)`` onto ``(n', L')`` (module docstring).

    Args:
      lrs: f[n] source rates.
      num_layers: source number of encoder layers ``L``.
      num_slots_target: target number of slots ``n'``.
      num_layers_target: target number of encoder layers ``L'``.

    Returns:
      ``f32[n']``.

    Examples:
      >>> src = paper_rounded(1.0)  # 12 layers, 10 slots
      >>> mapped = map_distribution(src, num_layers=12, num_slots_target=8, num_layers_target=6)
      >>> [round(float(v), 3) for v in mapped]
      [1.0, 1.0, 0.7, 1.0, 1.0, 1.0, 1.0, 3.0]
    """
    emb, per_layer, head = expand_to_layers(lrs, num_layers)
    slot_layers(num_slots_target, num_layers_target)  # validates the target layout
    src_of = [
        min(int(math.floor((j + 0.5) * num_layers / num_layers_target)), num_layers - 1)
        for j in range(num_layers_target)
    ]
    target_layers = np.log(per_layer[src_of])
    if num_slots_target == 1:
        logs = np.concatenate([[math.log(emb)], target_layers, [math.log(head)]])
        return np.array([math.exp(logs.mean())], np.float32)
    out = [emb]
    for group in slot_layers(num_slots_target, num_layers_target)[1:-1]:
        out.append(math.exp(target_layers[group].mean()))
    out.append(head)
    return np.asarray(out, np.float32)


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A distribution read from a file.

    Attributes:
      lrs: ``f32[n]`` rates.
      num_layers: encoder layers of the model it was defined for.
      slots: slot names.
      source: free-text provenance.
    """

    lrs: np.ndarray
    num_layers: int
    slots: tuple[str, ...]
    source: str


def save_distribution(
    path: str | os.PathLike,
    lrs: ArrayLike,
    *,
    num_layers: int,
    source: str = "",
) -> Path:
    """Writes a distribution file (format in the module docstring); returns its path."""
    arr = _validate_lrs(lrs, num_layers)
    record = {
        "format": DISTRIBUTION_FORMAT,
        "version": 1,
        "lrs": [float(v) for v in arr],
        "num_layers": int(num_layers),
        "slots": slot_names(arr.size, num_layers),
        "source": source,
    }
    path = Path(path)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_distribution(path: str | os.PathLike) -> Distribution:
    """Reads and validates a distribution file.

    Raises:
      ValueError: naming the file and the problem (not JSON, wrong format or version, missing
        key, non-positive or non-finite rate, rates that do not fit ``num_layers``).
      FileNotFoundError: if the file does not exist.
    """
    path = Path(path)
    text = path.read_text()
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON distribution file ({e})") from e
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    if record.get("format") != DISTRIBUTION_FORMAT:
        raise ValueError(
            f"{path}: 'format' must be {DISTRIBUTION_FORMAT!r}, got {record.get('format')!r}"
        )
    if record.get("version") != 1:
        raise ValueError(f"{path}: unsupported version {record.get('version')!r} (expected 1)")
    for key in ("lrs", "num_layers"):
        if key not in record:
            raise ValueError(f"{path}: missing key {key!r}")
    num_layers = record["num_layers"]
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(f"{path}: 'num_layers' must be a positive integer, got {num_layers!r}")
    lrs = record["lrs"]
    if not isinstance(lrs, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in lrs
    ):
        raise ValueError(f"{path}: 'lrs' must be a list of numbers, got {lrs!r}")
    arr = _validate_lrs(lrs, num_layers, where=str(path))
    slots = record.get("slots") or slot_names(arr.size, num_layers)
    if len(slots) != arr.size:
        raise ValueError(f"{path}: {len(slots)} slot names for {arr.size} rates")
    return Distribution(
        lrs=arr.astype(np.float32),
        num_layers=num_layers,
        slots=tuple(str(s) for s in slots),
        source=str(record.get("source", "")),
    )


def _named(name: str, base_lr: float, num_slots: int, decay: float, scale: float):
    """(lrs, num_layers of definition) of a named distribution, or None if defined anywhere."""
    if name == "flat":
        return flat(base_lr, num_slots=num_slots), None
    if name == "llrd":
        return llrd(base_lr, decay, num_slots=num_slots), None
    if name == "paper-combined":
        return paper_combined(scale), PAPER_NUM_LAYERS
    if name == "paper-rounded":
        return paper_rounded(base_lr), PAPER_NUM_LAYERS
    raise KeyError(name)


def resolve_distribution(
    spec: str | os.PathLike | Sequence[float],
    *,
    num_slots: int,
    num_layers: int,
    base_lr: float = 2e-5,
    decay: float = 0.9,
    scale: float = 1.0,
) -> np.ndarray:
    """A distribution for ``(num_slots, num_layers)`` from a name, a file, or a list of rates.

    Args:
      spec: one of ``flat``, ``llrd``, ``paper-combined``, ``paper-rounded``; a path to a
        distribution file; or explicit rates. Distributions defined on another layout (the
        paper's 12 layers / 10 slots, or a file's) are mapped with :func:`map_distribution`.
      num_slots: target number of slots.
      num_layers: target number of encoder layers.
      base_lr: base rate of ``flat``, ``llrd`` and ``paper-rounded``.
      decay: decay of ``llrd``.
      scale: factor on ``paper-combined`` (absolute values by default).

    Returns:
      ``f32[num_slots]``.

    Examples:
      >>> resolve_distribution("paper-combined", num_slots=10, num_layers=12)[9]
      np.float32(1.119e-05)
    """
    slot_layers(num_slots, num_layers)
    if not isinstance(spec, str | os.PathLike):
        lrs = _validate_lrs(spec, num_layers)
        if lrs.size != num_slots:
            raise ValueError(f"got {lrs.size} rates for {num_slots} slots")
        return lrs.astype(np.float32)
    name = os.fspath(spec)
    if name in DISTRIBUTION_NAMES:
        lrs, defined_on = _named(name, base_lr, num_slots, decay, scale)
        if defined_on is None:
            return lrs
        src_layers = defined_on
    elif Path(name).is_file():
        dist = load_distribution(name)
        lrs, src_layers = dist.lrs, dist.num_layers
    else:
        raise ValueError(
            f"unknown distribution {name!r}: use one of {', '.join(DISTRIBUTION_NAMES)} or the "
            "path of an existing distribution file"
        )
    if lrs.size == num_slots and src_layers == num_layers:
        return lrs.astype(np.float32)
    return map_distribution(
        lrs, num_layers=src_layers, num_slots_target=num_slots, num_layers_target=num_layers
    )
