"""GLUE metrics against sklearn / scipy, degenerate inputs, task dispatch."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from lrdist_jax.metrics import (
    accuracy,
    f1,
    matthews_corrcoef,
    pearson,
    primary_metric,
    spearman,
    task_metrics,
)


@pytest.mark.parametrize("seed", range(6))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    labels = rng.integers(0, 2, size=n)
    preds = np.where(rng.random(n) < 0.7, labels, 1 - labels)
    assert accuracy(preds, labels) == pytest.approx(skm.accuracy_score(labels, preds))
    assert f1(preds, labels) == pytest.approx(skm.f1_score(labels, preds, zero_division=0.0))
    assert matthews_corrcoef(preds, labels) == pytest.approx(skm.matthews_corrcoef(labels, preds))


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_mcc_matches_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    labels, preds = rng.integers(0, 3, size=200), rng.integers(0, 3, size=200)
    preds[:80] = labels[:80]
    assert matthews_corrcoef(preds, labels) == pytest.approx(skm.matthews_corrcoef(labels, preds))


@pytest.mark.parametrize("seed", range(6))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 300))
    x = rng.normal(size=n).astype(np.float32)
    y = (x + rng.normal(size=n)).astype(np.float32)
    if seed % 2:  # heavy ties, like STS-B's 0.2-step scores
        x, y = np.round(x), np.round(y * 2) / 2
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-6)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-6)


def test_degenerate_cases_are_zero_not_nan():
    labels = np.array([0, 1, 1, 0, 1])
    assert matthews_corrcoef(np.ones(5, int), labels) == 0.0  # constant predictions
    assert matthews_corrcoef(np.zeros(5, int), labels) == 0.0
    assert matthews_corrcoef(labels, np.ones(5, int)) == 0.0  # constant labels
    assert f1(np.zeros(5, int), np.zeros(5, int)) == 0.0  # no positives anywhere
    assert pearson(np.full(5, 2.5), np.arange(5.0)) == 0.0
    assert spearman(np.arange(5.0), np.ones(5)) == 0.0
    assert matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert matthews_corrcoef(1 - labels, labels) == pytest.approx(-1.0)
    assert spearman(np.arange(6.0), np.arange(6.0) ** 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero examples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="3 entries but labels has 2"):
        accuracy([0, 1, 1], [0, 1])


def test_task_metrics_dispatch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=50)
    logits = rng.normal(size=(50, 2)).astype(np.float32)
    preds = logits.argmax(-1)
    m = task_metrics("mrpc", logits, labels)
    assert list(m) == ["accuracy", "f1"]
    assert m["f1"] == pytest.approx(skm.f1_score(labels, preds))
    assert task_metrics("mrpc", preds, labels) == m  # predictions work as well as logits
    c = task_metrics("cola", logits, labels)
    assert set(c) == {"accuracy", "mcc"}
    assert c["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, preds))
    assert list(task_metrics("rte", logits, labels)) == ["accuracy"]
    three = rng.normal(size=(50, 3))
    mnli_labels = rng.integers(0, 3, size=50)
    assert task_metrics("mnli", three, mnli_labels)["accuracy"] == pytest.approx(
        np.mean(three.argmax(-1) == mnli_labels)
    )
    scores = rng.uniform(0, 5, size=50).astype(np.float32)
    out = (scores + rng.normal(size=50))[:, None]
    s = task_metrics("stsb", out, scores)
    assert set(s) == {"pearson", "spearman"}
    assert s["pearson"] == pytest.approx(stats.pearsonr(out[:, 0], scores)[0], abs=1e-6)
    assert task_metrics("stsb", out[:, 0], scores) == s


def test_task_metrics_mask_drops_padding_rows():
    labels = np.array([1, 0, 1, 1, 0, 0])
    preds = np.array([1, 0, 0, 1, 1, 1])
    weights = np.array([1, 1, 1, 1, 0, 0], np.float32)
    m = task_metrics("sst2", preds, labels, mask=weights)
    assert m["accuracy"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="mask has 3 entries"):
        task_metrics("sst2", preds, labels, mask=weights[:3])


def test_primary_metric():
    assert primary_metric("mrpc") == "f1" and primary_metric("cola") == "mcc"
    assert primary_metric("stsb") == "pearson" and primary_metric("rte") == "accuracy"
    assert primary_metric("qqp") == "f1" and primary_metric("SST-2") == "accuracy"
    with pytest.raises(ValueError, match="valid names"):
        primary_metric("squad")
