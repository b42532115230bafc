"""Component-wise gradient norm clipping (CWGNC).

A *component* is one parameter tensor (one leaf of the gradient pytree) by default, or one group of
leaves sharing a label. Every component is clipped to its own L2 norm, which is PyTorch's
``torch.nn.utils.clip_grad_norm_`` applied to each tensor separately:
``g <- g * min(1, c / (||g||_2 + eps))`` with ``eps = 1e-6``.

References:
  Yang & Ma, "Improving Stability of Fine-Tuning Pretrained Language Models via Component-Wise
  Gradient Norm Clipping", EMNLP 2022 (arXiv 2210.10325, https://arxiv.org/abs/2210.10325).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "ClipByComponentNormState",
    "clip_by_component_norm",
    "component_norms",
]


class ClipByComponentNormState(NamedTuple):
    """Logging state of :func:`clip_by_component_norm` (about the last update only).

    Attributes:
      clip_rate: ``f32[]`` fraction of gradient *elements* that belong to clipped components.
      num_clipped: ``i32[]`` number of clipped components.
    """

    clip_rate: jax.Array
    num_clipped: jax.Array


def _key_str(k: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _path_str(path: tuple[Any, ...]) -> str:
    return "/".join(_key_str(k) for k in path)


def _components(
    tree: Any, labels: Any | Callable[[Any], Any] | None
) -> tuple[list[jax.Array], list[Hashable], dict[Hashable, list[int]]]:
    """Flattens ``tree`` and groups its leaf indices by component (in order of appearance)."""
    path_leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    leaves = [leaf for _, leaf in path_leaves]
    if labels is None:
        names: list[Hashable] = [_path_str(path) for path, _ in path_leaves]
    else:
        label_tree = labels(tree) if callable(labels) else labels
        try:
            matched = jax.tree_util.tree_map(lambda _, lab: lab, tree, label_tree)
        except (ValueError, TypeError) as e:
            raise ValueError(
                "clip_by_component_norm: the label tree does not match the gradient tree "
                f"({e}). Give one hashable label per parameter leaf, e.g. built with "
                "jax.tree_util.tree_map_with_path over the params."
            ) from e
        names = jax.tree_util.tree_leaves(matched)
        if len(names) != len(leaves):
            raise ValueError(
                f"clip_by_component_norm: got {len(names)} labels for {len(leaves)} gradient "
                "leaves; labels must be scalars (str or int), not containers."
            )
    groups: dict[Hashable, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    return leaves, names, groups


def _group_norms(leaves: list[jax.Array], groups: dict[Hashable, list[int]]) -> dict:
    sq = [jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in leaves]
    return {name: jnp.sqrt(sum(sq[i] for i in idx)) for name, idx in groups.items()}


def component_norms(
    grads: Any, labels: Any | Callable[[Any], Any] | None = None
) -> dict[Hashable, jax.Array]:
    """L2 norm of every component of a gradient pytree, for logging.

    Args:
      grads: a pytree of arrays.
      labels: ``None`` (one component per leaf), or a pytree of hashable labels with the structure
        of ``grads`` (or a callable ``grads -> labels``); leaves sharing a label form one component.

    Returns:
      A dict ``{name: f32[] norm}``; the name is the "/"-joined key path of the leaf
      (e.g. ``"bert/embeddings/LayerNorm/scale"``), or the label.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.transforms._clipping import component_norms
      >>> norms = component_norms({"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])})
      >>> {k: float(v) for k, v in sorted(norms.items())}
      {'b': 1.0, 'w': 5.0}

    References:
      Yang & Ma, arXiv 2210.10325.
    """
    leaves, _, groups = _components(grads, labels)
    return _group_norms(leaves, groups)


def clip_by_component_norm(
    max_norm: float | jax.Array,
    *,
    labels: Any | Callable[[Any], Any] | None = None,
    eps: float = 1e-6,
) -> optax.GradientTransformation:
    """Clips each component of the gradient to L2 norm ``max_norm`` (CWGNC).

    Every component (one leaf by default; one label group when ``labels`` is given) is scaled by
    ``min(1, max_norm / (||g||_2 + eps))``, its norm computed in float32 over all its leaves. This
    is ``torch.nn.utils.clip_grad_norm_(p, max_norm)`` called separately on every tensor ``p``,
    as in the authors' ``GradClipTrainer`` (METHODS.md section 2.3).

    Chain it *before* Adam, on the raw gradients, and do **not** also apply global norm clipping
    (the authors set the Hugging Face ``max_grad_norm = -1``)::

        tx = optax.chain(clip_by_component_norm(0.05), optax.adamw(2e-5, weight_decay=0.0))

    Thresholds swept in the paper's code: ``{0.01, 0.05, 0.1, 0.5, 1, 5, 1e5}``; ``1e5`` is in
    effect no clipping. This is different from ``optax.clip_by_global_norm`` (one norm for the
    whole tree), ``optax.clip_by_block_rms`` (RMS, not L2 norm) and ``optax.adaptive_grad_clip``.

    The state records, for logging, the clip rate of the last update (the fraction of gradient
    elements in clipped components; a component is clipped when ``max_norm < ||g|| + eps``) and
    the number of clipped components.

    Args:
      max_norm: the threshold ``c`` shared by all components (a float or ``f32[]`` array).
      labels: ``None`` for one component per parameter tensor, or a pytree of hashable labels
        with the structure of the params, or a callable ``params -> labels``. All leaves with the
        same label form one component.
      eps: added to the norm before dividing (PyTorch uses 1e-6).

    Returns:
      A :class:`optax.GradientTransformation` whose state is a
      :class:`ClipByComponentNormState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.transforms._clipping import clip_by_component_norm
      >>> tx = clip_by_component_norm(1.0, eps=0.0)
      >>> grads = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([0.5])}
      >>> state = tx.init(grads)
      >>> updates, state = tx.update(grads, state)
      >>> [round(float(x), 3) for x in updates["w"]], [float(x) for x in updates["b"]]
      ([0.6, 0.8], [0.5])
      >>> round(float(state.clip_rate), 4), int(state.num_clipped)
      (0.6667, 1)

    References:
      Yang & Ma, "Improving Stability of Fine-Tuning Pretrained Language Models via
      Component-Wise Gradient Norm Clipping", EMNLP 2022, https://arxiv.org/abs/2210.10325.
    """
    if isinstance(max_norm, int | float) and max_norm < 0:
        raise ValueError(f"clip_by_component_norm: max_norm must be >= 0, got {max_norm}.")
    if eps < 0:
        raise ValueError(f"clip_by_component_norm: eps must be >= 0, got {eps}.")

    def init_fn(params):
        del params
        return ClipByComponentNormState(
            clip_rate=jnp.zeros((), jnp.float32), num_clipped=jnp.zeros((), jnp.int32)
        )

    def update_fn(updates, state, params=None):
        del state
        label_src = labels
        if callable(labels) and params is not None:
            label_src = labels(params)
        leaves, _, groups = _components(updates, label_src)
        treedef = jax.tree_util.tree_structure(updates)
        c = jnp.asarray(max_norm, jnp.float32)
        norms = _group_norms(leaves, groups)
        new_leaves = list(leaves)
        clipped_elems = jnp.zeros((), jnp.float32)
        num_clipped = jnp.zeros((), jnp.int32)
        total = 0
        for name, idx in groups.items():
            denom = norms[name] + eps
            safe = jnp.where(denom > 0, denom, 1.0)
            scale = jnp.where(denom > 0, jnp.minimum(1.0, c / safe), 1.0)
            is_clipped = c < denom
            size = sum(leaves[i].size for i in idx)
            total += size
            clipped_elems = clipped_elems + jnp.where(is_clipped, float(size), 0.0)
            num_clipped = num_clipped + is_clipped.astype(jnp.int32)
            for i in idx:
                new_leaves[i] = (leaves[i].astype(jnp.float32) * scale).astype(leaves[i].dtype)
        clip_rate = clipped_elems / max(total, 1)
        new_state = ClipByComponentNormState(clip_rate=clip_rate, num_clipped=num_clipped)
        return jax.tree_util.tree_unflatten(treedef, new_leaves), new_state

    return optax.GradientTransformation(init_fn, update_fn)
