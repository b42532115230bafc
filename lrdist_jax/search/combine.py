"""Combining searched learning-rate distributions: rank-weighted geometric means (METHODS §1.8).

For one task pair, the completed trials are ranked by ``p_s + p_o`` (best first); the trial at
rank ``a`` gets weight ``base ** -a`` (``base = 1.8``, all trials used) and the pair's
distribution is the weighted geometric mean of the trials' rates, slot by slot. Across pairs
the distributions are combined by an unweighted geometric mean. From the authors' four logs
(sst2→mrpc, mrpc→sst2, qqp→mrpc, mrpc→qqp) this reproduces their published ``average_lr``.

Readers:

- :func:`read_kenneweg_log`: the authors' ``log_file.csv``, one comma-separated stream of
  floats, 13 per completed trial: ``acc_task1, p_s, p_o, lr_0 .. lr_9``.
- :func:`read_trials_jsonl`: this project's search ledger, one JSON object per line with
  ``status``, ``config.lrs`` and ``metrics.p_s`` / ``metrics.p_o``; only completed trials with
  both metrics count. A truncated last line (a crash while writing) is skipped with a warning.

References:
  Kenneweg et al., "Intelligent Learning Rate Distribution to reduce Catastrophic Forgetting in
  Transformers", arXiv 2404.01317 (code: ``plot.py``, ``log_average_weighted``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DEFAULT_BASE",
    "KENNEWEG_VALUES_PER_TRIAL",
    "TrialResult",
    "combine_files",
    "combine_pair",
    "combine_pairs",
    "rank_weights",
    "read_kenneweg_log",
    "read_trials",
    "read_trials_jsonl",
    "weighted_geometric_mean",
]

DEFAULT_BASE = 1.8
KENNEWEG_VALUES_PER_TRIAL = 13
_KENNEWEG_SLOTS = 10


class TrialResult(NamedTuple):
    """One completed trial of a task pair.

    Attributes:
      acc_task1: accuracy on task 1 after training on task 1 (NaN if unknown).
      p_s: accuracy on task 2 after training on task 2.
      p_o: accuracy on task 1 after training on task 2.
      lrs: ``f64[S]`` the trial's per-slot learning rates.
    """

    acc_task1: float
    p_s: float
    p_o: float
    lrs: np.ndarray


def rank_weights(rewards: ArrayLike, base: float = DEFAULT_BASE) -> np.ndarray:
    """Weights ``base ** -rank`` with rank 0 for the highest reward, in input order.

    Ranks are ``flip(argsort(rewards))``, the authors' expression.

    Args:
      rewards: f[K] rewards (e.g. ``p_s + p_o``).
      base: the weight ratio between consecutive ranks (> 1).

    Returns:
      ``f64[K]`` unnormalised weights.

    Examples:
      >>> rank_weights([0.5, 0.9, 0.7], base=2.0).tolist()
      [0.25, 1.0, 0.5]
    """
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D array, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    if not (math.isfinite(base) and base > 0):
        raise ValueError(f"base must be positive, got {base}")
    ranking = np.flip(np.argsort(r))
    weights = np.empty_like(r)
    weights[ranking] = float(base) ** -np.arange(r.size, dtype=np.float64)
    return weights


def weighted_geometric_mean(lrs: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """Per-slot ``exp(sum_k w_k log lr_k[s] / sum_k w_k)``.

    Args:
      lrs: f[K, S] rates of K distributions (positive).
      weights: f[K] non-negative weights with a positive sum.

    Returns:
      ``f64[S]``.

    Examples:
      >>> [round(float(v), 9) for v in weighted_geometric_mean([[1e-6, 1.0], [1e-4, 4.0]], [1, 1])]
      [1e-05, 2.0]
    """
    x = np.asarray(lrs, np.float64)
    w = np.asarray(weights, np.float64)
    if x.ndim != 2 or w.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"expected lrs f[K, S] and weights f[K], got {x.shape} and {w.shape}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("learning rates must be positive and finite")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be non-negative and finite with a positive sum")
    return np.exp((w[:, None] * np.log(x)).sum(axis=0) / w.sum())


def combine_pair(trials: Sequence[TrialResult], base: float = DEFAULT_BASE) -> np.ndarray:
    """One pair's distribution: trials ranked by ``p_s + p_o``, weights ``base ** -rank``.

    Args:
      trials: the pair's completed trials.
      base: weight ratio between consecutive ranks (1.8 in the paper).

    Returns:
      ``f64[S]``.
    """
    if not trials:
        raise ValueError("combine_pair needs at least one completed trial")
    rewards = [t.p_s + t.p_o for t in trials]
    lrs = np.stack([np.asarray(t.lrs, np.float64) for t in trials])
    return weighted_geometric_mean(lrs, rank_weights(rewards, base))


def combine_pairs(per_pair_lrs: ArrayLike) -> np.ndarray:
    """Unweighted geometric mean of several pairs' distributions: f[P, S] -> ``f64[S]``."""
    x = np.asarray(per_pair_lrs, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected per-pair rates f[P, S], got shape {x.shape}")
    return weighted_geometric_mean(x, np.ones(x.shape[0]))


def _trial(path: Path, where: str, acc: float, p_s: float, p_o: float, lrs) -> TrialResult:
    arr = np.asarray(lrs, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{path}: {where}: 'lrs' must be a non-empty list of numbers")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{path}: {where}: learning rates must be positive, got {arr.tolist()}")
    if not (math.isfinite(p_s) and math.isfinite(p_o)):
        raise ValueError(f"{path}: {where}: p_s and p_o must be finite, got {p_s}, {p_o}")
    return TrialResult(float(acc), float(p_s), float(p_o), arr)


def read_kenneweg_log(path: str | os.PathLike) -> list[TrialResult]:
    """Reads the authors' ``log_file.csv`` (13 comma-separated floats per completed trial).

    Raises:
      ValueError: naming the file, if it is empty, holds a non-number, or its value count is
        not a multiple of 13.
    """
    path = Path(path)
    text = path.read_text()
    tokens = [t for t in text.replace("\n", ",").replace("\r", ",").split(",") if t.strip()]
    if not tokens:
        raise ValueError(f"{path}: empty log (no trials)")
    values = []
    for i, tok in enumerate(tokens):
        try:
            values.append(float(tok))
        except ValueError:
            raise ValueError(f"{path}: value {i} ({tok.strip()!r}) is not a number") from None
    per = KENNEWEG_VALUES_PER_TRIAL
    if len(values) % per:
        raise ValueError(
            f"{path}: {len(values)} values is not a multiple of {per} (acc_task1, p_s, p_o and "
            f"{_KENNEWEG_SLOTS} rates per trial); the file is truncated or not an authors' log"
        )
    return [
        _trial(
            path, f"trial {k}", *values[k * per : k * per + 3], values[k * per + 3 : (k + 1) * per]
        )
        for k in range(len(values) // per)
    ]


def read_trials_jsonl(path: str | os.PathLike) -> list[TrialResult]:
    """Reads completed trials (with ``p_s`` and ``p_o``) from a search ledger (JSON lines).

    Raises:
      ValueError: naming the file (and line), for an empty file, a malformed line other than a
        truncated last one, a completed record without ``config.lrs``, or no usable trial.
    """
    path = Path(path)
    raw = path.read_text()
    lines = raw.splitlines()
    if not any(line.strip() for line in lines):
        raise ValueError(f"{path}: empty ledger (no trials)")
    trials: list[TrialResult] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not raw.endswith("\n"):
                warnings.warn(f"{path}:{lineno}: skipping a truncated last line", stacklevel=2)
                continue
            raise ValueError(f"{path}:{lineno}: malformed JSON line ({e})") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
        if rec.get("status") != "completed":
            continue
        metrics = rec.get("metrics") or {}
        p_s, p_o = metrics.get("p_s"), metrics.get("p_o")
        if p_s is None or p_o is None:
            continue
        lrs = (rec.get("config") or {}).get("lrs")
        if lrs is None:
            raise ValueError(f"{path}:{lineno}: completed trial without config.lrs")
        acc = metrics.get("acc_task1")
        try:
            trials.append(
                _trial(path, f"line {lineno}", float("nan") if acc is None else acc, p_s, p_o, lrs)
            )
        except (TypeError, ValueError) as e:
            if str(path) in str(e):
                raise
            raise ValueError(f"{path}:{lineno}: bad trial record ({e})") from e
    if not trials:
        raise ValueError(f"{path}: no completed trial with metrics p_s and p_o")
    sizes = {t.lrs.size for t in trials}
    if len(sizes) > 1:
        raise ValueError(f"{path}: trials have different numbers of rates {sorted(sizes)}")
    return trials


def _detect_format(path: Path) -> str:
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    head = path.read_text()[:4096].lstrip()
    return "jsonl" if head.startswith("{") else "kenneweg2022"


def read_trials(path: str | os.PathLike, fmt: str = "auto") -> list[TrialResult]:
    """Reads trials in ``fmt`` ``"kenneweg2022"``, ``"jsonl"`` or ``"auto"`` (by content)."""
    path = Path(path)
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt == "kenneweg2022":
        return read_kenneweg_log(path)
    if fmt == "jsonl":
        return read_trials_jsonl(path)
    raise ValueError(f"unknown format {fmt!r}; use auto, kenneweg2022 or jsonl")


def combine_files(
    paths: Sequence[str | os.PathLike], *, fmt: str = "auto", base: float = DEFAULT_BASE
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Combines one trial file per task pair: ``(combined f64[S], per-pair f64[S] list)``.

    Raises:
      ValueError: for an unreadable file or pairs with different numbers of slots.
    """
    if not paths:
        raise ValueError("combine_files needs at least one file")
    per_pair = [combine_pair(read_trials(p, fmt), base) for p in paths]
    sizes = {v.size for v in per_pair}
    if len(sizes) > 1:
        raise ValueError(
            "the files have different numbers of slots: "
            + ", ".join(f"{p}: {v.size}" for p, v in zip(paths, per_pair, strict=True))
        )
    return combine_pairs(np.stack(per_pair)), per_pair
