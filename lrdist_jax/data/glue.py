"""GLUE tasks: a registry of task specs and loaders for the classic ``glue_data`` TSVs.

Three sources give the same :class:`Examples`:

* ``"vendored"``: gzip-compressed train/dev TSVs shipped inside the package for the six tasks that
  are available offline (SST-2, MRPC, CoLA, RTE, STS-B, WNLI; see ``glue_data/SOURCES.md``).
* ``"tsv"``: a ``data_dir`` in the classic ``glue_data`` layout (``<data_dir>/SST-2/train.tsv``, as
  written by ``download_glue_data.py``); ``.tsv.gz`` files are accepted too.
* ``"hf"``: Hugging Face ``datasets.load_dataset("nyu-mll/glue", task)`` (needs network or a
  populated cache). This is the only offline-impossible route for QNLI, QQP and MNLI.

Splits follow Kenneweg et al. (arXiv 2404.01317, METHODS.md 1.4): the full ``train`` split and the
``validation`` split, where MNLI uses ``validation_matched`` and QQP only the first 10,000 rows of
``validation``. Integer labels use the Hugging Face GLUE label order (RTE/QNLI: 0 = entailment;
MNLI: entailment, neutral, contradiction); STS-B labels are float32 scores in [0, 5].

TSVs are read with CSV quoting switched OFF: SST-2, MRPC and RTE contain bare ``"`` characters and
default CSV quoting silently merges rows.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import importlib.resources
import io
import os
from collections.abc import Sequence
from typing import IO

import numpy as np

__all__ = [
    "GLUE_TASKS",
    "VENDORED_TASKS",
    "DataUnavailableError",
    "Examples",
    "TaskSpec",
    "get_task",
    "load_glue",
]


class DataUnavailableError(RuntimeError):
    """The requested GLUE split cannot be loaded from any available source."""


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How one GLUE task is stored, labelled and scored.

    Attributes:
        name: Canonical lower-case name (``"sst2"``), also the Hugging Face config name.
        folder: Folder name in the classic ``glue_data`` layout (``"SST-2"``).
        text_columns: One or two Hugging Face text column names (``("sentence1", "sentence2")``).
        tsv_text_columns: The same columns in the TSV: header names, or integer positions when the
            file has no header (CoLA).
        tsv_label_column: Label column in the TSV (header name or position).
        label_names: Class names in label-id order (empty for the regression task STS-B).
        string_labels: Whether TSV labels are class names (RTE, QNLI, MNLI) rather than integers.
        num_labels: Output width of the head; 1 means regression (STS-B).
        dev_split: Hugging Face name of the evaluation split.
        dev_file: TSV file name of the evaluation split.
        dev_limit: Keep only the first ``dev_limit`` evaluation rows (QQP: 10,000, as the authors).
        has_header: Whether the TSVs start with a header row (CoLA: no).
        skip_malformed: Skip rows with too few fields instead of raising (QQP train).
        metrics: Metric names reported by :func:`lrdist_jax.metrics.task_metrics`.
        primary: The headline metric (the first one GLUE lists for the task).
    """

    name: str
    folder: str
    text_columns: tuple[str, ...]
    tsv_text_columns: tuple[str | int, ...]
    tsv_label_column: str | int
    label_names: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    primary: str
    string_labels: bool = False
    dev_split: str = "validation"
    dev_file: str = "dev.tsv"
    dev_limit: int | None = None
    has_header: bool = True
    skip_malformed: bool = False

    @property
    def is_regression(self) -> bool:
        """True for STS-B (one output, float labels)."""
        return self.num_labels == 1

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks."""
        return len(self.text_columns) == 2


_ACC = ("accuracy",)

# fmt: off
GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "sst2", "SST-2", ("sentence",), ("sentence",), "label",
            ("negative", "positive"), 2, _ACC, "accuracy",
        ),
        TaskSpec(
            "mrpc", "MRPC", ("sentence1", "sentence2"), ("#1 String", "#2 String"), "Quality",
            ("not_equivalent", "equivalent"), 2, ("accuracy", "f1"), "f1",
        ),
        TaskSpec(
            "cola", "CoLA", ("sentence",), (3,), 1,
            ("unacceptable", "acceptable"), 2, ("accuracy", "mcc"), "mcc", has_header=False,
        ),
        TaskSpec(
            "rte", "RTE", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "label",
            ("entailment", "not_entailment"), 2, _ACC, "accuracy", string_labels=True,
        ),
        TaskSpec(
            "stsb", "STS-B", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "score",
            (), 1, ("pearson", "spearman"), "pearson",
        ),
        TaskSpec(
            "wnli", "WNLI", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "label",
            ("not_entailment", "entailment"), 2, _ACC, "accuracy",
        ),
        TaskSpec(
            "qnli", "QNLI", ("question", "sentence"), ("question", "sentence"), "label",
            ("entailment", "not_entailment"), 2, _ACC, "accuracy", string_labels=True,
        ),
        TaskSpec(
            "qqp", "QQP", ("question1", "question2"), ("question1", "question2"), "is_duplicate",
            ("not_duplicate", "duplicate"), 2, ("accuracy", "f1"), "f1",
            dev_limit=10000, skip_malformed=True,
        ),
        TaskSpec(
            "mnli", "MNLI", ("premise", "hypothesis"), ("sentence1", "sentence2"), "gold_label",
            ("entailment", "neutral", "contradiction"), 3, _ACC, "accuracy",
            string_labels=True, dev_split="validation_matched", dev_file="dev_matched.tsv",
        ),
    )
}
# fmt: on

VENDORED_TASKS: tuple[str, ...] = ("sst2", "mrpc", "cola", "rte", "stsb", "wnli")

_SOURCES = ("auto", "vendored", "tsv", "hf")
_HF_DATASET = "nyu-mll/glue"


def get_task(name: str) -> TaskSpec:
    """Look up a GLUE task by name (case-insensitive; ``"SST-2"`` and ``"sts_b"`` work too).

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}; valid names: {', '.join(GLUE_TASKS)}.")
    return GLUE_TASKS[key]


@dataclasses.dataclass(frozen=True, eq=False)
class Examples:
    """A labelled GLUE split: raw text and labels, aligned by position.

    Attributes:
        text_a: First sentence of each example (``N`` strings).
        text_b: Second sentence for pair tasks, else ``None``.
        labels: ``i32[N]`` class ids, or ``f32[N]`` scores for STS-B.
    """

    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray

    def __post_init__(self):
        n = len(self.text_a)
        if self.text_b is not None and len(self.text_b) != n:
            raise ValueError(f"text_b has {len(self.text_b)} entries but text_a has {n}.")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}.")

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Examples:
        """The examples at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices out of range for {len(self)} examples.")
        text_b = None if self.text_b is None else [self.text_b[i] for i in idx]
        return Examples([self.text_a[i] for i in idx], text_b, self.labels[idx])

    def head(self, n: int) -> Examples:
        """The first ``n`` examples (the authors' ``train[:500]`` "small" variants)."""
        return self.subset(np.arange(min(n, len(self))))

    def sample(self, n: int, seed: int = 0) -> Examples:
        """``n`` examples drawn without replacement, kept in their original order.

        Returns all examples when ``n >= len(self)``. The draw depends only on ``(n, seed)`` and
        the split size.
        """
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}.")
        if n >= len(self):
            return self.subset(np.arange(len(self)))
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=n, replace=False)))


def _canonical_split(spec: TaskSpec, split: str) -> str:
    s = split.lower()
    if s == "train":
        return "train"
    if s in ("dev", "validation", spec.dev_split, spec.dev_file.removesuffix(".tsv")):
        return "validation"
    raise ValueError(
        f"Unknown split {split!r} for {spec.name}; use 'train' or 'validation' "
        f"(= {spec.dev_split}). GLUE test splits are unlabelled and not supported."
    )


def _resolve_column(col: str | int, header: list[str] | None, where: str) -> int:
    if isinstance(col, int):
        return col
    if header is None or col not in header:
        raise ValueError(f"{where}: column {col!r} not found in the header {header}.")
    return header.index(col)


def _parse_label(spec: TaskSpec, value: str, where: str) -> float | int:
    try:
        if spec.is_regression:
            return float(value)
        if spec.string_labels:
            return spec.label_names.index(value)
        return int(value)
    except ValueError:
        raise ValueError(
            f"{where}: cannot parse label {value!r} for {spec.name} "
            f"(expected {'a float score' if spec.is_regression else spec.label_names})."
        ) from None


def _parse_tsv(spec: TaskSpec, stream: IO[str], where: str) -> Examples:
    """Parse one GLUE TSV stream (text mode, BOM already stripped) into Examples."""
    reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None) if spec.has_header else None
    if spec.has_header and header is None:
        raise ValueError(f"{where}: empty file.")
    text_idx = [_resolve_column(c, header, where) for c in spec.tsv_text_columns]
    label_idx = _resolve_column(spec.tsv_label_column, header, where)
    need = max(*text_idx, label_idx) + 1
    cols: list[list[str]] = [[] for _ in text_idx]
    raw_labels: list[str] = []
    for row in reader:
        if len(row) < need:
            if not row or spec.skip_malformed:
                continue
            raise ValueError(
                f"{where}: line {reader.line_num} has {len(row)} fields, expected at least {need}."
            )
        for out, i in zip(cols, text_idx, strict=True):
            out.append(row[i])
        raw_labels.append(row[label_idx])
    dtype = np.float32 if spec.is_regression else np.int32
    if spec.is_regression or spec.string_labels:
        labels = np.array([_parse_label(spec, v, where) for v in raw_labels], dtype=dtype)
    else:
        try:  # fast path: numpy parses the integer strings in C
            labels = np.array(raw_labels, dtype=np.int64).astype(dtype)
        except ValueError:
            labels = np.array([_parse_label(spec, v, where) for v in raw_labels], dtype=dtype)
    return Examples(cols[0], cols[1] if len(cols) == 2 else None, labels)


def _open_text(raw: IO[bytes], gz: bool) -> IO[str]:
    binary = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
    # utf-8-sig strips MRPC's byte-order mark; newline="" as the csv module requires.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")


def _load_vendored(spec: TaskSpec, split: str) -> Examples:
    fname = ("train.tsv" if split == "train" else spec.dev_file) + ".gz"
    res = importlib.resources.files("lrdist_jax.data") / "glue_data" / spec.folder / fname
    with res.open("rb") as raw, _open_text(raw, gz=True) as f:
        return _parse_tsv(spec, f, f"vendored {spec.folder}/{fname}")


def _load_tsv_dir(spec: TaskSpec, split: str, data_dir: str | os.PathLike) -> Examples:
    fname = "train.tsv" if split == "train" else spec.dev_file
    folder = os.path.join(os.fspath(data_dir), spec.folder)
    path = os.path.join(folder, fname)
    for candidate, gz in ((path, False), (path + ".gz", True)):
        if os.path.isfile(candidate):
            with open(candidate, "rb") as raw, _open_text(raw, gz) as f:
                return _parse_tsv(spec, f, candidate)
    raise FileNotFoundError(
        f"{path} not found. --data-dir must hold the classic glue_data layout "
        f"(<data-dir>/{spec.folder}/{fname}, as written by download_glue_data.py)."
    )


def _load_hf(spec: TaskSpec, split: str) -> Examples:
    hf_split = "train" if split == "train" else spec.dev_split
    vendored = "not vendored with lrdist-jax" if spec.name not in VENDORED_TASKS else "vendored"
    try:
        import datasets

        ds = datasets.load_dataset(_HF_DATASET, spec.name, split=hf_split)
    except Exception as e:  # noqa: BLE001 - any failure means the hub/cache is unreachable
        raise DataUnavailableError(
            f"GLUE task {spec.name!r} ({vendored}) could not be loaded from Hugging Face "
            f"{_HF_DATASET!r} split {hf_split!r}: {type(e).__name__}: {e}. It needs network "
            f"access (or a populated Hugging Face cache), or pass --data-dir pointing at a "
            f"classic glue_data folder containing {spec.folder}/."
        ) from e
    cols = [list(ds[c]) for c in spec.text_columns]
    dtype = np.float32 if spec.is_regression else np.int32
    labels = np.asarray(ds["label"], dtype=dtype)
    return Examples(cols[0], cols[1] if len(cols) == 2 else None, labels)


def load_glue(
    task: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
) -> Examples:
    """Load one labelled GLUE split.

    Args:
        task: Task name (see :data:`GLUE_TASKS`).
        split: ``"train"`` or ``"validation"`` (alias ``"dev"``; for MNLI the matched dev set).
        data_dir: A folder in the classic ``glue_data`` TSV layout.
        source: ``"auto"`` (``data_dir`` if given, else the vendored copy if the task is vendored,
            else Hugging Face), ``"vendored"``, ``"tsv"`` (needs ``data_dir``) or ``"hf"``.

    Returns:
        The split as :class:`Examples`; QQP validation is cut to its first 10,000 rows.

    Raises:
        ValueError: unknown task, split or source, or a malformed file.
        FileNotFoundError: ``data_dir`` lacks the task's file.
        DataUnavailableError: the task is not vendored and Hugging Face is unreachable.
    """
    spec = get_task(task)
    split = _canonical_split(spec, split)
    if source not in _SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose one of {_SOURCES}.")
    if source == "auto":
        if data_dir is not None:
            source = "tsv"
        else:
            source = "vendored" if spec.name in VENDORED_TASKS else "hf"
    if data_dir is not None and source != "tsv":
        raise ValueError(f"data_dir is only used with source='tsv' or 'auto', not {source!r}.")
    if source == "tsv":
        if data_dir is None:
            raise ValueError("source='tsv' needs data_dir (a classic glue_data folder).")
        ex = _load_tsv_dir(spec, split, data_dir)
    elif source == "vendored":
        if spec.name not in VENDORED_TASKS:
            raise DataUnavailableError(
                f"GLUE task {spec.name!r} is not vendored (vendored: {', '.join(VENDORED_TASKS)}). "
                f"Use source='hf' (needs network) or pass --data-dir with a glue_data folder."
            )
        ex = _load_vendored(spec, split)
    else:
        ex = _load_hf(spec, split)
    if split == "validation" and spec.dev_limit is not None and len(ex) > spec.dev_limit:
        ex = ex.head(spec.dev_limit)
    return ex
