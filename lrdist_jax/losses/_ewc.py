"""Elastic weight consolidation (EWC): a diagonal-Fisher quadratic penalty towards an anchor.

``penalty = lam * sum_i F_i (theta_i - theta*_i)^2`` (no 1/2 factor, as in Kenneweg et al.'s code).

Two choices of anchor and Fisher:

* **standard EWC** (Kirkpatrick et al.; the library default): the Fisher is computed from the
  task-1 loss at the task-1 solution, and the anchor ``theta*`` is the weights after task 1;
* **the authors' variant** (Kenneweg et al., METHODS.md section 1.9): the anchor is the
  *pre-trained* weights, the Fisher comes from the MLM loss on wiki40b, ``lam = 1000``, and the
  penalty covers the backbone only (not the task heads). Which anchor to use is the training
  engine's choice; :func:`make_ewc_state` takes it as ``anchor=``.

References:
  Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017
  (arXiv 1612.00796, https://arxiv.org/abs/1612.00796).
  Kenneweg et al., arXiv 2404.01317 (EWC baseline, ``embedder.py: class EWC``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "EWCState",
    "ewc_penalty",
    "fisher_diagonal",
    "load_ewc_state",
    "make_ewc_state",
    "save_ewc_state",
]


class EWCState(NamedTuple):
    """Anchor weights and diagonal Fisher, both float32 pytrees with the structure of the params.

    Attributes:
      anchor: ``theta*``, the weights the penalty pulls towards.
      fisher: ``F``, the diagonal Fisher (importance) of every parameter element.
    """

    anchor: Any
    fisher: Any


def _to_f32(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _check_same_structure(a: Any, b: Any, what: str) -> None:
    ta, tb = jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b)
    if ta != tb:
        raise ValueError(
            f"{what}: the trees do not have the same structure as the params:\n  {ta}\nvs\n  {tb}"
        )
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        if jnp.shape(x) != jnp.shape(y):
            raise ValueError(f"{what}: leaf shapes differ: {jnp.shape(x)} vs {jnp.shape(y)}.")


def fisher_diagonal(
    loss_fn: Callable[[Any, Any], jax.Array], params: Any, batches: Iterable[Any]
) -> Any:
    """Diagonal empirical Fisher: the mean over batches of the squared batch-mean-loss gradient.

    ``F = sum_b (grad_theta L_b(theta))^2 / num_batches`` where ``L_b`` is the *mean* loss over
    batch ``b`` (METHODS.md section 1.9; Kenneweg et al. use batch size = the training batch size,
    the model in eval mode, i.e. dropout off). With batch size 1 this is the classic per-example
    empirical Fisher. One jitted function computes each batch's gradient and accumulates its square
    in float32; it recompiles only when a batch shape changes (pad batches to a fixed shape).

    Args:
      loss_fn: ``(params, batch) -> f32[]`` the mean loss of one batch (deterministic).
      params: the parameters at which the Fisher is computed (for standard EWC, the task-1
        solution).
      batches: an iterable of batches (any pytrees ``loss_fn`` accepts); consumed once.

    Returns:
      A float32 pytree with the structure of ``params``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.losses import fisher_diagonal
      >>> loss_fn = lambda p, b: jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)
      >>> batches = [{"x": jnp.array([[1.0, 2.0]]), "y": jnp.array([0.0])}]
      >>> fisher_diagonal(loss_fn, {"w": jnp.array([1.0, 0.0])}, batches)["w"].tolist()
      [4.0, 16.0]

    References:
      Kirkpatrick et al., arXiv 1612.00796; Kenneweg et al., arXiv 2404.01317.
    """
    grad_fn = jax.grad(loss_fn)

    @jax.jit
    def accumulate(acc, p, batch):
        g = grad_fn(p, batch)
        return jax.tree_util.tree_map(lambda a, x: a + jnp.square(x.astype(jnp.float32)), acc, g)

    acc = jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), jnp.float32), params)
    n = 0
    for batch in batches:
        acc = accumulate(acc, params, batch)
        n += 1
    if n == 0:
        raise ValueError("fisher_diagonal: `batches` is empty; give at least one batch.")
    return jax.tree_util.tree_map(lambda a: a / n, acc)


def make_ewc_state(params: Any, fisher: Any, *, anchor: Any = None) -> EWCState:
    """Builds an :class:`EWCState`, converting both trees to float32.

    Args:
      params: the current parameters; the anchor when ``anchor`` is ``None`` (standard EWC: call
        this right after task 1 with the task-1 weights).
      fisher: the diagonal Fisher, e.g. from :func:`fisher_diagonal`.
      anchor: another anchor, e.g. the pre-trained weights (Kenneweg et al.'s variant).

    Returns:
      An :class:`EWCState`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.losses import make_ewc_state
      >>> s = make_ewc_state({"w": jnp.ones(2)}, {"w": jnp.array([0.5, 2.0])})
      >>> s.anchor["w"].tolist(), s.fisher["w"].tolist()
      ([1.0, 1.0], [0.5, 2.0])

    References:
      Kirkpatrick et al., arXiv 1612.00796.
    """
    anchor = params if anchor is None else anchor
    _check_same_structure(params, fisher, "make_ewc_state(fisher)")
    _check_same_structure(params, anchor, "make_ewc_state(anchor)")
    return EWCState(anchor=_to_f32(anchor), fisher=_to_f32(fisher))


def ewc_penalty(
    params: Any,
    state: EWCState,
    lam: float | jax.Array,
    *,
    mask: Any | Callable[[Any], Any] | None = None,
) -> jax.Array:
    """``lam * sum F (theta - theta*)^2`` over the (masked) parameter leaves, in float32.

    No 1/2 factor (as the Kenneweg et al. code, whose ``lam`` is 1000); Kirkpatrick et al. write
    ``lam/2``, so their ``lam`` is twice ours. The gradient is ``2 lam F (theta - theta*)``.

    Args:
      params: the current parameters.
      state: an :class:`EWCState` with the structure of ``params``.
      lam: the penalty weight.
      mask: ``None`` (every leaf), or a pytree of bools with the structure of ``params`` (or a
        callable ``params -> mask``); only ``True`` leaves are penalised, e.g. the backbone and
        not the task heads.

    Returns:
      ``f32[]`` the penalty.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.losses import ewc_penalty, make_ewc_state
      >>> s = make_ewc_state({"w": jnp.zeros(2)}, {"w": jnp.array([1.0, 3.0])})
      >>> float(ewc_penalty({"w": jnp.array([1.0, 2.0])}, s, lam=10.0))  # 10 * (1 + 12)
      130.0

    References:
      Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks",
      https://arxiv.org/abs/1612.00796.
    """
    _check_same_structure(params, state.anchor, "ewc_penalty(state.anchor)")
    _check_same_structure(params, state.fisher, "ewc_penalty(state.fisher)")
    if mask is None:
        mask_leaves = [True] * len(jax.tree_util.tree_leaves(params))
    else:
        mask_tree = mask(params) if callable(mask) else mask
        try:
            matched = jax.tree_util.tree_map(lambda _, m: m, params, mask_tree)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"ewc_penalty: the mask does not match the params tree ({e}); give one bool per "
                "parameter leaf."
            ) from e
        mask_leaves = jax.tree_util.tree_leaves(matched)
    total = jnp.zeros((), jnp.float32)
    leaves = zip(
        jax.tree_util.tree_leaves(params),
        jax.tree_util.tree_leaves(state.anchor),
        jax.tree_util.tree_leaves(state.fisher),
        mask_leaves,
        strict=True,
    )
    for p, a, f, m in leaves:
        if not isinstance(m, bool | np.bool_):
            raise ValueError(f"ewc_penalty: mask leaves must be Python bools, got {m!r}.")
        if m:
            diff = jnp.asarray(p).astype(jnp.float32) - a
            total = total + jnp.sum(f * jnp.square(diff))
    return jnp.asarray(lam, jnp.float32) * total


def _key_str(k: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [_key_str(k) for k in path]
        bad = [p for p in parts if "/" in p or not p]
        if bad:
            raise ValueError(f"save_ewc_state: key {bad[0]!r} is empty or contains '/'.")
        out[prefix + "/".join(parts)] = np.asarray(leaf, np.float32)
    return out


def save_ewc_state(path: str | os.PathLike, state: EWCState) -> None:
    """Saves an :class:`EWCState` to ``.npz``, keyed ``"anchor/<path>"`` and ``"fisher/<path>"``.

    The Fisher is costly to compute; save it once and reload it with :func:`load_ewc_state`.

    Args:
      path: the file to write (``.npz`` is appended by NumPy if missing).
      state: the state to save.

    Examples:
      >>> import os, tempfile, jax.numpy as jnp
      >>> from lrdist_jax.losses import load_ewc_state, make_ewc_state, save_ewc_state
      >>> s = make_ewc_state({"a": {"w": jnp.ones(2)}}, {"a": {"w": jnp.array([1.0, 2.0])}})
      >>> f = os.path.join(tempfile.mkdtemp(), "ewc.npz")
      >>> save_ewc_state(f, s)
      >>> load_ewc_state(f).fisher["a"]["w"].tolist()
      [1.0, 2.0]

    References:
      Kirkpatrick et al., arXiv 1612.00796.
    """
    arrays = {**_flatten(state.anchor, "anchor/"), **_flatten(state.fisher, "fisher/")}
    np.savez(path, **arrays)


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = jnp.asarray(value)
    return tree


def load_ewc_state(path: str | os.PathLike, *, target: Any = None) -> EWCState:
    """Loads an :class:`EWCState` written by :func:`save_ewc_state`.

    Args:
      path: the ``.npz`` file.
      target: optional params tree; if given, the state is rebuilt with exactly its structure
        (lists, integer keys, ...) and every path must be present with the right shape. Without
        it, the result is nested dicts with string keys.

    Returns:
      An :class:`EWCState` of float32 arrays.

    References:
      Kirkpatrick et al., arXiv 1612.00796.
    """
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    halves = {}
    for prefix in ("anchor", "fisher"):
        sub = {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
        if not sub:
            raise ValueError(f"load_ewc_state: {path} has no '{prefix}/...' arrays.")
        if target is None:
            halves[prefix] = _unflatten(sub)
            continue
        target_paths = jax.tree_util.tree_flatten_with_path(target)[0]
        want = {"/".join(_key_str(k) for k in p) for p, _ in target_paths}
        missing = sorted(set(want) - set(sub))
        extra = sorted(set(sub) - set(want))
        if missing or extra:
            raise ValueError(
                f"load_ewc_state: {path} does not match the target params: missing {missing}, "
                f"unexpected {extra}."
            )
        leaves = []
        for p, leaf in target_paths:
            key = "/".join(_key_str(k) for k in p)
            if sub[key].shape != jnp.shape(leaf):
                raise ValueError(
                    f"load_ewc_state: {prefix}/{key} has shape {sub[key].shape}, the target "
                    f"has {jnp.shape(leaf)}."
                )
            leaves.append(jnp.asarray(sub[key], jnp.float32))
        halves[prefix] = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(target), leaves)
    return EWCState(anchor=halves["anchor"], fisher=halves["fisher"])
