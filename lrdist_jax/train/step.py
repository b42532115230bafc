"""The jitted train and eval steps over a pure :class:`TrainState`.

The optimizer is closed over (never a static argument) and every hyperparameter that changes
between runs of one search — the per-slot learning rates and the phase schedule — lives in the
optimizer state, so runs that differ only in learning rates reuse one compiled step. The head
name is static: a sequential run compiles one step per head (per batch shape bucket).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrdist_jax.host import step_compiler_options
from lrdist_jax.losses import EWCState, ewc_penalty, r3f_loss, task_loss
from lrdist_jax.models import SPECTRAL_COLLECTION, BertClassifier

__all__ = [
    "LossConfig",
    "StepFns",
    "TrainState",
    "TrainStep",
    "abstract_state",
    "make_step_fns",
    "zeros_ewc",
]


class TrainState(NamedTuple):
    """Everything a run carries from step to step (a pytree; checkpointed as a whole).

    Attributes:
      step: ``i32[]`` global step count (over all phases).
      params: model parameters (``{"bert": ..., "heads": ...}``), float32.
      opt_state: optimizer state, holding the per-slot learning rates and the phase schedule.
      spectral: R4F power-iteration vectors (``{}`` without R4F).
      ewc: :class:`~lrdist_jax.losses.EWCState` (anchor and Fisher), or ``()`` without EWC.
      rng: ``u32[2]`` base PRNG key; step ``t`` uses ``fold_in(rng, t)``.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    spectral: Any
    ewc: Any
    rng: jax.Array

    @classmethod
    def create(
        cls, params: Any, opt_state: Any, *, seed: int = 0, spectral: Any = None, ewc: Any = ()
    ) -> TrainState:
        """A state at step 0 with base key ``PRNGKey(seed)`` (``spectral`` defaults to ``{}``)."""
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=opt_state,
            spectral={} if spectral is None else spectral,
            ewc=ewc,
            rng=jax.random.PRNGKey(seed),
        )


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The training objective (static for the compiled step)."""

    dropout: bool = True
    double_softmax: bool = False
    r3f_lambda: float = 0.0
    r3f_eps: float = 1e-5
    r3f_noise: str = "uniform"
    ewc_lambda: float = 0.0
    freeze_inactive_heads: bool = True


class TrainStep:
    """The jitted train step: ``step(state, batch, head=...) -> (state, metrics)``, donating
    ``state``.

    Off the CPU (and with ``LRDIST_JAX_XLA_CPU_OPTIONS=0``) it is one executable. On the CPU,
    where the step compiles with :func:`lrdist_jax.host.step_compiler_options`, it is two: the
    loss and gradients with those options, then the optimizer update without them. YNNPACK's
    element-wise fusions speed up the model's forward and backward passes, but each has a single
    output, so inside them AdamW's update of the moments and the parameters becomes several
    passes over memory; XLA's own loop fusions write all three in one pass (the MiniLM's clip +
    ten-group AdamW update: 48 ms with the options, 30 ms without; ``docs/performance.md``,
    eighth round). The gradients pass from one executable to the next in device memory.

    Attributes:
      stages: the jitted functions, run in order: ``(step,)``, or ``(gradients, update)`` with
        ``gradients(state, batch) -> (grads, spectral, metrics)`` and ``update(state, grads,
        spectral, metrics) -> (state, metrics)`` (``head`` static in each).
    """

    def __init__(self, stages: tuple[Any, ...]):
        self.stages = stages

    def __call__(self, state: TrainState, batch, head: str):
        if len(self.stages) == 1:
            return self.stages[0](state, batch, head=head)
        gradients, update = self.stages
        return update(state, *gradients(state, batch, head=head), head=head)

    def lower(self, state: TrainState, batch, head: str) -> tuple[Any, ...]:
        """Each stage lowered for these arguments (``jax.stages.Lowered``; compile each)."""
        first = self.stages[0].lower(state, batch, head=head)
        if len(self.stages) == 1:
            return (first,)
        outputs = jax.tree.map(lambda o: jax.ShapeDtypeStruct(o.shape, o.dtype), first.out_info)
        return first, self.stages[1].lower(state, *outputs, head=head)

    def cache_size(self) -> int:
        """Executables compiled so far, summed over the stages."""
        return sum(stage._cache_size() for stage in self.stages)


class StepFns(NamedTuple):
    """``train(state, batch, head=...) -> (state, metrics)`` (a :class:`TrainStep`, donating
    ``state``) and ``logits(state, batch, head=...) -> f32[B, C]``."""

    train: TrainStep
    logits: Any


def _backbone_mask(params):
    return {k: jax.tree.map(lambda _, is_bert=(k == "bert"): is_bert, v) for k, v in params.items()}


def make_step_fns(
    model: BertClassifier,
    tx: optax.GradientTransformation,
    loss_config: LossConfig,
    *,
    is_regression: dict[str, bool],
    state_sharding: Any = None,
) -> StepFns:
    """Builds the jitted train and eval steps.

    Args:
      model: the :class:`BertClassifier`.
      tx: the optimizer (e.g. ``chain(clip_by_component_norm, layerwise_adam)``).
      loss_config: the objective.
      is_regression: per head name, whether it is a regression head (MSE, no R3F KL).
      state_sharding: optional sharding of the state outputs (replicated on a data mesh).

    Batches are dicts with ``input_ids, attention_mask, token_type_ids: i32[B, T]``,
    ``labels: i32[B] | f32[B]`` and ``weights: f32[B]``. The eval step and the model's
    forward and backward passes compile with :func:`lrdist_jax.host.step_compiler_options`
    (YNNPACK element-wise fusions on the CPU; there the optimizer update is a second executable
    without them, see :class:`TrainStep`).
    """
    cfg = loss_config
    r4f = model.spectral_norm

    def loss_fn(params, spectral, ewc, batch, rng, head):
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        regression = is_regression[head]

        def logits_fn(inputs_embeds, dropout_rng, carry):
            variables = {"params": params}
            if r4f:
                variables[SPECTRAL_COLLECTION] = carry
            out = model.apply(
                variables,
                ids,
                mask,
                types,
                head=head,
                inputs_embeds=inputs_embeds,
                deterministic=not cfg.dropout,
                rngs={"dropout": dropout_rng},
                mutable=[SPECTRAL_COLLECTION] if r4f else False,
            )
            if r4f:
                logits, updated = out
                return logits, updated[SPECTRAL_COLLECTION]
            return out, carry

        aux = {}
        if cfg.r3f_lambda > 0 and not regression:
            embeds = model.apply({"params": params}, ids, method=BertClassifier.embed_tokens)
            loss, r3f_aux = r3f_loss(
                logits_fn,
                embeds,
                batch["labels"],
                rng,
                lam=cfg.r3f_lambda,
                eps=cfg.r3f_eps,
                noise=cfg.r3f_noise,
                double_softmax=cfg.double_softmax,
                carry=spectral,
            )
            spectral = r3f_aux["carry"]
            aux.update(ce=r3f_aux["ce"], kl=r3f_aux["kl"])
        else:
            logits, spectral = logits_fn(None, rng, spectral)
            loss = task_loss(
                logits, batch["labels"], is_regression=regression, double_softmax=cfg.double_softmax
            )
            aux["ce"] = loss
        if cfg.ewc_lambda > 0:
            penalty = ewc_penalty(params, ewc, cfg.ewc_lambda, mask=_backbone_mask)
            aux["ewc"] = penalty
            loss = loss + penalty
        return loss, (spectral, aux)

    def gradients(state: TrainState, batch, head: str):
        rng = jax.random.fold_in(state.rng, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (spectral, aux)), grads = grad_fn(
            state.params, state.spectral, state.ewc, batch, rng, head
        )
        return grads, spectral, {"loss": loss, **aux}

    def update(state: TrainState, grads, spectral, metrics, head: str):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        if cfg.freeze_inactive_heads:
            updates = {
                **updates,
                "heads": {
                    k: (v if k == head else jax.tree.map(jnp.zeros_like, v))
                    for k, v in updates["heads"].items()
                },
            }
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "grad_norm": optax.global_norm(grads)}
        new_state = state._replace(
            step=state.step + 1, params=params, opt_state=opt_state, spectral=spectral
        )
        return new_state, metrics

    def train_step(state: TrainState, batch, head: str):
        return update(state, *gradients(state, batch, head), head)

    def logits_step(state: TrainState, batch, head: str):
        variables = {"params": state.params}
        if r4f:
            variables[SPECTRAL_COLLECTION] = state.spectral
        return model.apply(
            variables,
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            head=head,
            deterministic=True,
        )

    options = step_compiler_options()
    jit_kw = {"static_argnames": ("head",)}
    if state_sharding is not None:
        jit_kw["out_shardings"] = state_sharding
    if options:  # the CPU: the update compiles without the options (see TrainStep)
        stages = (
            jax.jit(gradients, compiler_options=options, **jit_kw),
            jax.jit(update, donate_argnums=(0,), **jit_kw),
        )
    else:
        stages = (jax.jit(train_step, donate_argnums=(0,), **jit_kw),)
    logits = jax.jit(logits_step, static_argnames=("head",), compiler_options=options)
    return StepFns(train=TrainStep(stages), logits=logits)


def abstract_state(state: TrainState) -> TrainState:
    """Shape/dtype/sharding structs of a state (the Orbax restore target)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        state,
    )


def zeros_ewc(params) -> EWCState:
    """A placeholder EWC state (zero Fisher) fixing the state structure before task 2."""
    return EWCState(
        anchor=jax.tree.map(jnp.zeros_like, params), fisher=jax.tree.map(jnp.zeros_like, params)
    )
