"""The search objective: one trial of the sequential protocol on a shared :class:`Experiment`.

:class:`SequentialObjective` implements the runner's objective protocol
(``objective(config, budget, report) -> dict``, see :mod:`lrdist_jax.search.runner`) on top of
ONE :class:`~lrdist_jax.train.sequential.Experiment`. The experiment loads the data and builds
the jitted steps once; the per-slot learning rates live in the optimizer state and the phase
length in the schedule state, so every trial - whatever its learning rates or budget - reuses
the compiled train step (no recompilation per trial).

A trial (METHODS.md 1.6, 1.7) trains task 1 for ``budget`` epochs, calling
``report(epoch, acc_task1 / 2)`` after each task-1 epoch but the last (the authors'
intermediate reward, on which Hyperband stops trials), then task 2 for ``budget`` epochs. A
completed trial's reward is ``p_s + p_o`` (or another metric, see ``metric``). Trials are
deterministic: the initial state, dropout keys and batch order depend only on the run
configuration's seed, so the same configuration and budget give the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["METRICS", "SequentialObjective"]

#: Metrics a search can maximise: the authors' reward ``p_s + p_o``, its parts, the task-1
#: accuracy before the shift, or ``retention = -forgetting = p_o - acc_task1``.
METRICS = ("reward", "p_s", "p_o", "acc_task1", "retention")


class SequentialObjective:
    """Search objective running the task-1 -> task-2 protocol of one :class:`Experiment`.

    Args:
      experiment: A built :class:`~lrdist_jax.train.sequential.Experiment`; all trials share its
        data and compiled steps.
      metric: What a completed trial returns as ``reward`` (higher is better), one of
        :data:`METRICS`. Default ``"reward"`` = ``p_s + p_o`` (METHODS.md 1.7). Whatever the
        metric, the trial's ``metrics`` hold ``acc_task1``, ``p_s``, ``p_o`` and
        ``forgetting``, so ``lrdist-jax combine`` can rank the trials by ``p_s + p_o``.

    Attributes:
      epochs_trained: Training epochs run by all calls so far (task-1 plus task-2 epochs,
        counted from train steps, so stopped and failed trials count what they used).
      calls: Number of trials run.

    Example::

        exp = Experiment(make_config("smoke", "sst2", "mrpc"), progress=False)
        objective = SequentialObjective(exp)
        run_search(objective, SkoptSampler(exp.num_slots), StoppingHyperband(2, 10),
                   workdir="search")
    """

    def __init__(self, experiment: Any, *, metric: str = "reward") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r}; choose one of {METRICS}.")
        self.experiment = experiment
        self.metric = metric
        self.epochs_trained = 0.0
        self.calls = 0
        cfg = experiment.config
        from lrdist_jax.data import num_batches

        # Train steps per epoch of each phase (batches are dropped at the remainder).
        self._steps_per_epoch = [
            max(1, num_batches(len(p.train), cfg.batch_size, True)) for p in experiment.phases
        ]

    @property
    def num_slots(self) -> int:
        """Length of the ``lrs`` list a configuration must have."""
        return int(self.experiment.num_slots)

    def _epochs(self, steps: int, budget: int) -> float:
        n1, n2 = self._steps_per_epoch[0], self._steps_per_epoch[-1]
        phase1 = n1 * budget
        return min(steps, phase1) / n1 + max(0, steps - phase1) / n2

    def __call__(
        self, config: Mapping[str, Any], budget: int, report: Callable[[int, float], bool]
    ) -> dict[str, Any]:
        """Runs one trial.

        Args:
          config: ``{"lrs": [lr_0, ..., lr_{S-1}]}``, ``S = experiment.num_slots``.
          budget: Epochs of each phase (>= 1).
          report: ``report(epoch, acc_task1 / 2) -> stop`` after each task-1 epoch but the
            last; passed through to :meth:`Experiment.run`.

        Returns:
          ``{"status": "completed", "reward": float, "metrics": {...}}`` with metrics
          ``acc_task1, p_s, p_o, forgetting, epochs_trained``; or ``{"status": "stopped",
          "metrics": {"acc_task1", "epochs_trained"}}`` (task-1 accuracy at the stop).

        Raises:
          ValueError: for a configuration without ``S`` positive finite learning rates or a
            budget below 1.
          FloatingPointError: when training diverges (non-finite loss); the runner records the
            trial as failed and the search goes on.
        """
        lrs = np.asarray(config.get("lrs", ()), np.float64)
        if lrs.shape != (self.num_slots,) or not np.all(np.isfinite(lrs)) or np.any(lrs <= 0):
            raise ValueError(
                f"config['lrs'] must be {self.num_slots} positive finite learning rates (one per "
                f"slot of this model), got {config.get('lrs')!r}."
            )
        budget = int(budget)
        if budget < 1:
            raise ValueError(f"budget must be >= 1 epoch, got {budget}.")
        last = {"step": 0, "epoch": 0, "value": math.nan}

        def on_step(step: int, state: Any) -> None:
            del state
            last["step"] = step

        def passthrough(epoch: int, value: float) -> bool:
            last["epoch"], last["value"] = int(epoch), float(value)
            return bool(report(epoch, value))

        self.calls += 1
        try:
            results = self.experiment.run(
                lrs=lrs.astype(np.float32), epochs=budget, report=passthrough, on_step=on_step
            )
        finally:
            self.epochs_trained += self._epochs(last["step"], budget)
        epochs = self._epochs(last["step"], budget)
        if results["status"] == "stopped":
            return {
                "status": "stopped",
                "metrics": {"acc_task1": 2.0 * last["value"], "epochs_trained": epochs},
            }
        metrics = {k: float(results[k]) for k in ("acc_task1", "p_s", "p_o", "forgetting")}
        metrics["epochs_trained"] = epochs
        value = (
            -metrics["forgetting"] if self.metric == "retention" else float(results[self.metric])
        )
        return {"status": "completed", "reward": value, "metrics": metrics}
