"""Parity of the Flax BERT with transformers' PyTorch BertModel on the same weights."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrdist_jax.cli import main as cli_main
from lrdist_jax.models import (
    BertClassifier,
    BertConfig,
    BertModel,
    TaskHead,
    load_hf_bert,
    resolve_model_dir,
)
from lrdist_jax.parity import parity_batch

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4


def _save_torch_bert(tmp_path, seed=0, **cfg):
    torch.manual_seed(seed)
    config = transformers.BertConfig(**cfg)
    model = transformers.BertModel(config).eval()
    # Non-trivial LayerNorm and bias values so a wrong key map cannot pass by accident.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    return model


def _torch_outputs(model, ids, mask, types):
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(types),
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _flax_outputs(config, params, ids, mask, types, **kw):
    out = BertModel(config, **kw).apply(
        {"params": params}, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)
    )
    return np.asarray(out.last_hidden_state), np.asarray(out.pooler_output)


TINY_CONFIGS = {
    "1-layer": dict(
        num_hidden_layers=1, hidden_size=24, num_attention_heads=2, intermediate_size=40
    ),
    "2-layer-odd": dict(
        num_hidden_layers=2,
        hidden_size=30,
        num_attention_heads=3,
        intermediate_size=37,
        vocab_size=101,
        max_position_embeddings=40,
        type_vocab_size=3,
        layer_norm_eps=1e-7,
    ),
    "12-layer": dict(
        num_hidden_layers=12, hidden_size=32, num_attention_heads=4, intermediate_size=48
    ),
}


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_random_tiny_configs_match_torch(tmp_path, name):
    cfg = {"vocab_size": 211, "max_position_embeddings": 64, **TINY_CONFIGS[name]}
    torch_model = _save_torch_bert(tmp_path, **cfg)
    config, params = load_hf_bert(tmp_path)
    assert config.num_hidden_layers == cfg["num_hidden_layers"]
    ids, mask, types = parity_batch(config.vocab_size, batch=4, length=12)
    assert mask.min() == 0 and types.max() == 1  # padding and sentence pairs are exercised
    ref_h, ref_p = _torch_outputs(torch_model, ids, mask, types)
    h, p = _flax_outputs(config, params, ids, mask, types)
    np.testing.assert_allclose(h, ref_h, atol=TOL, rtol=0)
    np.testing.assert_allclose(p, ref_p, atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def minilm():
    config, params = load_hf_bert("minilm-l6")
    torch_model = transformers.BertModel.from_pretrained(str(resolve_model_dir("minilm-l6")))
    return config, params, torch_model.eval()


def test_offline_minilm_matches_torch_on_real_sentence_pairs(minilm):
    from lrdist_jax.models import load_tokenizer

    config, params, torch_model = minilm
    tok = load_tokenizer("minilm-l6")
    enc = tok(
        ["The cat sat on the mat.", "A considerably longer first sentence of the pair, padded."],
        ["A cat was sitting on a mat.", "Short."],
        padding=True,
        return_tensors="np",
    )
    ids, mask, types = (
        enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
    )
    assert mask.min() == 0 and types.max() == 1
    ref_h, ref_p = _torch_outputs(torch_model, ids, mask, types)
    h, p = _flax_outputs(config, params, ids, mask, types)
    np.testing.assert_allclose(h, ref_h, atol=TOL, rtol=0)
    np.testing.assert_allclose(p, ref_p, atol=TOL, rtol=0)


@pytest.mark.parametrize("use_pooler", [False, True])
def test_head_logits_match_torch_linear_head(minilm, use_pooler):
    config, params, torch_model = minilm
    heads = (TaskHead("task1", 3), TaskHead("task2", 1))
    model = BertClassifier(config, heads, use_pooler=use_pooler)
    ids, mask, types = parity_batch(config.vocab_size, batch=3, length=10, seed=3)
    variables = model.init(jax.random.key(0), jnp.asarray(ids))
    body = dict(params) if use_pooler else {k: v for k, v in params.items() if k != "pooler"}
    variables = {"params": {**variables["params"], "bert": body}}
    ref_h, ref_p = _torch_outputs(torch_model, ids, mask, types)
    feats = ref_p if use_pooler else ref_h[:, 0]
    for head in heads:
        kernel = np.asarray(variables["params"]["heads"][head.name]["kernel"])
        bias = np.array(variables["params"]["heads"][head.name]["bias"])
        linear = torch.nn.Linear(config.hidden_size, head.num_labels)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias))
            ref = linear(torch.from_numpy(feats)).numpy()
        got = model.apply(
            variables, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types), head=head.name
        )
        assert got.shape == (3, head.num_labels)
        np.testing.assert_allclose(np.asarray(got), ref, atol=TOL, rtol=0)


def test_check_catches_tanh_gelu(minilm):
    config, params, torch_model = minilm
    ids, mask, types = parity_batch(config.vocab_size, batch=4, length=12)
    ref_h, _ = _torch_outputs(torch_model, ids, mask, types)
    tanh_config = BertConfig(**{**config.__dict__, "hidden_act": "gelu_new"})
    h, _ = _flax_outputs(tanh_config, params, ids, mask, types)
    assert np.abs(h - ref_h).max() > TOL


def test_check_catches_untransposed_kernel(tmp_path):
    cfg = {"vocab_size": 211, "max_position_embeddings": 64, **TINY_CONFIGS["2-layer-odd"]}
    torch_model = _save_torch_bert(tmp_path, seed=1, **cfg)
    config, params = load_hf_bert(tmp_path)
    ids, mask, types = parity_batch(config.vocab_size, batch=4, length=12)
    ref_h, _ = _torch_outputs(torch_model, ids, mask, types)
    bad = jax.tree.map(lambda x: x, params)
    q = bad["encoder"]["layer"]["0"]["attention"]["self"]["query"]
    q["kernel"] = q["kernel"].T  # square (H, H): shape-compatible, numerically wrong
    h, _ = _flax_outputs(config, bad, ids, mask, types)
    assert np.abs(h - ref_h).max() > TOL


def test_bfloat16_compute_keeps_float32_params_and_stays_close(minilm):
    config, params, _ = minilm
    ids, mask, types = parity_batch(config.vocab_size, batch=2, length=8)
    h32, _ = _flax_outputs(config, params, ids, mask, types)
    h16, _ = _flax_outputs(config, params, ids, mask, types, dtype=jnp.bfloat16)
    assert h16.dtype == np.float32
    rel = np.linalg.norm(h16 - h32) / np.linalg.norm(h32)
    assert rel < 0.05


def test_dropout_switch(minilm):
    config, params, _ = minilm
    model = BertModel(config)
    ids = jnp.asarray(parity_batch(config.vocab_size, batch=2, length=8)[0])
    det = model.apply({"params": params}, ids).last_hidden_state
    det2 = model.apply({"params": params}, ids, deterministic=True).last_hidden_state
    drop = model.apply(
        {"params": params}, ids, deterministic=False, rngs={"dropout": jax.random.key(1)}
    ).last_hidden_state
    np.testing.assert_array_equal(det, det2)
    assert np.abs(np.asarray(drop - det)).max() > 1e-2


def test_inputs_embeds_entry_equals_token_lookup(minilm):
    config, params, _ = minilm
    model = BertModel(config)
    ids = jnp.asarray(parity_batch(config.vocab_size, batch=2, length=8)[0])
    embeds = model.apply({"params": params}, ids, method=BertModel.embed_tokens)
    assert embeds.shape == (2, 8, config.hidden_size)
    a = model.apply({"params": params}, ids).last_hidden_state
    b = model.apply({"params": params}, ids, inputs_embeds=embeds).last_hidden_state
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_loading_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_bert(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="not a BERT checkpoint"):
        load_hf_bert(tmp_path)
    cfg = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", **cfg}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_bert(tmp_path)


def test_wrong_shape_tensor_is_named(tmp_path):
    _save_torch_bert(
        tmp_path,
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=20,
    )
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 24
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"encoder/layer/0/intermediate/dense/\w+ has shape"):
        load_hf_bert(tmp_path)


def test_parity_cli_on_unseen_config(tmp_path, capsys):
    _save_torch_bert(
        tmp_path,
        seed=5,
        vocab_size=97,
        hidden_size=40,
        num_hidden_layers=3,
        num_attention_heads=5,
        intermediate_size=53,
        max_position_embeddings=33,
    )
    assert cli_main(["parity", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"last_hidden_state", "pooler_output"}
    assert max(out.values()) <= TOL


def test_parity_cli_exit_codes(tmp_path, capsys):
    assert cli_main(["parity", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    _save_torch_bert(
        tmp_path,
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=20,
    )
    # A tolerance below float32 round-off makes the comparison fail: exit code 1.
    assert cli_main(["parity", str(tmp_path), "--tolerance", "0"]) == 1


class _FullLastLayer(BertClassifier):
    """The classifier without the [CLS]-only last layer (the reference for the shortcut)."""

    def features(self, input_ids, attention_mask=None, token_type_ids=None, **kw):
        out = self.bert(input_ids, attention_mask, token_type_ids, **kw)
        return out.pooler_output if self.use_pooler else out.last_hidden_state[:, 0]


@pytest.mark.parametrize("deterministic", [True, False])
def test_cls_only_last_layer_is_the_first_row_of_the_full_one(minilm, deterministic):
    config, params, _ = minilm
    ids, mask, types = map(jnp.asarray, parity_batch(config.vocab_size, batch=3, length=12))
    model = BertModel(config)
    run = lambda cls_only: model.apply(  # noqa: E731
        {"params": params},
        ids,
        mask,
        types,
        deterministic=deterministic,
        cls_only=cls_only,
        rngs={"dropout": jax.random.key(4)},
    )
    full, short = run(False), run(True)
    assert short.last_hidden_state.shape == (3, 1, config.hidden_size)
    np.testing.assert_allclose(short.last_hidden_state, full.last_hidden_state[:, :1], atol=2e-6)
    np.testing.assert_allclose(short.pooler_output, full.pooler_output, atol=2e-6)


@pytest.mark.parametrize("use_pooler", [False, True])
def test_classifier_loss_and_gradients_equal_the_full_last_layer(use_pooler):
    """With dropout on, the shortcut draws the same masks: same loss, same gradients."""
    cfg = {"vocab_size": 211, "max_position_embeddings": 64, **TINY_CONFIGS["2-layer-odd"]}
    config = BertConfig(**cfg)
    ids, mask, types = map(jnp.asarray, parity_batch(config.vocab_size, batch=4, length=12))
    labels = jnp.asarray([0, 1, 1, 0])
    heads = (TaskHead("t", 2),)

    def loss_and_grads(cls):
        model = cls(config, heads, use_pooler=use_pooler)
        params = model.init(jax.random.key(0), ids)["params"]

        def loss(p):
            logits = model.apply(
                {"params": p},
                ids,
                mask,
                types,
                head="t",
                deterministic=False,
                rngs={"dropout": jax.random.key(9)},
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        return jax.jit(jax.value_and_grad(loss))(params)

    (l_short, g_short) = loss_and_grads(BertClassifier)
    (l_full, g_full) = loss_and_grads(_FullLastLayer)
    np.testing.assert_allclose(l_short, l_full, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4), g_short, g_full
    )
    # The last layer's query weights do receive gradient through the [CLS] row.
    q = g_short["bert"]["encoder"]["layer"][str(config.num_hidden_layers - 1)]["attention"]
    assert float(jnp.abs(q["self"]["query"]["kernel"]).max()) > 0
