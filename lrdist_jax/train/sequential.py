"""Sequential fine-tuning (task 1, then a shifted task 2) that measures forgetting.

The protocol of Kenneweg et al. (arXiv 2404.01317, METHODS.md 1.3-1.5): fine-tune on task 1,
measure ``acc_task1``; fine-tune on task 2 (a new head for a task shift, the same head for a
length or cluster shift), measure ``p_s`` (task 2) and ``p_o`` (task 1 again);
``forgetting = acc_task1 - p_o``. The optimizer state carries over between phases and the
schedule is rebuilt per phase (as the authors' ``fit``); EWC (if on) is computed between them.

:class:`Experiment` loads and tokenises the data and compiles the steps once; :meth:`Experiment.run`
can then be called for many learning-rate distributions (a search) without recompiling.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrdist_jax.checkpoint import CheckpointManager
from lrdist_jax.data import (
    Examples,
    cluster_split,
    get_task,
    iterate_batches,
    length_split,
    load_glue,
    num_batches,
    tokenize,
)
from lrdist_jax.distributions import resolve_distribution
from lrdist_jax.losses import fisher_diagonal, make_ewc_state, task_loss
from lrdist_jax.metrics import task_metrics
from lrdist_jax.models import BertClassifier, BertConfig, TaskHead, load_hf_bert, load_tokenizer
from lrdist_jax.schedules import phase_lengths
from lrdist_jax.sharding import (
    gather_to_host,
    host_batch_slice,
    is_main_process,
    make_data_mesh,
    replicate,
    replicated_sharding,
    shard_batch,
)
from lrdist_jax.slots import bert_lr_slots
from lrdist_jax.train.config import RunConfig
from lrdist_jax.train.step import (
    LossConfig,
    TrainState,
    abstract_state,
    make_step_fns,
    zeros_ewc,
)
from lrdist_jax.transforms import (
    clip_by_component_norm,
    layerwise_adam,
    set_group_lrs,
    start_phase,
)

__all__ = ["PAPER_FLAT_LR", "Experiment", "Phase", "run_sequential"]

#: The authors' flat baseline rate (METHODS.md 1.9). ``paper-combined`` is scaled by
#: ``base_lr / PAPER_FLAT_LR``, so at the paper's base rate it is exactly the published values.
PAPER_FLAT_LR = 2e-5

Report = Callable[[int, float], bool]


@dataclasses.dataclass
class _Split:
    task: str
    arrays: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass
class Phase:
    """One training phase: train ``head`` on ``train``; evaluations by name."""

    name: str
    head: str
    train: _Split
    evals: dict[str, tuple[str, _Split]]  # eval name -> (head, split)


def _subset(ex: Examples, n: int | None, seed: int) -> Examples:
    return ex if n is None or n >= len(ex) else ex.sample(n, seed=seed)


class Experiment:
    """Data, model, optimizer and compiled steps of one sequential protocol.

    Args:
      config: the :class:`RunConfig`.
      progress: show tqdm progress bars.

    Example::

        exp = Experiment(make_config("smoke", "sst2", "mrpc"))
        flat = exp.run()                       # the config's distribution
        other = exp.run(lrs=[1e-4] * exp.num_slots)   # same compiled step
    """

    def __init__(self, config: RunConfig, *, progress: bool = True):
        self.config = config
        self.progress = progress and is_main_process()
        cfg = config
        tok_name = "minilm-l6" if cfg.model == "tiny" else cfg.model
        tokenizer = load_tokenizer(tok_name)
        if cfg.model == "tiny":
            self.bert_config = BertConfig.tiny(vocab_size=len(tokenizer))
            self.pretrained = None
        else:
            self.bert_config, self.pretrained = load_hf_bert(cfg.model, add_pooling_layer=False)
        self.bert_config = dataclasses.replace(self.bert_config, dropout_hash=cfg.dropout_hash)
        self.num_layers = self.bert_config.num_hidden_layers
        self.num_slots = cfg.num_slots or min(10, self.num_layers + 2)
        self.default_lrs = np.asarray(
            resolve_distribution(
                cfg.distribution,
                num_slots=self.num_slots,
                num_layers=self.num_layers,
                base_lr=cfg.base_lr,
                decay=cfg.llrd_decay,
                # paper-combined keeps its ratio to the authors' flat 2e-5 at other base rates.
                scale=cfg.base_lr / PAPER_FLAT_LR,
            ),
            np.float32,
        )
        self.phases, heads, self.task_of_head = self._build_phases(tokenizer)
        self.model = BertClassifier(
            self.bert_config,
            heads,
            spectral_norm=cfg.r4f,
            dtype=jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32,
        )
        self.mesh = make_data_mesh(cfg.devices)
        self.num_devices = self.mesh.devices.size
        for name, size in (
            ("batch_size", cfg.batch_size),
            ("eval_batch_size", cfg.eval_batch_size),
        ):
            if size % self.num_devices:
                raise ValueError(
                    f"{name}={size} does not divide by the {self.num_devices} devices in use; "
                    f"choose a multiple of {self.num_devices} or pass --devices."
                )
        self.slot_labels = bert_lr_slots(self.num_slots, self.num_layers)
        parts = []
        if cfg.clip_component is not None:
            parts.append(clip_by_component_norm(cfg.clip_component))
        parts.append(
            layerwise_adam(
                self.slot_labels,
                self.default_lrs,
                schedule=cfg.schedule,
                weight_decay=cfg.weight_decay,
            )
        )
        self.tx = optax.chain(*parts)
        self.loss_config = LossConfig(
            dropout=cfg.dropout,
            double_softmax=cfg.double_softmax,
            r3f_lambda=cfg.r3f_lambda,
            r3f_eps=cfg.r3f_eps,
            r3f_noise=cfg.r3f_noise,
            ewc_lambda=cfg.ewc_lambda,
        )
        self.steps = make_step_fns(
            self.model,
            self.tx,
            self.loss_config,
            is_regression={h.name: h.is_regression for h in heads},
            state_sharding=replicated_sharding(self.mesh),
        )
        self._init_variables = self._initial_variables()

    # ----------------------------------------------------------------------------------- data
    def _load(self, task: str, split: str) -> Examples:
        return load_glue(task, split, data_dir=self.config.data_dir)

    def _build_phases(self, tokenizer):
        cfg = self.config
        enc = lambda ex: tokenize(tokenizer, ex, max_length=cfg.max_length)  # noqa: E731
        split = lambda task, ex: _Split(task, enc(ex), ex.labels)  # noqa: E731
        t1, t2 = get_task(cfg.task1), get_task(cfg.task2)
        if cfg.shift == "task":
            train1 = _subset(self._load(t1.name, "train"), cfg.train_size, cfg.seed)
            train2 = _subset(self._load(t2.name, "train"), cfg.train_size, cfg.seed + 1)
            dev1 = _subset(self._load(t1.name, "validation"), cfg.eval_size, cfg.seed)
            dev2 = _subset(self._load(t2.name, "validation"), cfg.eval_size, cfg.seed)
            d1, d2 = split(t1.name, dev1), split(t2.name, dev2)
            heads = (TaskHead("task1", t1.num_labels), TaskHead("task2", t2.num_labels))
            phases = [
                Phase("task1", "task1", split(t1.name, train1), {"task1": ("task1", d1)}),
                Phase(
                    "task2",
                    "task2",
                    split(t2.name, train2),
                    {"task2": ("task2", d2), "task1": ("task1", d1)},
                ),
            ]
            return phases, heads, {"task1": t1.name, "task2": t2.name}
        train = _subset(self._load(t1.name, "train"), cfg.train_size, cfg.seed)
        dev = _subset(self._load(t1.name, "validation"), cfg.eval_size, cfg.seed)
        train_arr, dev_arr = enc(train), enc(dev)
        if cfg.shift in ("length", "length-authors"):
            mode = "median" if cfg.shift == "length" else "authors"
            tr1, tr2 = length_split(train, train_arr["lengths"], mode=mode)
            dv1, dv2 = length_split(dev, dev_arr["lengths"], mode=mode)
        else:  # cluster: k-means on [CLS] embeddings of the model before fine-tuning
            emb_train, emb_dev = self._cls_embeddings(train_arr), self._cls_embeddings(dev_arr)
            parts = cluster_split(emb_train, emb_dev, seed=0)
            tr1, tr2 = train.subset(parts.train1), train.subset(parts.train2)
            dv1, dv2 = dev.subset(parts.val1), dev.subset(parts.val2)
        heads = (TaskHead("task1", t1.num_labels),)
        d1, d2 = split(t1.name, dv1), split(t1.name, dv2)
        phases = [
            Phase("part1", "task1", split(t1.name, tr1), {"task1": ("task1", d1)}),
            Phase(
                "part2",
                "task1",
                split(t1.name, tr2),
                {"task2": ("task1", d2), "task1": ("task1", d1)},
            ),
        ]
        return phases, heads, {"task1": t1.name}

    def _cls_embeddings(self, arrays) -> np.ndarray:
        from lrdist_jax.models import BertModel

        model = BertModel(self.bert_config, add_pooling_layer=False)
        params = self.pretrained
        if params is None:
            params = model.init(jax.random.key(self.config.seed), jnp.zeros((1, 2), jnp.int32))[
                "params"
            ]
        fn = jax.jit(
            lambda p, b: model.apply({"params": p}, *b, cls_only=True).last_hidden_state[:, 0]
        )
        out = []
        n = len(arrays["input_ids"])
        for i in range(0, n, 64):
            b = tuple(
                jnp.asarray(arrays[k][i : i + 64])
                for k in ("input_ids", "attention_mask", "token_type_ids")
            )
            out.append(np.asarray(fn(params, b)))
        return np.concatenate(out)

    # ---------------------------------------------------------------------------------- state
    def _initial_variables(self):
        cfg = self.config
        dummy = jnp.zeros((1, 8), jnp.int32)
        variables = self.model.init(jax.random.key(cfg.seed), dummy)
        variables = dict(variables)
        if self.pretrained is not None:
            variables["params"] = {**variables["params"], "bert": self.pretrained}
        # Host copies: device arrays would be donated (deleted) by the first train step.
        return jax.tree.map(np.array, variables)

    def init_state(self, lrs=None) -> TrainState:
        """A fresh state (pre-trained body, new heads, zero Adam moments) with ``lrs``."""
        cfg = self.config
        params = jax.tree.map(jnp.asarray, self._init_variables["params"])
        lrs = self.default_lrs if lrs is None else np.asarray(lrs, np.float32)
        if lrs.shape != (self.num_slots,):
            raise ValueError(f"expected {self.num_slots} learning rates, got shape {lrs.shape}.")
        opt_state = set_group_lrs(self.tx.init(params), lrs)
        spectral = self._init_variables.get("spectral", {})
        ewc = zeros_ewc(params) if cfg.ewc_lambda > 0 else ()
        state = TrainState.create(
            params,
            opt_state,
            seed=cfg.seed,
            spectral=jax.tree.map(jnp.asarray, spectral),
            ewc=ewc,
        )
        return replicate(state, self.mesh)

    # ------------------------------------------------------------------------------- batches
    def _device_batch(self, batch):
        # Every host iterates the same global order and keeps only its rows.
        rows = host_batch_slice(len(batch["labels"]), jax.process_index(), jax.process_count())
        return shard_batch({k: v[rows] for k, v in batch.items()}, self.mesh)

    def evaluate(self, state: TrainState, head: str, split: _Split) -> dict[str, float]:
        """Metrics of ``head`` on a split (no dropout, R4F vectors not updated)."""
        preds, labels = [], []
        for batch in iterate_batches(
            split.arrays,
            split.labels,
            self.config.eval_batch_size,
            shuffle=False,
            drop_remainder=False,
        ):
            logits = self.steps.logits(state, self._device_batch(batch), head=head)
            keep = batch["weights"] > 0
            preds.append(gather_to_host(logits)[keep])
            labels.append(batch["labels"][keep])
        return task_metrics(split.task, np.concatenate(preds), np.concatenate(labels))

    def _compute_ewc(self, state: TrainState, phase: Phase) -> TrainState:
        cfg = self.config
        params = state.params
        if cfg.ewc_anchor == "pretrained":
            anchor = jax.tree.map(jnp.asarray, self._init_variables["params"])
            at = anchor
        else:
            anchor, at = params, params
        regression = next(h.is_regression for h in self.model.heads if h.name == phase.head)

        def batch_loss(p, batch):
            logits = self.model.apply(
                {"params": p, **({"spectral": state.spectral} if cfg.r4f else {})},
                batch["input_ids"],
                batch["attention_mask"],
                batch["token_type_ids"],
                head=phase.head,
            )
            return task_loss(logits, batch["labels"], is_regression=regression)

        batches = iterate_batches(
            phase.train.arrays, phase.train.labels, cfg.batch_size, shuffle=True, seed=cfg.seed
        )
        limited = (
            self._device_batch(b) for _, b in zip(range(cfg.ewc_batches), batches, strict=False)
        )
        fisher = fisher_diagonal(batch_loss, at, limited)
        ewc = make_ewc_state(params, fisher, anchor=anchor)
        return state._replace(ewc=replicate(ewc, self.mesh))

    # ------------------------------------------------------------------------------------ run
    def run(
        self,
        lrs=None,
        *,
        workdir: str | os.PathLike | None = None,
        epochs: int | None = None,
        report: Report | None = None,
        on_step: Callable[[int, TrainState], None] | None = None,
    ) -> dict[str, Any]:
        """Runs the protocol; returns the results dict (also ``workdir/results.json``).

        Args:
          lrs: ``f32[num_slots]`` learning rates (default: the config's distribution).
          workdir: where metrics, checkpoints and results go; a run found there is resumed.
          epochs: epochs per phase (default ``config.epochs``; the search budget).
          report: ``report(epoch, acc_task1 / 2)`` after each task-1 epoch (the authors'
            intermediate reward); returning True stops the run (``status: "stopped"``).
          on_step: ``on_step(step, state)`` after every train step (e.g. to inspect the state;
            it is donated to the next step, so copy what you keep).
        """
        cfg = self.config
        epochs = epochs or cfg.epochs
        lrs = self.default_lrs if lrs is None else np.asarray(lrs, np.float32)
        state = self.init_state(lrs)
        meta: dict[str, Any] = {"phase": 0, "epoch": 0, "batch": 0, "evals": {}, "seconds": 0.0}
        workdir = pathlib.Path(workdir) if workdir is not None else None
        writer = _MetricsWriter(workdir / "metrics.jsonl" if workdir else None)
        ckpt = CheckpointManager(workdir / "checkpoints") if workdir else None
        t0 = time.perf_counter()
        try:
            if ckpt is not None:
                restored = ckpt.restore_latest(abstract_state(state))
                if restored is not None:
                    state, meta = restored
                # Lines after the restored checkpoint (or all, with none) are redone.
                writer.truncate(meta.get("metrics_lines", 0))
            status = "completed"
            for p_idx, phase in enumerate(self.phases):
                if p_idx < meta["phase"]:
                    continue
                steps_per_epoch = num_batches(len(phase.train), cfg.batch_size, True)
                if meta["batch"] >= steps_per_epoch:  # saved after an epoch's last batch
                    meta.update(epoch=meta["epoch"] + 1, batch=0)
                if meta["epoch"] == 0 and meta["batch"] == 0:
                    if p_idx > 0 and cfg.ewc_lambda > 0:
                        state = self._compute_ewc(state, self.phases[0])
                    total, warmup = phase_lengths(len(phase.train), epochs, cfg.batch_size)
                    state = state._replace(
                        opt_state=start_phase(
                            state.opt_state,
                            total_steps=total,
                            warmup_steps=warmup,
                            reset_moments=cfg.reset_moments and p_idx > 0,
                        )
                    )
                for epoch in range(meta["epoch"], epochs):
                    state, meta = self._train_epoch(
                        state, meta, phase, p_idx, epoch, epochs, writer, ckpt, on_step
                    )
                    if p_idx == 0 and report is not None and epoch + 1 < epochs:
                        acc = self.evaluate(state, "task1", phase.evals["task1"][1])
                        writer.write({"step": int(state.step), "epoch": epoch + 1, "eval": acc})
                        if report(epoch + 1, _headline(acc) / 2):
                            status = "stopped"
                            break
                if status == "stopped":
                    break
                for name, (head, split) in phase.evals.items():
                    meta["evals"][f"{phase.name}/{name}"] = self.evaluate(state, head, split)
                writer.write({"step": int(state.step), "phase": phase.name, "evals": meta["evals"]})
                meta.update(phase=p_idx + 1, epoch=0, batch=0)
                if ckpt is not None:
                    ckpt.save(int(state.step), state, {**meta, "metrics_lines": writer.lines})
        finally:
            if ckpt is not None:
                ckpt.close()
            writer.close()
        results = self._results(meta, lrs, status, time.perf_counter() - t0, epochs)
        if workdir is not None and is_main_process():
            _write_json_atomic(workdir / "results.json", results)
        self.last_state = state
        return results

    def _train_epoch(self, state, meta, phase, p_idx, epoch, epochs, writer, ckpt, on_step):
        cfg = self.config
        start = meta["batch"] if epoch == meta["epoch"] else 0
        n_batches = num_batches(len(phase.train), cfg.batch_size, True)
        batches = iterate_batches(
            phase.train.arrays,
            phase.train.labels,
            cfg.batch_size,
            shuffle=cfg.shuffle,
            seed=cfg.seed + 1000 * p_idx,
            epoch=epoch,
            start_batch=start,
        )
        bar = _progress(self.progress, n_batches, start, f"{phase.name} epoch {epoch + 1}/{epochs}")
        for b_idx, batch in enumerate(batches, start=start):
            state, metrics = self.steps.train(state, self._device_batch(batch), head=phase.head)
            step = int(state.step)
            if bar is not None:
                bar.update(1)
            if step % cfg.log_every == 0:
                m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not all(math.isfinite(v) for v in m.values()):
                    raise FloatingPointError(f"non-finite training metrics at step {step}: {m}")
                writer.write({"step": step, "phase": phase.name, "epoch": epoch, **m})
                if bar is not None:
                    bar.set_postfix(loss=f"{m['loss']:.4f}")
            meta = {**meta, "phase": p_idx, "epoch": epoch, "batch": b_idx + 1}
            if ckpt is not None and step % cfg.checkpoint_every == 0:
                ckpt.save(step, state, {**meta, "metrics_lines": writer.lines})
            if on_step is not None:
                on_step(step, state)
        if bar is not None:
            bar.close()
        meta = {**meta, "epoch": epoch + 1, "batch": 0}
        return state, meta

    def _results(self, meta, lrs, status, seconds, epochs) -> dict[str, Any]:
        ev = meta["evals"]
        p1, p2 = self.phases[0].name, self.phases[1].name
        out: dict[str, Any] = {"status": status, "evals": ev}
        if f"{p2}/task1" in ev:
            acc1 = _headline(ev[f"{p1}/task1"])
            p_s, p_o = _headline(ev[f"{p2}/task2"]), _headline(ev[f"{p2}/task1"])
            out.update(
                acc_task1=acc1,
                p_s=p_s,
                p_o=p_o,
                forgetting=acc1 - p_o,
                reward=p_s + p_o,
                metric={
                    "task1": _headline_name(ev[f"{p1}/task1"]),
                    "task2": _headline_name(ev[f"{p2}/task2"]),
                },
            )
        elif f"{p1}/task1" in ev:
            out["acc_task1"] = _headline(ev[f"{p1}/task1"])
        out["majority"] = {  # the accuracy of always predicting the most frequent class
            name: _majority(split) for name, (_, split) in self.phases[-1].evals.items()
        }
        out.update(
            lrs=[float(x) for x in lrs],
            num_slots=self.num_slots,
            epochs=epochs,
            seconds=round(seconds, 2),
            config=self.config.to_dict(),
        )
        return out


def _majority(split: _Split) -> float | None:
    if split.labels.dtype.kind == "f":  # regression
        return None
    return float(np.bincount(split.labels).max() / len(split.labels))


def _headline_name(metrics: dict[str, float]) -> str:
    return "accuracy" if "accuracy" in metrics else next(iter(metrics))


def _headline(metrics: dict[str, float]) -> float:
    """Accuracy (the paper's metric for every task); Pearson for STS-B."""
    return float(metrics[_headline_name(metrics)])


def _progress(enabled, total, initial, desc):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class _MetricsWriter:
    """Appends JSON lines (process 0 only), flushed per line."""

    def __init__(self, path: pathlib.Path | None):
        self.path = path if is_main_process() else None
        self.lines = 0
        self._f = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def truncate(self, lines: int) -> None:
        """Keeps the first ``lines`` lines: those written before the restored checkpoint.

        Lines written after it (train steps, evaluations) are redone by the resumed run.
        """
        self.lines = lines
        if self.path is None:
            return
        self._f.close()
        kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]
        self.path.write_text("".join(kept), encoding="utf-8")
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self.lines += 1  # counted on every process, so checkpoints agree
        if self._f is not None:
            self._f.write(json.dumps(record, sort_keys=True) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def run_sequential(config: RunConfig, workdir=None, *, progress: bool = True) -> dict[str, Any]:
    """Builds an :class:`Experiment` and runs it once (see :meth:`Experiment.run`)."""
    return Experiment(config, progress=progress).run(workdir=workdir)
