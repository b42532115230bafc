"""Layer-group learning rates as an Optax transform whose rates are data (METHODS.md §1.3).

Kenneweg et al. train BERT with one ``torch.optim.Adam`` per learning-rate slot, each with its
own cosine-warmup schedule rebuilt for every training phase, while the Adam moments carry over
from task 1 to task 2. Adam is element-wise, so this equals *one* Adam followed by scaling the
update of every leaf by its slot's rate: :func:`layerwise_adam` is
``chain(scale_by_adam, [add_decayed_weights], scale_by_group_lr)``.

:func:`scale_by_group_lr` keeps the per-slot rates ``f32[G]`` and the phase's schedule
parameters (step count, ``T``, ``W``) in its state. Replacing the rate vector
(:func:`set_group_lrs`, a new search trial) or starting a new phase (:func:`start_phase`)
therefore reuses the compiled train step. :func:`partitioned_adam` builds the literal
"one ``optax.adam`` per slot" with ``optax.partition``; it is the reference for parity tests.

References:
  Kenneweg, Schulz, Schröder, Hammer, "Intelligent Learning Rate Distribution to reduce
  Catastrophic Forgetting in Transformers", IDEAL 2022, arXiv 2404.01317.
  Kingma & Ba, "Adam: A Method for Stochastic Optimization", arXiv 1412.6980.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from lrdist_jax.schedules import SCHEDULE_KINDS, schedule_factor

__all__ = [
    "GroupLrState",
    "get_group_lrs",
    "layerwise_adam",
    "partitioned_adam",
    "scale_by_group_lr",
    "set_group_lrs",
    "start_phase",
]

Labels = Any | Callable[[Any], Any]


class GroupLrState(NamedTuple):
    """State of :func:`scale_by_group_lr`.

    Attributes:
      group_lrs: ``f32[G]`` learning rate of each group (slot).
      count: ``i32[]`` updates applied in the current phase.
      total_steps: ``i32[]`` phase length ``T`` of the schedule.
      warmup_steps: ``i32[]`` warmup length ``W`` of the schedule.
    """

    group_lrs: jax.Array
    count: jax.Array
    total_steps: jax.Array
    warmup_steps: jax.Array


def _as_lr_vector(group_lrs: ArrayLike) -> np.ndarray:
    lrs = np.asarray(group_lrs, dtype=np.float32)
    if lrs.ndim != 1 or lrs.size == 0:
        raise ValueError(f"group_lrs must be a non-empty 1-D vector f32[G], got shape {lrs.shape}")
    if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
        raise ValueError(f"group_lrs must be finite and >= 0, got {lrs.tolist()}")
    return lrs


def _check_schedule(schedule: str, total_steps: Any, warmup_steps: Any) -> None:
    if schedule not in SCHEDULE_KINDS:
        raise ValueError(
            f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULE_KINDS)}"
        )
    if isinstance(total_steps, numbers.Integral) and total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if isinstance(warmup_steps, numbers.Integral) and warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")


def _resolve_labels(labels: Labels, tree: Any, num_groups: int) -> Any:
    label_tree = labels(tree) if callable(labels) else labels
    bad = []

    def check(path, label):
        if not isinstance(label, numbers.Integral) or not 0 <= int(label) < num_groups:
            bad.append(f"{jax.tree_util.keystr(path, simple=True, separator='/')}: {label!r}")
        return label

    jax.tree_util.tree_map_with_path(check, label_tree)
    if bad:
        shown = "\n".join(f"  {b}" for b in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ValueError(
            f"labels must be ints in [0, {num_groups}) (one per group learning rate); "
            f"{len(bad)} leaf label(s) are not:\n{shown}{more}"
        )
    return label_tree


def scale_by_group_lr(
    labels: Labels,
    group_lrs: ArrayLike,
    *,
    schedule: str = "cosine_warmup",
    total_steps: int = 1,
    warmup_steps: int = 0,
) -> optax.GradientTransformation:
    """Scales each leaf by ``-group_lrs[label] * schedule_factor(count, T, W)``.

    The rates and the schedule's ``T``/``W`` live in :class:`GroupLrState` as float32/int32
    arrays, so changing them does not recompile a jitted step (see :func:`set_group_lrs`,
    :func:`start_phase`). The factor at update ``k`` of a phase uses ``count = k`` (0 first),
    like a PyTorch ``LambdaLR`` stepped after each ``optimizer.step()``.

    Args:
      labels: int label pytree with the structure of the params (values in ``[0, G)``), or a
        function ``params -> labels`` (e.g. :func:`lrdist_jax.slots.bert_lr_slots`), as for
        ``optax.partition``. The function is called on the updates tree in ``update``.
      group_lrs: f32[G] initial per-group learning rates.
      schedule: ``"cosine_warmup"``, ``"linear"`` or ``"constant"``
        (:func:`lrdist_jax.schedules.schedule_factor`).
      total_steps: initial phase length ``T``.
      warmup_steps: initial warmup length ``W``.

    Returns:
      A :class:`optax.GradientTransformation` object.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"a": jnp.ones(2), "b": jnp.ones(2)}
      >>> tx = scale_by_group_lr({"a": 0, "b": 1}, [0.1, 0.01], schedule="constant")
      >>> state = tx.init(params)
      >>> updates, state = tx.update(params, state)
      >>> updates["a"].tolist(), updates["b"].tolist()
      ([-0.10000000149011612, -0.10000000149011612], [-0.009999999776482582, \
-0.009999999776482582])
    """
    lrs0 = _as_lr_vector(group_lrs)
    _check_schedule(schedule, total_steps, warmup_steps)
    num_groups = lrs0.shape[0]

    def init_fn(params):
        _resolve_labels(labels, params, num_groups)
        return GroupLrState(
            group_lrs=jnp.asarray(lrs0, jnp.float32),
            count=jnp.zeros((), jnp.int32),
            total_steps=jnp.asarray(total_steps, jnp.int32),
            warmup_steps=jnp.asarray(warmup_steps, jnp.int32),
        )

    def update_fn(updates, state, params=None):
        del params
        if state.group_lrs.shape != (num_groups,):
            raise ValueError(
                f"state.group_lrs has shape {state.group_lrs.shape}, but this transform was "
                f"built for {num_groups} groups"
            )
        label_tree = _resolve_labels(labels, updates, num_groups)
        factor = schedule_factor(schedule, state.count, state.total_steps, state.warmup_steps)
        scales = -state.group_lrs * factor  # f32[G]
        updates = jax.tree.map(lambda u, g: (u * scales[g]).astype(u.dtype), updates, label_tree)
        return updates, state._replace(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def layerwise_adam(
    labels: Labels,
    group_lrs: ArrayLike,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    schedule: str = "cosine_warmup",
    total_steps: int = 1,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
) -> optax.GradientTransformation:
    """Adam with one learning rate (and schedule) per label group.

    ``chain(scale_by_adam, [add_decayed_weights], scale_by_group_lr)``. Adam is element-wise,
    so this is exactly one Adam per group (METHODS.md §1.3), with eps added to the
    bias-corrected ``sqrt(v)`` as in ``torch.optim.Adam`` (torch 1.4) and ``optax.adam``.
    With ``weight_decay > 0`` it is AdamW (decay scaled by each group's rate).

    Args:
      labels: int label pytree or ``params -> labels`` function (see
        :func:`scale_by_group_lr`).
      group_lrs: f32[G] per-group learning rates.
      b1: Adam first-moment decay.
      b2: Adam second-moment decay.
      eps: Adam epsilon (outside the square root).
      schedule: schedule kind of every group (see :func:`lrdist_jax.schedules.schedule_factor`).
      total_steps: phase length ``T``.
      warmup_steps: warmup length ``W``.
      weight_decay: decoupled weight decay; 0 (the paper) adds no transform.
      weight_decay_mask: pytree of bools or function ``params -> bools`` selecting the leaves
        to decay, as in ``optax.adamw``.

    Returns:
      A :class:`optax.GradientTransformation` object.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> params = {"emb": jnp.zeros(3), "head": jnp.zeros(2)}
      >>> tx = layerwise_adam({"emb": 0, "head": 1}, [1e-3, 1e-2], schedule="cosine_warmup",
      ...                     total_steps=10, warmup_steps=1)
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(grads, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> round(float(params["head"][0]) / float(params["emb"][0]), 4)  # 10x the rate
      10.0
      >>> get_group_lrs(state).tolist() == [np.float32(1e-3), np.float32(1e-2)]
      True
    """
    parts = [optax.scale_by_adam(b1=b1, b2=b2, eps=eps)]
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay, weight_decay_mask))
    parts.append(
        scale_by_group_lr(
            labels,
            group_lrs,
            schedule=schedule,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
        )
    )
    return optax.chain(*parts)


def _optax_schedule(kind: str, lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """The same schedule built from ``optax.schedules`` (reference path only)."""
    if kind == "constant":
        return optax.constant_schedule(lr)
    if kind == "cosine_warmup":
        cosine = optax.cosine_decay_schedule(1.0, total_steps)
        if warmup_steps <= 0:
            return lambda t: lr * cosine(t)
        warm = optax.linear_schedule(0.0, 1.0, warmup_steps)
        return lambda t: lr * cosine(t) * warm(t)
    # linear: warmup to lr at W, then linear decay to 0 at T
    if warmup_steps <= 0:
        return optax.linear_schedule(lr, 0.0, total_steps)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, lr, warmup_steps),
            optax.linear_schedule(lr, 0.0, max(total_steps - warmup_steps, 1)),
        ],
        [warmup_steps],
    )


def partitioned_adam(
    labels: Labels,
    group_lrs: ArrayLike,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    schedule: str = "cosine_warmup",
    total_steps: int = 1,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
) -> optax.GradientTransformation:
    """Reference path: ``optax.partition`` with one ``optax.adam``/``optax.adamw`` per group.

    Each group's rate and schedule are Python constants baked into the compiled step, so a new
    rate vector or phase needs a new transform and a recompilation; use
    :func:`layerwise_adam` for training. This exists to prove parity with it.

    Args:
      labels, group_lrs, b1, b2, eps, schedule, total_steps, warmup_steps, weight_decay,
      weight_decay_mask: as for :func:`layerwise_adam`.

    Returns:
      A :class:`optax.GradientTransformation` object.
    """
    lrs = _as_lr_vector(group_lrs)
    _check_schedule(schedule, total_steps, warmup_steps)
    transforms = {}
    for g, lr in enumerate(lrs.tolist()):
        sched = _optax_schedule(schedule, lr, int(total_steps), int(warmup_steps))
        if weight_decay:
            transforms[g] = optax.adamw(
                sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=weight_decay_mask
            )
        else:
            transforms[g] = optax.adam(sched, b1=b1, b2=b2, eps=eps)
    return optax.partition(transforms, labels)


# --------------------------------------------------------------------------------------------
# State helpers: find GroupLrState / ScaleByAdamState anywhere inside a (nested) chain state.


def _is_group_state(x: Any) -> bool:
    return isinstance(x, GroupLrState)


def _group_states(opt_state: Any) -> list[GroupLrState]:
    leaves = jax.tree_util.tree_leaves(opt_state, is_leaf=_is_group_state)
    found = [x for x in leaves if _is_group_state(x)]
    if not found:
        raise ValueError(
            "opt_state holds no GroupLrState; build the optimizer with layerwise_adam or "
            "scale_by_group_lr"
        )
    return found


def get_group_lrs(opt_state: Any) -> jax.Array:
    """The per-group learning rates ``f32[G]`` stored in ``opt_state``.

    Raises:
      ValueError: if ``opt_state`` holds no :class:`GroupLrState`, or several with different
        rates.
    """
    states = _group_states(opt_state)
    first = states[0].group_lrs
    for s in states[1:]:
        if s.group_lrs.shape != first.shape or not bool(jnp.all(s.group_lrs == first)):
            raise ValueError(
                f"opt_state holds {len(states)} GroupLrStates with different rates; read them "
                "with jax.tree.leaves(opt_state, is_leaf=...) instead"
            )
    return first


def set_group_lrs(opt_state: Any, lrs: ArrayLike) -> Any:
    """Returns ``opt_state`` with every :class:`GroupLrState`'s rates replaced by ``lrs``.

    Functional (the input is not modified); ``lrs`` is cast to float32. The shape must stay
    ``(G,)``, so a jitted train step is reused without recompiling.

    Args:
      opt_state: an optimizer state containing a :class:`GroupLrState`.
      lrs: f32[G] new learning rates (finite, >= 0).

    Returns:
      The new optimizer state.
    """
    states = _group_states(opt_state)
    shape = states[0].group_lrs.shape
    if isinstance(lrs, jax.core.Tracer):
        new = jnp.asarray(lrs, jnp.float32)
    else:
        new = jnp.asarray(_as_lr_vector(lrs))
    if new.shape != shape:
        raise ValueError(
            f"set_group_lrs got {new.shape[0] if new.ndim == 1 else new.shape} rates but the "
            f"optimizer has {shape[0]} groups; the number of groups is fixed by the labels"
        )
    return jax.tree.map(
        lambda x: x._replace(group_lrs=new) if _is_group_state(x) else x,
        opt_state,
        is_leaf=_is_group_state,
    )


def _zero_adam(x: Any) -> Any:
    if isinstance(x, optax.ScaleByAdamState):
        return optax.ScaleByAdamState(
            count=jnp.zeros_like(x.count),
            mu=jax.tree.map(jnp.zeros_like, x.mu),
            nu=jax.tree.map(jnp.zeros_like, x.nu),
        )
    return x


def start_phase(
    opt_state: Any,
    *,
    total_steps: ArrayLike,
    warmup_steps: ArrayLike,
    reset_moments: bool = False,
) -> Any:
    """Starts a new training phase: schedule count to 0 and new ``T``/``W``.

    The authors rebuild each slot's schedule for every ``fit`` call (task or shift phase) but
    keep the Adam moments; ``reset_moments=True`` zeroes every ``ScaleByAdamState`` (moments
    and bias-correction count) instead, as if new optimizers were created. Only array values
    change, so a jitted train step is reused.

    Args:
      opt_state: an optimizer state containing a :class:`GroupLrState`.
      total_steps: new phase length ``T`` (see :func:`lrdist_jax.schedules.phase_lengths`).
      warmup_steps: new warmup length ``W``.
      reset_moments: also zero the Adam state.

    Returns:
      The new optimizer state.
    """
    _group_states(opt_state)
    _check_schedule(SCHEDULE_KINDS[0], total_steps, warmup_steps)
    t = jnp.asarray(total_steps, jnp.int32)
    w = jnp.asarray(warmup_steps, jnp.int32)

    def reset(x):
        if _is_group_state(x):
            return x._replace(count=jnp.zeros_like(x.count), total_steps=t, warmup_steps=w)
        return _zero_adam(x) if reset_moments else x

    return jax.tree.map(
        reset,
        opt_state,
        is_leaf=lambda x: _is_group_state(x) or isinstance(x, optax.ScaleByAdamState),
    )
