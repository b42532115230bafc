"""Samplers of learning-rate distributions: scikit-optimize GP (``SkoptSampler``) and random.

A configuration is ``{"lrs": [lr_0, ..., lr_{S-1}]}``, one learning rate per slot, each in
``[low, high]`` with a log-uniform prior (METHODS.md §1.6: ten ``Real(1e-7, 1e-3, log=True)``).
Both samplers start from the flat ``1e-5`` distribution, AutoGluon's default configuration and
the first trial of every run of the authors. Proposals are fully deterministic for a given seed
and history: random proposal ``k`` uses its own generator seeded by ``(seed, k)``, and each GP
proposal builds a fresh ``skopt.Optimizer`` seeded the same way. A resumed search that replays
its history therefore proposes exactly the same configurations.

scikit-optimize quirks handled here (STYLE_ANCHORS.md pain point 8): it minimises (rewards are
negated); ``ask()`` may re-propose an evaluated point (repeats are moved by a small deterministic
jitter in log space); NaN objective values break the GP (failed trials are told as the worst
value seen at that budget). Upstream skopt crashed on numpy >= 1.24; the maintained fork
``scikit-optimize>=0.10.2`` works with numpy 2.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["RandomSampler", "SkoptSampler"]

_FLAT_LR = 1e-5
_FIDELITIES = ("largest", "joint")


def _seed_int(*keys: int) -> int:
    """A 31-bit integer seed derived from integer keys (for skopt's ``random_state``)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] >> 1)


def _minimisation_targets(obs: list[tuple[list[float], float]]) -> list[float]:
    """Rewards of one budget level negated for skopt, failed ones (NaN) as the level's worst."""
    worst = min(r for _, r in obs if math.isfinite(r))
    return [-(r if math.isfinite(r) else worst) for _, r in obs]


class _LogUniformSampler:
    """Shared parts: search space, first configuration, random proposals, de-duplication."""

    kind = ""

    def __init__(
        self,
        num_slots: int,
        *,
        low: float,
        high: float,
        seed: int,
        first_config: Sequence[float] | None | str,
        jitter: float,
    ) -> None:
        if not isinstance(num_slots, int) or num_slots < 1:
            raise ValueError(f"num_slots must be a positive integer, got {num_slots!r}.")
        if not (0 < low < high):
            raise ValueError(f"Need 0 < low < high, got low={low!r}, high={high!r}.")
        self.num_slots = num_slots
        self.low = float(low)
        self.high = float(high)
        self.seed = int(seed)
        self.jitter = float(jitter)
        if isinstance(first_config, str):
            if first_config != "flat":
                raise ValueError(
                    f"first_config must be 'flat', None or a list, got {first_config!r}"
                )
            first_config = [_FLAT_LR] * num_slots
        if first_config is not None:
            first_config = [float(v) for v in first_config]
            self._check_lrs(first_config, "first_config")
        self.first_config = first_config
        self.proposals: list[list[float]] = []
        self._log_proposals = np.empty((0, num_slots))

    def _check_lrs(self, lrs: Sequence[float], what: str) -> None:
        if len(lrs) != self.num_slots:
            raise ValueError(f"{what} has {len(lrs)} learning rates, expected {self.num_slots}.")
        bad = [v for v in lrs if not (self.low <= v <= self.high)]
        if bad:
            raise ValueError(
                f"{what} has learning rates outside [{self.low:g}, {self.high:g}]: {bad}."
            )

    def _clip(self, log_x: np.ndarray) -> list[float]:
        return [min(max(float(10.0**v), self.low), self.high) for v in log_x]

    def _random_point(self, index: int) -> list[float]:
        rng = np.random.default_rng([self.seed, index])
        return self._clip(rng.uniform(math.log10(self.low), math.log10(self.high), self.num_slots))

    def _is_repeat(self, lrs: Sequence[float]) -> bool:
        if not len(self._log_proposals):
            return False
        x = np.log10(np.asarray(lrs, dtype=np.float64))
        return bool(np.any(np.max(np.abs(self._log_proposals - x), axis=1) < 1e-6))

    def _dedupe(self, lrs: list[float], index: int) -> list[float]:
        """Moves a repeated proposal by a deterministic jitter of ~``self.jitter`` decades."""
        attempt = 0
        while self._is_repeat(lrs):
            attempt += 1
            rng = np.random.default_rng([self.seed, index, attempt, 7])
            log_x = np.log10(np.asarray(lrs)) + rng.normal(0.0, self.jitter * attempt, len(lrs))
            lo, hi = math.log10(self.low), math.log10(self.high)
            log_x = np.where(log_x > hi, 2 * hi - log_x, log_x)  # reflect into the box
            log_x = np.where(log_x < lo, 2 * lo - log_x, log_x)
            lrs = self._clip(log_x)
        return lrs

    def _propose(self, index: int) -> list[float]:
        raise NotImplementedError

    def ask(self) -> dict[str, Any]:
        """The next configuration ``{"lrs": [...]}`` (``num_slots`` floats in ``[low, high]``)."""
        index = len(self.proposals)
        if index == 0 and self.first_config is not None:
            lrs = list(self.first_config)
        else:
            lrs = self._dedupe(self._propose(index), index)
        self.proposals.append(lrs)
        self._log_proposals = np.vstack([self._log_proposals, np.log10(np.asarray([lrs]))])
        return {"lrs": list(lrs)}

    def _base_settings(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "num_slots": self.num_slots,
            "low": self.low,
            "high": self.high,
            "seed": self.seed,
            "first_config": self.first_config,
            "jitter": self.jitter,
        }


class RandomSampler(_LogUniformSampler):
    """Random search over per-slot log-uniform learning rates (baseline for benchmarks).

    Args:
      num_slots: Number of learning-rate slots (10 in the paper).
      seed: Seed; proposal ``k`` depends only on ``(seed, k)``.
      low: Lower bound of every slot (1e-7).
      high: Upper bound of every slot (1e-3).
      first_config: First proposal; default ``"flat"`` = ``[1e-5] * num_slots``; ``None`` to
        start at random.
      jitter: Standard deviation (decades) of the jitter that moves repeated proposals.
    """

    kind = "random"

    def __init__(
        self,
        num_slots: int,
        seed: int = 0,
        *,
        low: float = 1e-7,
        high: float = 1e-3,
        first_config: Sequence[float] | None | str = "flat",
        jitter: float = 0.05,
    ) -> None:
        super().__init__(
            num_slots, low=low, high=high, seed=seed, first_config=first_config, jitter=jitter
        )

    def _propose(self, index: int) -> list[float]:
        return self._random_point(index)

    def tell(self, config: Mapping[str, Any], reward: float, budget: int) -> None:
        """Ignored (random search does not learn); checks the configuration's length."""
        del reward, budget
        self._check_lrs(list(config["lrs"]), "config['lrs']")

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings (stored in ``search.json`` by the runner)."""
        return self._base_settings()


class SkoptSampler(_LogUniformSampler):
    """Gaussian-process Bayesian optimisation of a learning-rate distribution with scikit-optimize.

    Proposal ``k``: ``first_config`` for ``k = 0``; a random log-uniform point while
    ``k < n_initial_points`` or while no budget level has ``min_points`` finite observations;
    otherwise the next point of a fresh ``skopt.Optimizer`` (GP, ``Real(low, high,
    prior="log-uniform")`` per slot) fitted to all observations at the *largest* budget level
    that has at least ``min_points`` finite observations, with rewards negated (skopt
    minimises) and failed trials (NaN) set to the worst value at that budget. With
    ``fidelity="largest"`` (the default, BOHB's rule) observations at other budgets never enter
    that fit, so rewards on different scales (e.g. intermediate ``acc/2`` and final
    ``p_s + p_o``) are never mixed.

    ``fidelity="joint"`` fits one GP to the observations at *every* budget level instead, with
    the budget as an extra input (``log budget`` scaled to ``[0, 1]`` over the levels seen), and
    proposes the maximiser of expected improvement at the same level the default would fit on.
    Low-budget results then inform the model long before the largest level holds enough points,
    which is what Hyperband's lower rungs are for when they rank configurations like the full
    budget does. It is closer to the authors' searcher: AutoGluon's ``bayesopt`` searcher
    inside its Hyperband scheduler models configuration and resource jointly (Klein et al.,
    2020, "Model-based asynchronous hyperparameter and neural architecture search",
    arXiv 2003.10865). The GP is skopt's default (``cook_estimator("GP")``: constant times
    Matern 5/2 with one length scale per input, Gaussian noise, normalised targets); EI is
    maximised over ``n_acq_points`` random points, the best five polished with L-BFGS-B. Under
    :class:`~lrdist_jax.search.hyperband.StoppingHyperband` the levels hold two metrics
    (``acc_task1 / 2`` at the rungs, ``p_s + p_o`` at ``max_t``), which the joint model treats
    as one function of the budget, as AutoGluon's searcher did in the authors' runs.

    Refitting from scratch at every proposal keeps the sampler a pure function of
    ``(seed, history)``, which the resumable runner relies on. GP fits run with one BLAS thread
    (``threadpoolctl``): for tens of points this is several times faster than oversubscribed
    threads on a shared machine, and bit-reproducible.

    Args:
      num_slots: Number of learning-rate slots (10 in the paper).
      low: Lower bound of every slot (1e-7).
      high: Upper bound of every slot (1e-3).
      seed: Seed for random proposals and for skopt's ``random_state``.
      n_initial_points: Number of proposals (including ``first_config``) that are random.
        Default: ``min_points``.
      first_config: First proposal; default ``"flat"`` = ``[1e-5] * num_slots`` (AutoGluon's
        default configuration, the authors' first trial); ``None`` to start at random.
      min_points: Finite observations a budget level needs before a GP is fitted on it.
        Default ``num_slots // 2 + 2``.
      acq_func: skopt acquisition function (``"EI"``, ``"LCB"``, ``"PI"``, ``"gp_hedge"``);
        ``fidelity="joint"`` always uses EI.
      acq_optimizer: ``"auto"``, ``"lbfgs"`` or ``"sampling"`` (``fidelity="largest"`` only).
      n_acq_points: Random points at which the acquisition is evaluated (skopt ``n_points``).
      jitter: Standard deviation (decades) of the jitter that moves repeated proposals.
      fidelity: ``"largest"`` (a GP on the largest budget level with ``min_points`` finite
        observations) or ``"joint"`` (one GP over configuration and budget, on all levels).

    Examples:
      >>> s = SkoptSampler(2, seed=0)
      >>> s.ask()
      {'lrs': [1e-05, 1e-05]}
    """

    kind = "skopt"

    def __init__(
        self,
        num_slots: int,
        *,
        low: float = 1e-7,
        high: float = 1e-3,
        seed: int = 0,
        n_initial_points: int | None = None,
        first_config: Sequence[float] | None | str = "flat",
        min_points: int | None = None,
        acq_func: str = "EI",
        acq_optimizer: str = "auto",
        n_acq_points: int = 10000,
        jitter: float = 0.05,
        fidelity: str = "largest",
    ) -> None:
        super().__init__(
            num_slots, low=low, high=high, seed=seed, first_config=first_config, jitter=jitter
        )
        if fidelity not in _FIDELITIES:
            raise ValueError(f"fidelity must be one of {_FIDELITIES}, got {fidelity!r}.")
        self.fidelity = fidelity
        self.min_points = num_slots // 2 + 2 if min_points is None else int(min_points)
        if self.min_points < 1:
            raise ValueError(f"min_points must be >= 1, got {min_points!r}.")
        self.n_initial_points = (
            self.min_points if n_initial_points is None else int(n_initial_points)
        )
        self.acq_func = acq_func
        self.acq_optimizer = acq_optimizer
        self.n_acq_points = int(n_acq_points)
        # budget -> list of (lrs, reward or nan), in the order told
        self.observations: dict[int, list[tuple[list[float], float]]] = {}
        self.model_budgets: list[int | None] = []  # budget of the GP used per proposal (or None)

    def tell(self, config: Mapping[str, Any], reward: float, budget: int) -> None:
        """Records ``reward`` (higher is better; NaN = failed) of ``config`` at ``budget``."""
        lrs = [float(v) for v in config["lrs"]]
        self._check_lrs(lrs, "config['lrs']")
        reward = float(reward) if reward is not None else math.nan
        self.observations.setdefault(int(budget), []).append((lrs, reward))

    def model_budget(self) -> int | None:
        """The budget level the GP would be fitted on now (``None``: not enough data)."""
        eligible = [
            b
            for b, obs in self.observations.items()
            if sum(math.isfinite(r) for _, r in obs) >= self.min_points
        ]
        return max(eligible) if eligible else None

    def _propose(self, index: int) -> list[float]:
        budget = self.model_budget() if index >= self.n_initial_points else None
        self.model_budgets.append(budget)
        if budget is None:
            return self._random_point(index)
        if self.fidelity == "joint":
            return self._joint_point(index, budget)
        return self._gp_point(index, self.observations[budget])

    def _gp_point(self, index: int, obs: list[tuple[list[float], float]]) -> list[float]:
        from skopt import Optimizer
        from skopt.space import Real
        from threadpoolctl import threadpool_limits

        xs = [x for x, _ in obs]
        ys = _minimisation_targets(obs)
        space = [Real(self.low, self.high, prior="log-uniform") for _ in range(self.num_slots)]
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = Optimizer(
                space,
                base_estimator="GP",
                n_initial_points=0,
                acq_func=self.acq_func,
                acq_optimizer=self.acq_optimizer,
                acq_optimizer_kwargs={"n_points": self.n_acq_points},
                random_state=_seed_int(self.seed, index),
            )
            opt.tell(xs, ys)
            point = opt.ask()
        return [min(max(float(v), self.low), self.high) for v in point]

    def _joint_point(self, index: int, budget: int) -> list[float]:
        """EI maximiser at ``budget`` of one GP fitted on every budget level (``"joint"``)."""
        from scipy.optimize import fmin_l_bfgs_b
        from skopt.acquisition import gaussian_ei
        from skopt.space import Space
        from skopt.utils import cook_estimator
        from threadpoolctl import threadpool_limits

        lo, hi = math.log10(self.low), math.log10(self.high)
        levels = [
            b for b, obs in self.observations.items() if any(math.isfinite(r) for _, r in obs)
        ]
        b_lo, b_hi = math.log(min(levels)), math.log(max(levels))

        def budget_coord(b: int) -> float:
            return 0.0 if b_hi == b_lo else (math.log(b) - b_lo) / (b_hi - b_lo)

        rows, ys = [], []
        for b in levels:
            obs = self.observations[b]
            rows += [[*((np.log10(lrs) - lo) / (hi - lo)), budget_coord(b)] for lrs, _ in obs]
            ys += _minimisation_targets(obs)
        x_obs, y_obs = np.asarray(rows), np.asarray(ys)
        at_level = x_obs[:, -1] == budget_coord(budget)
        y_opt = float(y_obs[at_level].min())
        column = np.full((1, 1), budget_coord(budget))

        def neg_ei(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = gaussian_ei(
                np.hstack([x[None, :], column]), model, y_opt=y_opt, return_grad=True
            )
            return -float(np.ravel(value)[0]), -np.ravel(grad)[: self.num_slots]

        rng = np.random.default_rng([self.seed, index, 11])
        candidates = rng.uniform(size=(self.n_acq_points, self.num_slots))
        with threadpool_limits(limits=1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cook_estimator(
                "GP",
                space=Space([(0.0, 1.0)] * (self.num_slots + 1)),
                random_state=_seed_int(self.seed, index),
            )
            model.fit(x_obs, y_obs)
            ei = gaussian_ei(
                np.hstack([candidates, np.repeat(column, len(candidates), 0)]), model, y_opt=y_opt
            )
            best_x, best_value = candidates[int(np.argmax(ei))], -float(np.max(ei))
            for start in candidates[np.argsort(-ei)[:5]]:
                x, value, _ = fmin_l_bfgs_b(neg_ei, start, bounds=[(0.0, 1.0)] * self.num_slots)
                if value < best_value:
                    best_x, best_value = x, float(value)
        return self._clip(lo + np.clip(best_x, 0.0, 1.0) * (hi - lo))

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings (stored in ``search.json`` by the runner)."""
        out = {
            **self._base_settings(),
            "n_initial_points": self.n_initial_points,
            "min_points": self.min_points,
            "acq_func": self.acq_func,
            "acq_optimizer": self.acq_optimizer,
            "n_acq_points": self.n_acq_points,
        }
        if self.fidelity != "largest":  # absent by default: older searches still resume
            out["fidelity"] = self.fidelity
        return out
