"""Learning-rate slot layouts of BERT-style encoders (Kenneweg et al. 2022, METHODS.md §1.2).

The authors split BERT into ``n`` slots, each with its own learning rate. For slot ``i`` in
``0..n-1`` the encoder layers ``range(ceil(L/(n-2)*(i-1)), ceil(L/(n-2)*i))`` go into slot
``i`` (``L`` = number of encoder layers, 12 for bert-base), slots ``0`` and ``n-1`` get no
layers; every parameter whose path has an ``embeddings`` component goes to slot 0 and every
other parameter (task heads, pooler) to slot ``n-1``. For ``L = 12, n = 10`` that is::

    slot  0: embeddings      slot 5: layers 6-7
    slot  1: layers 0-1      slot 6: layer 8
    slot  2: layer 2         slot 7: layers 9-10
    slot  3: layers 3-4      slot 8: layer 11
    slot  4: layer 5         slot 9: everything else (heads, pooler)

The rule is evaluated with exact integer arithmetic; for ``L = 12`` it agrees with the
authors' floating-point ``math.ceil`` for every valid ``n``. Layouts that leave a layer slot
empty are refused: the largest valid ``n`` is ``L + 2`` (one layer per slot).

Offline MiniLM (all-MiniLM-L6-v2, ``L = 6``): ``n = 8`` gives the finest layout, embeddings |
layer 0 | layer 1 | layer 2 | layer 3 | layer 4 | layer 5 | head; ``n = 5`` gives embeddings |
layers 0-1 | layers 2-3 | layers 4-5 | head; ``n = 4`` gives embeddings | layers 0-2 | layers
3-5 | head. To run a distribution found for bert-base (``L = 12, n = 10``) on MiniLM, map it
with :func:`lrdist_jax.distributions.map_distribution`.

``n = 1`` puts every parameter in one slot (a flat learning rate). The authors' code for
``n = 1`` assigned the encoder layers to no optimiser, freezing them (METHODS.md §1.2); this
library does not reproduce that bug. ``n = 2`` has no defined layout and is refused.

Paths are matched prefix-agnostically: ``bert/encoder/layer/3/...`` and
``encoder/layer/3/...`` are both layer 3.

References:
  Kenneweg, Schulz, Schröder, Hammer, "Intelligent Learning Rate Distribution to reduce
  Catastrophic Forgetting in Transformers", IDEAL 2022, arXiv 2404.01317.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lrdist_jax.paths import label_params, param_paths

__all__ = [
    "EMBEDDINGS_PATTERN",
    "LAYER_PATTERN",
    "bert_lr_slots",
    "bert_slot_rules",
    "slot_layers",
    "slot_names",
]

EMBEDDINGS_PATTERN = r"(?:.*/)?embeddings(?:/.*)?"
"""Paths with an ``embeddings`` component (word, position, token-type, embedding LayerNorm)."""

LAYER_PATTERN = r"(?:.*/)?encoder/layer/(\d+)(?:/.*)?"
"""Paths inside encoder layer ``k`` (group 1 is ``k``)."""


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def slot_layers(num_slots: int, num_layers: int = 12) -> list[list[int]]:
    """The encoder layers of each slot under the authors' ceil rule.

    Args:
      num_slots: number of slots ``n`` (1, or 3 to ``num_layers + 2``).
      num_layers: number of encoder layers ``L``.

    Returns:
      ``n`` lists of layer indices; the first (embeddings) and last (heads) are empty, except
      for ``n = 1``, whose single slot holds every layer.

    Raises:
      ValueError: for ``n = 2``, ``n < 1``, or a layout that leaves a slot empty
        (``n > L + 2``).

    Examples:
      >>> slot_layers(10)[1:4]
      [[0, 1], [2], [3, 4]]
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    max_slots = num_layers + 2
    if num_slots == 1:
        return [list(range(num_layers))]
    if num_slots < 3 or num_slots > max_slots:
        raise ValueError(
            f"num_slots={num_slots} is not a valid layout for {num_layers} encoder layers: use "
            f"1 (flat) or 3..{max_slots} (embeddings, layer groups, head); the maximum valid "
            f"num_slots is num_layers + 2 = {max_slots}"
        )
    n = num_slots
    layers: list[list[int]] = [[]]
    for i in range(1, n - 1):
        lo = _ceil_div(num_layers * (i - 1), n - 2)
        hi = _ceil_div(num_layers * i, n - 2)
        group = list(range(lo, min(hi, num_layers)))
        if not group:  # unreachable for 3 <= n <= L + 2; kept as a guard
            raise ValueError(
                f"num_slots={n} leaves slot {i} without encoder layers; the maximum valid "
                f"num_slots for {num_layers} layers is {max_slots}"
            )
        layers.append(group)
    layers.append([])
    return layers


def _layer_group_name(group: list[int]) -> str:
    if len(group) == 1:
        return f"layer {group[0]}"
    return f"layers {group[0]}-{group[-1]}"


def slot_names(num_slots: int, num_layers: int = 12) -> list[str]:
    """Human-readable slot names: ``["embeddings", "layers 0-1", "layer 2", ..., "head/other"]``.

    Examples:
      >>> slot_names(5, 6)
      ['embeddings', 'layers 0-1', 'layers 2-3', 'layers 4-5', 'head/other']
    """
    layers = slot_layers(num_slots, num_layers)
    if num_slots == 1:
        return ["all"]
    return ["embeddings"] + [_layer_group_name(g) for g in layers[1:-1]] + ["head/other"]


def bert_slot_rules(num_slots: int, num_layers: int = 12) -> list[tuple[str, int]]:
    """Ordered ``(regex, slot)`` rules for :func:`lrdist_jax.paths.label_params`.

    Layer rules come first (as in the authors' code), then embeddings, then a catch-all for
    the head slot.

    Examples:
      >>> bert_slot_rules(4, 2)
      [('(?:.*/)?encoder/layer/(?:0)(?:/.*)?', 1), ('(?:.*/)?encoder/layer/(?:1)(?:/.*)?', 2), \
('(?:.*/)?embeddings(?:/.*)?', 0), ('.*', 3)]
    """
    layers = slot_layers(num_slots, num_layers)
    if num_slots == 1:
        return [(".*", 0)]
    rules: list[tuple[str, int]] = []
    for slot, group in enumerate(layers):
        if group:
            alternatives = "|".join(str(k) for k in group)
            rules.append((rf"(?:.*/)?encoder/layer/(?:{alternatives})(?:/.*)?", slot))
    rules.append((EMBEDDINGS_PATTERN, 0))
    rules.append((".*", num_slots - 1))
    return rules


def bert_lr_slots(num_slots: int, num_layers: int = 12) -> Callable[[Any], Any]:
    """A label function ``params -> int slot tree`` implementing METHODS.md §1.2.

    The returned function checks that the encoder layers present in ``params`` are exactly
    ``0..num_layers-1`` and raises a ``ValueError`` otherwise, so a 6-layer model is never
    labelled with a 12-layer layout by mistake. It can be passed directly as ``labels`` to
    :func:`lrdist_jax.transforms.layerwise_adam` or ``optax.partition``.

    Args:
      num_slots: number of slots ``n``.
      num_layers: number of encoder layers ``L`` of the model.

    Returns:
      A function mapping a parameter pytree (dict or ``nnx.State``) to a pytree of the same
      structure holding ``int`` slot ids.

    Examples:
      >>> params = {"bert": {"embeddings": {"w": 0.0},
      ...                    "encoder": {"layer": {"0": {"k": 0.0}, "1": {"k": 0.0}}}},
      ...           "heads": {"task1": {"kernel": 0.0}}}
      >>> bert_lr_slots(4, num_layers=2)(params)
      {'bert': {'embeddings': {'w': 0}, 'encoder': {'layer': {'0': {'k': 1}, '1': {'k': 2}}}}, \
'heads': {'task1': {'kernel': 3}}}
    """
    rules = bert_slot_rules(num_slots, num_layers)
    layer_re = re.compile(LAYER_PATTERN)

    def label_fn(params: Any) -> Any:
        present = set()
        for path in param_paths(params):
            m = layer_re.fullmatch(path)
            if m:
                present.add(int(m.group(1)))
        expected = set(range(num_layers))
        if present != expected:
            found = f"layers {sorted(present)}" if present else "no encoder/layer/<k> paths"
            raise ValueError(
                f"bert_lr_slots(num_slots={num_slots}, num_layers={num_layers}) expects encoder "
                f"layers 0..{num_layers - 1}, but the params have {found}; pass the model's "
                "number of layers as num_layers, or use label_params with your own rules"
            )
        return label_params(params, rules, strict=False)

    return label_fn
