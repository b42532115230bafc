"""Resumable sequential search loop: scheduler + sampler + objective + ledger.

:func:`run_search` asks the scheduler for a trial, runs the objective, appends the finished
trial to ``workdir/trials.jsonl`` (:class:`~lrdist_jax.search.ledger.TrialLedger`) and tells the
scheduler, until the scheduler is finished; then it writes ``workdir/best.json``.

Resume by deterministic replay: sampler and scheduler are pure functions of their settings,
their seed and the results told to them. A restarted search re-creates both from the same
settings, replays the ledger's records through ``ask``/``report``/``tell`` in order (checking
every replayed trial equals the recorded one) and continues. A trial that was running when the
process died was never recorded, so it is asked again - with the same id and configuration - and
run again. The finished set of trials is therefore the same as an uninterrupted run's, with
nothing lost or duplicated. ``workdir/search.json`` stores the settings; a workdir whose
settings differ is refused.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lrdist_jax.search.hyperband import Trial
from lrdist_jax.search.ledger import TrialLedger, to_strict_json

__all__ = ["Objective", "Report", "run_search", "search_settings"]

log = logging.getLogger(__name__)

Report = Callable[[int, float], bool]
"""``report(epoch, value) -> stop``: intermediate result after a task-1 epoch (1-based)."""

_SETTINGS_VERSION = 1


class Objective(Protocol):
    """What :func:`run_search` calls for each trial."""

    def __call__(self, config: dict, budget: int, report: Report) -> dict:
        """Trains with ``config`` (e.g. ``{"lrs": [...]}``) for ``budget`` units (epochs per phase).

        Calls ``report(epoch, value)`` after each task-1 epoch (``epoch`` = 1, 2, ...); if it
        returns True the trial must stop and return ``{"status": "stopped", "metrics": {...}}``.
        Otherwise returns ``{"status": "completed", "reward": float, "metrics": {...}}``. A
        ``FloatingPointError`` or a non-finite reward marks the trial as failed.
        """


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _write_json_atomic(path: str, obj: Any) -> None:
    from lrdist_jax.sharding import is_main_process

    if not is_main_process():
        return  # multi-host: only process 0 writes
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(to_strict_json(obj), f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def search_settings(sampler: Any, scheduler: Any, settings: Mapping | None = None) -> dict:
    """The JSON document stored in ``workdir/search.json`` for these components."""
    doc = {
        "version": _SETTINGS_VERSION,
        "mode": scheduler.mode,
        "scheduler": scheduler.settings(),
        "sampler": sampler.settings(),
        "user": dict(settings or {}),
    }
    return json.loads(json.dumps(to_strict_json(doc)))


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            key = f"{prefix}.{k}" if prefix else k
            if k not in a or k not in b:
                out.append(
                    f"{key}: {a.get(k, '<missing>')!r} (stored) vs {b.get(k, '<missing>')!r}"
                )
            else:
                out += _diff(a[k], b[k], key)
        return out
    return [] if a == b else [f"{prefix}: {a!r} (stored) vs {b!r} (now)"]


def _check_settings(workdir: str, doc: dict, ledger: TrialLedger) -> None:
    path = os.path.join(workdir, "search.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
        if stored != doc:
            raise ValueError(
                f"{workdir} holds a search with different settings, so it cannot be resumed: "
                + "; ".join(_diff(stored, doc))
                + ". Use the original settings and seed, or a new workdir."
            )
        return
    if os.path.exists(ledger.path) and os.path.getsize(ledger.path) > 0:
        raise ValueError(
            f"{ledger.path} exists but {path} does not: the trials cannot be matched to a "
            "search. Use a new workdir."
        )
    _write_json_atomic(path, doc)


def _configs_equal(a: Mapping, b: Mapping) -> bool:
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            if len(x) != len(y) or not all(
                math.isclose(float(u), float(v), rel_tol=1e-12, abs_tol=0.0)
                for u, v in zip(x, y, strict=True)
            ):
                return False
        elif x != y:
            return False
    return True


def _replay(records: list[dict], scheduler: Any, workdir: str) -> None:
    for k, rec in enumerate(records):
        trial = scheduler.ask()
        recorded = {key: rec.get(key) for key in ("id", "budget", "bracket", "rung")}
        proposed = (
            None
            if trial is None
            else {
                "id": trial.id,
                "budget": trial.budget,
                "bracket": trial.bracket,
                "rung": trial.rung,
            }
        )
        if trial is None or proposed != recorded or not _configs_equal(trial.config, rec["config"]):
            now = "nothing (the search is finished)" if trial is None else f"{trial}"
            raise ValueError(
                f"{workdir} holds a different search: trial record {k} of trials.jsonl is "
                f"{recorded} with config {rec['config']}, but this search proposes {now}. The "
                "seed, sampler or objective behaviour differs from the run that wrote it; use "
                "the original settings, or a new workdir."
            )
        for epoch, value in rec.get("reports") or []:
            scheduler.report(trial.id, int(epoch), math.nan if value is None else float(value))
        reward = rec["reward"] if rec["status"] == "completed" else None
        scheduler.tell(trial.id, reward, rec["status"])


def _run_trial(
    objective: Objective, trial: Trial, scheduler: Any, failure_exceptions: tuple
) -> dict[str, Any]:
    reports: list[list[float]] = []

    def report(epoch: int, value: float) -> bool:
        epoch, value = int(epoch), float(value)
        reports.append([epoch, value])
        return bool(scheduler.report(trial.id, epoch, value))

    started, t0 = _now(), time.perf_counter()
    status, reward, metrics, reason = "completed", None, {}, None
    try:
        out = objective(json.loads(json.dumps(trial.config)), trial.budget, report)
    except failure_exceptions as err:
        status, reason = "failed", f"{type(err).__name__}: {err}"
    else:
        if isinstance(out, numbers.Real):
            out = {"status": "completed", "reward": float(out)}
        if not isinstance(out, Mapping) or out.get("status") not in ("completed", "stopped"):
            raise ValueError(
                "The objective must return a dict with status 'completed' (and a 'reward') or "
                f"'stopped'; trial {trial.id} returned {out!r}."
            )
        status = out["status"]
        metrics = dict(out.get("metrics") or {})
        if status == "completed":
            if "reward" not in out:
                raise ValueError(f"Trial {trial.id}: a completed objective must return 'reward'.")
            reward = float(out["reward"])
            if not math.isfinite(reward):
                status, reason, reward = "failed", f"non-finite reward {reward}", None
        elif reports:
            reward = reports[-1][1]  # a stopped trial's last intermediate value
    seconds = time.perf_counter() - t0
    return {
        "id": trial.id,
        "config": trial.config,
        "budget": trial.budget,
        "bracket": trial.bracket,
        "rung": trial.rung,
        "parent": trial.parent,
        "status": status,
        "reward": reward,
        "metrics": metrics,
        "reason": reason,
        "reports": reports,
        "started": started,
        "finished": _now(),
        "seconds": round(seconds, 6),
    }


def run_search(
    objective: Objective,
    sampler: Any,
    scheduler: Any,
    *,
    workdir: str | os.PathLike,
    progress: bool = True,
    settings: Mapping[str, Any] | None = None,
    failure_exceptions: tuple[type[BaseException], ...] = (FloatingPointError,),
    on_record: Callable[[dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Runs (or resumes) a search and returns every finished trial's record.

    Args:
      objective: Callable ``objective(config, budget, report) -> dict`` (see :class:`Objective`).
      sampler: A freshly built sampler (e.g. :class:`~lrdist_jax.search.bo.SkoptSampler`).
      scheduler: A freshly built :class:`~lrdist_jax.search.hyperband.Hyperband` (synchronous,
        one budget per rung) or :class:`~lrdist_jax.search.hyperband.StoppingHyperband` (full
        budget, early stopping through ``report``). The sampler is attached to it.
      workdir: Directory for ``search.json``, ``trials.jsonl`` and ``best.json``. If it holds
        a search with the same settings, that search is resumed.
      progress: Print the schedule and show a tqdm progress bar (when stderr is a terminal).
      settings: Extra JSON-serialisable settings that define the search (task pair, model,
        preset, ...); stored in ``search.json`` and checked on resume.
      failure_exceptions: Exceptions of the objective recorded as a failed trial (the search
        goes on); other exceptions propagate.
      on_record: Called with each new record right after it is written to the ledger.

    Returns:
      The ledger's records (replayed and new), in trial order.

    Raises:
      ValueError: if ``workdir`` holds a search with different settings, or its trials do not
        match what this search proposes.
    """
    from tqdm.auto import tqdm

    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if getattr(scheduler, "sampler", None) is None:
        scheduler.sampler = sampler
    elif scheduler.sampler is not sampler:
        raise ValueError("The scheduler was built with a different sampler than the one passed.")
    ledger = TrialLedger(os.path.join(workdir, "trials.jsonl"))
    _check_settings(workdir, search_settings(sampler, scheduler, settings), ledger)

    plan = scheduler.format_schedule()
    if progress:
        print(plan, flush=True)
    else:
        log.info("%s", plan)

    records = ledger.load()
    _replay(records, scheduler, workdir)
    if records:
        log.info("resumed %s: replayed %d finished trials", workdir, len(records))

    bar = tqdm(
        total=scheduler.total_trials,
        initial=len(records),
        disable=None if progress else True,  # None: off when stderr is not a terminal
        desc="search",
        unit="trial",
    )
    try:
        while True:
            trial = scheduler.ask()
            if trial is None:
                if scheduler.is_finished:
                    break
                raise RuntimeError(
                    f"{type(scheduler).__name__} is waiting for results but no trial is running; "
                    f"pending trials: {scheduler.pending}."
                )
            record = _run_trial(objective, trial, scheduler, failure_exceptions)
            ledger.append(record)
            records.append(record)
            if on_record is not None:
                on_record(record)
            reward = record["reward"] if record["status"] == "completed" else None
            scheduler.tell(trial.id, reward, record["status"])
            bar.update(1)
            best = scheduler.best()
            if best is not None:
                bar.set_postfix(best=f"{best.reward:.4g}", refresh=False)
    finally:
        bar.close()

    best = scheduler.best()
    by_id = {r["id"]: r for r in records}
    best_doc = None
    if best is not None:
        rec = by_id[best.trial.id]
        best_doc = {
            k: rec[k] for k in ("id", "config", "budget", "bracket", "rung", "reward", "metrics")
        }
    _write_json_atomic(os.path.join(workdir, "best.json"), best_doc)
    return records
