"""GLUE metrics in plain numpy: accuracy, binary F1, MCC, Pearson and Spearman correlation.

Kenneweg et al. (arXiv 2404.01317) report accuracy for every task; Yang & Ma (arXiv 2210.10325)
report F1 for MRPC, MCC for CoLA and accuracy for RTE/QNLI, and GLUE reports Pearson/Spearman for
STS-B (METHODS.md 5, item 42). Degenerate inputs (a constant prediction or label vector) give 0.0
for MCC and the correlations instead of NaN, so failed runs stay comparable (the failed-run rule of
Yang & Ma counts CoLA MCC <= 0 as a failure).
"""

from __future__ import annotations

import numpy as np

from lrdist_jax.data.glue import get_task

__all__ = [
    "accuracy",
    "f1",
    "matthews_corrcoef",
    "pearson",
    "primary_metric",
    "spearman",
    "task_metrics",
]


def _pair(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    preds, labels = np.asarray(preds).reshape(-1), np.asarray(labels).reshape(-1)
    if preds.shape != labels.shape:
        raise ValueError(f"preds has {preds.shape[0]} entries but labels has {labels.shape[0]}.")
    if preds.size == 0:
        raise ValueError("cannot compute a metric on zero examples.")
    return preds, labels


def accuracy(preds, labels) -> float:
    """Fraction of ``preds == labels`` (both ``int[N]``)."""
    preds, labels = _pair(preds, labels)
    return float(np.mean(preds == labels))


def f1(preds, labels) -> float:
    """Binary F1 of the positive class 1: ``2 TP / (2 TP + FP + FN)``; 0.0 with no positives."""
    preds, labels = _pair(preds, labels)
    p, t = preds == 1, labels == 1
    tp = np.sum(p & t)
    denom = 2 * tp + np.sum(p & ~t) + np.sum(~p & t)
    return float(2 * tp / denom) if denom else 0.0


def matthews_corrcoef(preds, labels) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004, as sklearn); 0.0 when undefined."""
    preds, labels = _pair(preds, labels)
    classes, inv = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k = classes.shape[0]
    t_idx, p_idx = inv[: labels.shape[0]], inv[labels.shape[0] :]
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (t_idx, p_idx), 1.0)
    t_sum, p_sum = conf.sum(axis=1), conf.sum(axis=0)
    s, c = conf.sum(), np.trace(conf)
    cov_yy = s * s - p_sum @ p_sum
    cov_tt = s * s - t_sum @ t_sum
    if cov_yy == 0 or cov_tt == 0:
        return 0.0
    return float((c * s - t_sum @ p_sum) / np.sqrt(cov_yy * cov_tt))


def pearson(x, y) -> float:
    """Pearson correlation of two ``f[N]`` vectors; 0.0 if either is constant."""
    x, y = _pair(x, y)
    x = x.astype(np.float64) - x.mean(dtype=np.float64)
    y = y.astype(np.float64) - y.mean(dtype=np.float64)
    denom = np.sqrt((x @ x) * (y @ y))
    return float(np.clip((x @ y) / denom, -1.0, 1.0)) if denom > 0 else 0.0


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (``scipy.stats.rankdata``)."""
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inv.reshape(-1)]


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson of average ranks); 0.0 if either is constant."""
    x, y = _pair(x, y)
    return pearson(_average_ranks(x), _average_ranks(y))


_FUNCS = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def task_metrics(task_name: str, logits_or_preds, labels, *, mask=None) -> dict[str, float]:
    """All metrics of a GLUE task (``TaskSpec.metrics``).

    Args:
        task_name: A GLUE task name.
        logits_or_preds: ``f32[N, C]`` logits (argmax is taken) or ``int[N]`` predicted classes;
            for STS-B ``f32[N, 1]`` (column 0 is used) or ``f32[N]`` scores.
        labels: ``int[N]`` class ids or ``f32[N]`` scores.
        mask: Optional ``bool[N]`` (or the ``weights`` of padded batches): only rows where it is
            nonzero are scored.

    Returns:
        ``{metric_name: value}``; classification tasks always include ``"accuracy"``.
    """
    spec = get_task(task_name)
    out = np.asarray(logits_or_preds)
    labels = np.asarray(labels).reshape(-1)
    if spec.is_regression:
        preds = out[:, 0] if out.ndim == 2 else out
    else:
        preds = out.argmax(axis=-1) if out.ndim == 2 else out
    if preds.ndim != 1:
        raise ValueError(f"expected [N] predictions or [N, C] logits, got shape {out.shape}.")
    if mask is not None:
        keep = np.asarray(mask).reshape(-1) != 0
        if keep.shape != preds.shape or keep.shape != labels.shape:
            raise ValueError(
                f"mask has {keep.shape[0]} entries; preds {preds.shape[0]}, "
                f"labels {labels.shape[0]}."
            )
        preds, labels = preds[keep], labels[keep]
    names = (
        spec.metrics
        if spec.is_regression
        else ("accuracy",) + tuple(m for m in spec.metrics if m != "accuracy")
    )
    return {name: _FUNCS[name](preds, labels) for name in names}


def primary_metric(task_name: str) -> str:
    """The headline metric of a task: the first one GLUE lists (``f1`` for MRPC/QQP, ``mcc`` for
    CoLA, ``pearson`` for STS-B, ``accuracy`` otherwise)."""
    return get_task(task_name).primary
