"""Hyperband schedulers with integer bracket arithmetic and a synchronous ask/tell loop.

Two schedulers share one interface (``ask``, ``report``, ``tell``, ``is_finished``, ``best``,
``schedule``, ``format_schedule``, ``settings``):

* :class:`Hyperband` — synchronous Hyperband (Li et al. 2018): brackets of successive halving,
  each rung trained for its own budget; promotions keep the top ``n // eta`` configurations.
* :class:`StoppingHyperband` — the asynchronous "stopping" variant the authors ran through
  AutoGluon 0.3.1 (``HyperbandScheduler(type='stopping', grace_period=1, reduction_factor=2,
  brackets=1)``, METHODS.md §1.6): every trial is started for the full budget and stopped early
  by a :class:`StoppingRule` at rung levels ``grace * rf**k < max_t``.

Bracket counts are computed with integers only. Floating ``log(243, 3)`` is ``4.999...``, which
makes a float implementation one bracket short for exact powers (STYLE_ANCHORS.md pain point 7).

Configurations come from a *sampler* (``ask() -> config``, ``tell(config, reward, budget)``,
``settings() -> dict``), e.g. :class:`lrdist_jax.search.bo.SkoptSampler`. The schedulers do not
import scikit-optimize and can be tested without it.

References:
  Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar, "Hyperband: A Novel Bandit-Based Approach to
  Hyperparameter Optimization", JMLR 18 (2018), https://arxiv.org/abs/1603.06560.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

__all__ = [
    "BRACKET_ORDERS",
    "Bracket",
    "Hyperband",
    "Rung",
    "Sampler",
    "StoppingHyperband",
    "StoppingRule",
    "Trial",
    "TrialResult",
    "format_brackets",
    "hyperband_brackets",
    "max_bracket_index",
    "stopping_rung_levels",
]

BRACKET_ORDERS = ("descending", "ascending")

_STATUSES = ("completed", "stopped", "failed")


class Sampler(Protocol):
    """What a scheduler needs from a configuration sampler."""

    def ask(self) -> dict[str, Any]:
        """Returns a new configuration, e.g. ``{"lrs": [1e-5, ...]}``."""

    def tell(self, config: Mapping[str, Any], reward: float, budget: int) -> None:
        """Records ``reward`` (NaN for a failed trial) observed for ``config`` at ``budget``."""

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings that determine the sampler's proposals."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One evaluation: train ``config`` for ``budget`` units.

    Attributes:
      id: Sequential trial id (0, 1, ...) in the order the trials were asked.
      config: The configuration, e.g. ``{"lrs": [...]}``.
      budget: Training budget in integer units (epochs of each phase).
      bracket: Hyperband bracket index ``s`` (number of halvings); 0 in stopping mode.
      rung: Rung index inside the bracket (0 = first evaluation of a configuration).
      parent: Id of the trial this one was promoted from (``None`` for new configurations).
    """

    id: int
    config: dict[str, Any]
    budget: int
    bracket: int
    rung: int
    parent: int | None = None


class TrialResult(NamedTuple):
    """A finished trial and its reward (``best()`` returns one)."""

    trial: Trial
    reward: float


@dataclasses.dataclass(frozen=True)
class Rung:
    """A rung of a bracket: ``n_configs`` configurations evaluated at ``budget``."""

    budget: int
    n_configs: int


@dataclasses.dataclass(frozen=True)
class Bracket:
    """A bracket ``s`` of Hyperband: rungs ordered by increasing budget."""

    index: int
    rungs: tuple[Rung, ...]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def max_bracket_index(min_budget: int, max_budget: int, eta: int) -> int:
    """Largest ``s`` with ``eta**s * min_budget <= max_budget``, computed with integers.

    Args:
      min_budget: Smallest budget a configuration is trained for (>= 1).
      max_budget: Largest budget (>= min_budget).
      eta: Reduction factor (>= 2).

    Returns:
      ``s_max``; Hyperband then has ``s_max + 1`` brackets.

    Examples:
      >>> max_bracket_index(1, 243, 3)  # exact power: float log gives 4.999...
      5
      >>> max_bracket_index(1, 10, 3)
      2
    """
    _check_int("min_budget", min_budget, 1)
    _check_int("max_budget", max_budget, 1)
    _check_int("eta", eta, 2)
    if max_budget < min_budget:
        raise ValueError(f"max_budget ({max_budget}) must be >= min_budget ({min_budget}).")
    s = 0
    while min_budget * eta ** (s + 1) <= max_budget:
        s += 1
    return s


def hyperband_brackets(min_budget: int, max_budget: int, eta: int = 3) -> list[Bracket]:
    """The Hyperband plan: brackets ``s = s_max, ..., 0`` with their rungs.

    Bracket ``s`` starts ``n = ceil((s_max + 1) * eta**s / (s + 1))`` configurations; rung ``i``
    keeps ``n // eta**i`` of them and trains each for ``max_budget // eta**(s - i)`` units
    (Li et al. 2018, Algorithm 1, with the budget ratio ``R = max_budget / min_budget`` and integer
    budgets). The last rung of every bracket is trained for ``max_budget``.

    Args:
      min_budget: Smallest budget (>= 1).
      max_budget: Largest budget (>= min_budget).
      eta: Reduction factor (>= 2).

    Returns:
      A list of :class:`Bracket`, most exploratory first.
    """
    s_max = max_bracket_index(min_budget, max_budget, eta)
    brackets = []
    for s in range(s_max, -1, -1):
        n = -(-(s_max + 1) * eta**s // (s + 1))  # integer ceil division
        rungs = tuple(
            Rung(budget=max_budget // eta ** (s - i), n_configs=n // eta**i) for i in range(s + 1)
        )
        brackets.append(Bracket(index=s, rungs=rungs))
    return brackets


def format_brackets(brackets: list[Bracket], title: str = "Hyperband schedule") -> str:
    """A printable table of a plan: one line per bracket with ``n_configs x budget`` per rung."""
    lines = [title]
    total_trials = 0
    total_budget = 0
    for b in brackets:
        cells = " -> ".join(f"{r.n_configs:>3d} x {r.budget:<3d}" for r in b.rungs)
        trials = sum(r.n_configs for r in b.rungs)
        budget = sum(r.n_configs * r.budget for r in b.rungs)
        total_trials += trials
        total_budget += budget
        lines.append(
            f"  bracket s={b.index:<2d} {cells}   ({trials} trials, {budget} budget units)"
        )
    lines.append(f"  total: {total_trials} trials, {total_budget} budget units")
    return "\n".join(lines)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


class _SchedulerBase:
    """Trial bookkeeping shared by both schedulers."""

    mode: str = ""

    def __init__(self, sampler: Sampler | None) -> None:
        self.sampler = sampler
        self.trials: dict[int, Trial] = {}
        self.results: dict[int, tuple[str, float | None]] = {}
        self._next_id = 0

    def _new_trial(self, config: dict[str, Any], budget: int, bracket: int, rung: int, parent):
        trial = Trial(self._next_id, dict(config), budget, bracket, rung, parent)
        self.trials[trial.id] = trial
        self._next_id += 1
        return trial

    def _new_config(self) -> dict[str, Any]:
        if self.sampler is None:
            raise RuntimeError(
                f"{type(self).__name__} has no sampler: pass sampler=... to the constructor or "
                "use lrdist_jax.search.runner.run_search, which attaches one."
            )
        return self.sampler.ask()

    def _record(self, trial_id: int, reward: float | None, status: str) -> tuple[Trial, float]:
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, got {status!r}.")
        if trial_id not in self.trials:
            raise ValueError(f"Unknown trial id {trial_id}: tell() only trials returned by ask().")
        if trial_id in self.results:
            raise ValueError(f"Trial {trial_id} was already told; each trial is told once.")
        value = float(reward) if reward is not None else math.nan
        if status == "completed" and not math.isfinite(value):
            status = "failed"
        self.results[trial_id] = (status, value if math.isfinite(value) else None)
        return self.trials[trial_id], value

    @property
    def pending(self) -> list[int]:
        """Ids of trials asked but not yet told."""
        return [i for i in self.trials if i not in self.results]

    def _best_among(self, ids) -> TrialResult | None:
        best = None
        for i in ids:
            status, reward = self.results.get(i, ("", None))
            if status == "completed" and reward is not None:
                if best is None or reward > best.reward:
                    best = TrialResult(self.trials[i], reward)
        return best


class Hyperband(_SchedulerBase):
    """Synchronous Hyperband with a sequential ask/tell interface.

    Brackets run one after another, ``s = s_max`` (most configurations, smallest budget) first
    as in Li et al., or ``s = 0`` first with ``bracket_order="ascending"`` (full-budget results
    arrive sooner, and a model-based sampler has them when it proposes the screened brackets'
    configurations); inside a bracket, rung ``i + 1`` starts
    when every trial of rung ``i`` has been told, and receives the top ``n_{i+1}`` configurations
    of rung ``i`` by reward (ties: earlier trial first). Trials that failed (non-finite reward) are
    never promoted, so a rung may run fewer trials than planned. New configurations are drawn
    from the sampler lazily, one per ``ask()``, so a model-based sampler sees every result told
    so far. Every result is passed on with ``sampler.tell(config, reward, budget)``.

    ``ask()`` returns ``None`` while the current rung waits for results (only possible with
    several workers) and once the search is finished. With one worker (``ask``, run, ``tell``)
    it never returns ``None`` before :attr:`is_finished`, so the loop cannot deadlock.

    Args:
      min_budget: Smallest budget (>= 1).
      max_budget: Largest budget (>= min_budget).
      eta: Reduction factor (>= 2).
      sampler: Configuration sampler; may be attached later (``run_search`` does it).
      iterations: How many times the full set of brackets is run.
      bracket_order: ``"descending"`` (``s = s_max`` first, the paper's) or ``"ascending"``.

    Examples:
      >>> hb = Hyperband(1, 9, eta=3)
      >>> [[(r.n_configs, r.budget) for r in b.rungs] for b in hb.schedule()]
      [[(9, 1), (3, 3), (1, 9)], [(5, 3), (1, 9)], [(3, 9)]]

    References:
      Li et al., "Hyperband", JMLR 2018, https://arxiv.org/abs/1603.06560.
    """

    mode = "hyperband"

    def __init__(
        self,
        min_budget: int,
        max_budget: int,
        eta: int = 3,
        *,
        sampler: Sampler | None = None,
        iterations: int = 1,
        bracket_order: str = "descending",
    ) -> None:
        super().__init__(sampler)
        if bracket_order not in BRACKET_ORDERS:
            raise ValueError(f"bracket_order={bracket_order!r}; choose one of {BRACKET_ORDERS}.")
        self.min_budget = min_budget
        self.max_budget = max_budget
        self.eta = eta
        self.iterations = _check_int("iterations", iterations, 1)
        self.bracket_order = bracket_order
        self._brackets = hyperband_brackets(min_budget, max_budget, eta)
        if bracket_order == "ascending":
            self._brackets.reverse()
        self._plan = [b for _ in range(iterations) for b in self._brackets]
        self._bracket_pos = 0
        self._rung = 0
        self._queue: list[tuple[dict[str, Any], int | None]] = []  # promoted, not yet asked
        self._new_left = 0  # new configurations still to draw for rung 0
        self._rung_ids: list[int] = []
        self._finished = False
        self._start_bracket()

    # -- plan ---------------------------------------------------------------------------------
    def schedule(self) -> list[Bracket]:
        """The plan for one iteration, in the order it runs (see :func:`hyperband_brackets`)."""
        return list(self._brackets)

    def format_schedule(self) -> str:
        """A printable table of the plan; print it before running."""
        title = (
            f"Hyperband schedule (min_budget={self.min_budget}, max_budget={self.max_budget}, "
            f"eta={self.eta}, iterations={self.iterations}, brackets {self.bracket_order}; "
            "per iteration:)"
        )
        return format_brackets(self._brackets, title)

    @property
    def total_trials(self) -> int:
        """Number of trials if nothing fails (an upper bound otherwise)."""
        per_iter = sum(r.n_configs for b in self._brackets for r in b.rungs)
        return per_iter * self.iterations

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings (stored in ``search.json`` by the runner)."""
        return {
            "type": "hyperband",
            "min_budget": self.min_budget,
            "max_budget": self.max_budget,
            "eta": self.eta,
            "iterations": self.iterations,
            # Only when non-default, so that searches begun before the option still resume.
            **({"bracket_order": self.bracket_order} if self.bracket_order != "descending" else {}),
        }

    # -- ask / tell ---------------------------------------------------------------------------
    @property
    def is_finished(self) -> bool:
        """True once every bracket of every iteration has been run and told."""
        return self._finished

    def _start_bracket(self) -> None:
        self._rung = 0
        self._rung_ids = []
        self._queue = []
        self._new_left = self._plan[self._bracket_pos].rungs[0].n_configs

    def ask(self) -> Trial | None:
        """The next trial to run, or ``None`` when waiting for results or finished."""
        if self._finished:
            return None
        bracket = self._plan[self._bracket_pos]
        rung = bracket.rungs[self._rung]
        if self._rung == 0 and self._new_left > 0:
            self._new_left -= 1
            config, parent = self._new_config(), None
        elif self._queue:
            config, parent = self._queue.pop(0)
        else:
            return None
        trial = self._new_trial(config, rung.budget, bracket.index, self._rung, parent)
        self._rung_ids.append(trial.id)
        return trial

    def report(self, trial_id: int, epoch: int, value: float) -> bool:
        """Intermediate results do not stop trials in synchronous Hyperband: returns False."""
        del trial_id, epoch, value
        return False

    def tell(self, trial_id: int, reward: float | None, status: str = "completed") -> None:
        """Records the result of a trial; non-finite or ``None`` rewards count as failed.

        Args:
          trial_id: Id of a trial returned by :meth:`ask`.
          reward: Final reward (higher is better).
          status: ``"completed"``, ``"stopped"`` or ``"failed"``; only completed trials with a
            finite reward can be promoted.
        """
        trial, value = self._record(trial_id, reward, status)
        if self.sampler is not None:
            self.sampler.tell(trial.config, value, trial.budget)
        rung_done = (
            self._new_left == 0
            and not self._queue
            and all(i in self.results for i in self._rung_ids)
        )
        if rung_done and trial_id in self._rung_ids:
            self._advance()

    def _advance(self) -> None:
        bracket = self._plan[self._bracket_pos]
        if self._rung + 1 < len(bracket.rungs):
            keep = bracket.rungs[self._rung + 1].n_configs
            ok = [
                i
                for i in self._rung_ids
                if self.results[i][0] == "completed" and self.results[i][1] is not None
            ]
            ok.sort(key=lambda i: (-self.results[i][1], i))
            survivors = ok[:keep]
            if survivors:
                self._rung += 1
                self._rung_ids = []
                self._queue = [(self.trials[i].config, i) for i in survivors]
                return
        self._bracket_pos += 1
        if self._bracket_pos == len(self._plan):
            self._finished = True
        else:
            self._start_bracket()

    def best(self) -> TrialResult | None:
        """Best completed trial at the largest budget any trial completed at (``None`` if none)."""
        done = [i for i, (st, r) in self.results.items() if st == "completed" and r is not None]
        if not done:
            return None
        top = max(self.trials[i].budget for i in done)
        return self._best_among(i for i in done if self.trials[i].budget == top)


def stopping_rung_levels(max_t: int, grace_period: int = 1, reduction_factor: int = 2) -> tuple:
    """Rung levels ``grace_period * reduction_factor**k < max_t`` (integers only).

    Examples:
      >>> stopping_rung_levels(6)  # the authors' 5 epochs: max_t = epochs + 1
      (1, 2, 4)
      >>> stopping_rung_levels(4)
      (1, 2)
    """
    _check_int("grace_period", grace_period, 1)
    _check_int("reduction_factor", reduction_factor, 2)
    _check_int("max_t", max_t, 1)
    levels = []
    level = grace_period
    while level < max_t:
        levels.append(level)
        level *= reduction_factor
    return tuple(levels)


class StoppingRule:
    """Early stopping at rung levels: AutoGluon's "stopping" Hyperband with one bracket.

    When a trial reports value ``v`` at time ``t`` equal to a rung level (and has not been
    recorded at that rung before), let ``c`` be the ``(1 - 1/rf)`` quantile (linear
    interpolation, ``numpy.percentile``'s default) of the values *previously* recorded at that
    rung. The trial stops if ``c`` exists and ``v < c``, i.e. it continues when it is in the top
    ``1/rf`` of the values seen so far; ``v`` is then recorded. The first trial at a rung always
    continues. Reports at other times never stop a trial. A non-finite value always stops the
    trial and is not recorded.

    Args:
      max_t: Rungs are the levels ``grace_period * reduction_factor**k < max_t``.
      grace_period: First rung level (the authors used 1).
      reduction_factor: ``rf`` (the authors used 2).
    """

    def __init__(self, max_t: int, grace_period: int = 1, reduction_factor: int = 2) -> None:
        self.max_t = max_t
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.rung_levels = stopping_rung_levels(max_t, grace_period, reduction_factor)
        self.recorded: dict[int, dict[int, float]] = {level: {} for level in self.rung_levels}

    def cutoff(self, level: int) -> float | None:
        """The current continuation threshold at rung ``level`` (``None`` if no values yet)."""
        values = sorted(self.recorded[level].values())
        if not values:
            return None
        pos = (len(values) - 1) * (1.0 - 1.0 / self.reduction_factor)
        lo = math.floor(pos)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (pos - lo) * (values[hi] - values[lo])

    def on_report(self, trial_id: int, t: int, value: float) -> bool:
        """Returns True if the trial must stop after reporting ``value`` at time ``t``."""
        value = float(value)
        if not math.isfinite(value):
            return True
        if t not in self.recorded or trial_id in self.recorded[t]:
            return False
        c = self.cutoff(t)
        self.recorded[t][trial_id] = value
        return c is not None and value < c


class StoppingHyperband(_SchedulerBase):
    """One-bracket "stopping" Hyperband as the authors ran it (METHODS.md §1.6).

    Every trial gets ``max_budget``; the objective reports after each task-1 epoch (``epoch`` =
    1, 2, ...) and :class:`StoppingRule` stops it at rung levels ``grace * rf**k < max_t``. The
    sampler is told intermediate values at rung levels (``budget`` = the level) and final rewards
    at ``budget = max_t`` (AutoGluon's final report is at ``epoch = epochs + 1 = max_t``), so the
    two reward scales never share a surrogate model.

    Args:
      max_budget: Epochs per phase given to every trial.
      num_trials: Number of trials (the authors used 50).
      grace_period: First rung level (1).
      reduction_factor: ``rf`` (2).
      max_t: Defaults to ``max_budget + 1`` (the authors' ``max_t = epochs + 1``).
      sampler: Configuration sampler; may be attached later.
    """

    mode = "stopping"

    def __init__(
        self,
        max_budget: int,
        num_trials: int,
        *,
        grace_period: int = 1,
        reduction_factor: int = 2,
        max_t: int | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        super().__init__(sampler)
        self.max_budget = _check_int("max_budget", max_budget, 1)
        self.num_trials = _check_int("num_trials", num_trials, 1)
        self.max_t = max_budget + 1 if max_t is None else _check_int("max_t", max_t, 1)
        self.rule = StoppingRule(self.max_t, grace_period, reduction_factor)

    def schedule(self) -> list[Bracket]:
        """One bracket: rung levels and max_budget, each with num_trials (an upper bound)."""
        rungs = [Rung(level, self.num_trials) for level in self.rule.rung_levels]
        return [Bracket(0, (*rungs, Rung(self.max_budget, self.num_trials)))]

    def format_schedule(self) -> str:
        """A printable description of the plan; print it before running."""
        rf = self.rule.reduction_factor
        return (
            f"Stopping Hyperband: {self.num_trials} trials x max_budget {self.max_budget}; "
            f"rung levels {list(self.rule.rung_levels)} (grace_period {self.rule.grace_period}, "
            f"reduction_factor {rf}, max_t {self.max_t}); a trial continues at a rung if its "
            f"value is in the top 1/{rf} of the values recorded there so far"
        )

    @property
    def total_trials(self) -> int:
        """Number of trials."""
        return self.num_trials

    @property
    def is_finished(self) -> bool:
        """True once ``num_trials`` trials have been told."""
        return len(self.results) >= self.num_trials

    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings (stored in ``search.json`` by the runner)."""
        return {
            "type": "stopping_hyperband",
            "max_budget": self.max_budget,
            "num_trials": self.num_trials,
            "grace_period": self.rule.grace_period,
            "reduction_factor": self.rule.reduction_factor,
            "max_t": self.max_t,
        }

    def ask(self) -> Trial | None:
        """A new trial with a fresh configuration, or ``None`` once ``num_trials`` were asked."""
        if self._next_id >= self.num_trials:
            return None
        return self._new_trial(self._new_config(), self.max_budget, 0, 0, None)

    def report(self, trial_id: int, epoch: int, value: float) -> bool:
        """Intermediate result after ``epoch`` (1-based); returns True if the trial must stop."""
        if trial_id not in self.trials or trial_id in self.results:
            raise ValueError(f"report() for trial {trial_id}, which is not running.")
        value = float(value)
        at_new_rung = epoch in self.rule.recorded and trial_id not in self.rule.recorded[epoch]
        stop = self.rule.on_report(trial_id, epoch, value)
        if self.sampler is not None and at_new_rung and math.isfinite(value):
            self.sampler.tell(self.trials[trial_id].config, value, int(epoch))
        return stop

    def tell(self, trial_id: int, reward: float | None, status: str = "completed") -> None:
        """Records the end of a trial (``completed``, ``stopped`` or ``failed``)."""
        trial, value = self._record(trial_id, reward, status)
        if self.sampler is not None and self.results[trial_id][0] != "stopped":
            self.sampler.tell(trial.config, value, self.max_t)

    def best(self) -> TrialResult | None:
        """Best completed trial by final reward (``None`` if none completed)."""
        return self._best_among(sorted(self.results))
