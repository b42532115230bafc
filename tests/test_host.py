"""The glibc allocator tuning applied on import and the steps' XLA:CPU options
(docs/performance.md)."""

import platform

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrdist_jax import host
from lrdist_jax.host import (
    ALLOCATOR_ENV,
    XLA_OPTIONS_ENV,
    step_compiler_options,
    tune_host_allocator,
)
from lrdist_jax.models import BertClassifier, BertConfig, TaskHead
from lrdist_jax.parity import parity_batch
from lrdist_jax.train.step import LossConfig, TrainState, make_step_fns


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(ALLOCATOR_ENV, "0")
    assert tune_host_allocator() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applies_on_glibc(monkeypatch):
    monkeypatch.delenv(ALLOCATOR_ENV, raising=False)
    assert tune_host_allocator() is True


def test_step_options_on_cpu_and_their_opt_outs(monkeypatch):
    monkeypatch.delenv(XLA_OPTIONS_ENV, raising=False)
    opts = step_compiler_options()
    assert "LIBRARY_FUSION_TYPE_ELTWISE" in opts["xla_cpu_experimental_ynn_fusion_type"]
    assert step_compiler_options("gpu") == {} and step_compiler_options("tpu") == {}
    monkeypatch.setenv(XLA_OPTIONS_ENV, "0")
    assert step_compiler_options() == {}


def test_rejected_options_fall_back_with_a_warning(monkeypatch):
    monkeypatch.delenv(XLA_OPTIONS_ENV, raising=False)
    monkeypatch.setattr(host, "_CPU_OPTIONS", {"xla_cpu_no_such_option_here": "true"})
    with pytest.warns(UserWarning, match="xla_cpu_no_such_option_here"):
        assert step_compiler_options() == {}


def _two_steps():
    config = BertConfig(
        vocab_size=101,
        hidden_size=32,  # [8, 16, 32] activations: large enough for YNNPACK's fusions
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    model = BertClassifier(config, (TaskHead("t", 2),), use_pooler=True)
    ids, mask, types = (jnp.asarray(a, jnp.int32) for a in parity_batch(101, batch=8, length=16))
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "labels": jnp.asarray([0, 1, 1, 0, 1, 0, 0, 1], jnp.int32),
        "weights": jnp.ones(8, jnp.float32),
    }
    params = model.init(jax.random.key(0), ids)["params"]
    tx = optax.adamw(1e-3)
    fns = make_step_fns(model, tx, LossConfig(dropout=True), is_regression={"t": False})
    state = TrainState.create(params, tx.init(params))
    hlos = [s.compile().as_text() for s in fns.train.lower(state, batch, head="t")]
    for _ in range(2):
        state, metrics = fns.train(state, batch, head="t")
    return [h.count("__ynn_fusion") for h in hlos], float(metrics["loss"]), state.params


def test_train_step_uses_the_options_and_computes_the_same(monkeypatch):
    monkeypatch.delenv(XLA_OPTIONS_ENV, raising=False)
    n_tuned, loss_tuned, params_tuned = _two_steps()
    monkeypatch.setenv(XLA_OPTIONS_ENV, "0")
    n_plain, loss_plain, params_plain = _two_steps()
    # the gradients compile with element-wise YNNPACK fusions, the update as a second executable
    # without them (docs/performance.md, eighth round); untuned, one executable
    assert len(n_tuned) == 2 and len(n_plain) == 1
    assert n_tuned[0] > n_plain[0] and n_tuned[1] == 0
    np.testing.assert_allclose(loss_tuned, loss_plain, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        params_tuned,
        params_plain,
    )
