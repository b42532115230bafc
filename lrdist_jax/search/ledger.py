"""Crash-safe JSON-lines ledger of finished trials.

One line per *finished* trial::

    {"id": 3, "config": {"lrs": [...]}, "budget": 3, "bracket": 2, "rung": 1, "parent": 0,
     "status": "completed" | "stopped" | "failed", "reward": 1.72, "metrics": {...},
     "reason": null | "FloatingPointError: ...", "reports": [[1, 0.45], ...],
     "started": "2026-...Z", "finished": "2026-...Z", "seconds": 12.3}

Each record is appended with a single ``write`` of the complete line, then flushed and
``fsync``-ed, so a crash (even SIGKILL) leaves either the whole line or a truncated last line.
A truncated last line is ignored with a warning by :meth:`TrialLedger.load` and cut off before
the next append. Non-finite floats are written as ``null`` so every line is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["TrialLedger", "to_strict_json"]

_STATUSES = ("completed", "stopped", "failed")
_REQUIRED = ("id", "config", "budget", "status", "reward")


def _is_writer() -> bool:
    from lrdist_jax.sharding import is_main_process

    return is_main_process()


def to_strict_json(obj: Any) -> Any:
    """Converts ``obj`` into plain JSON types; NaN/inf floats become ``None``.

    numpy scalars and arrays (anything with ``tolist``) are converted, tuples become lists.
    """
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict_json(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_strict_json(obj.tolist())
    raise TypeError(f"Cannot store a {type(obj).__name__} in the trial ledger: {obj!r}.")


class TrialLedger:
    """Append-only JSON-lines file of finished trials (``workdir/trials.jsonl``).

    Args:
      path: File path; created (with its directory) on the first append.

    Examples:
      >>> import tempfile, os
      >>> ledger = TrialLedger(os.path.join(tempfile.mkdtemp(), "trials.jsonl"))
      >>> ledger.append({"id": 0, "config": {"lrs": [1e-5]}, "budget": 1, "status": "completed",
      ...                "reward": 0.5})
      >>> [r["reward"] for r in ledger.load()]
      [0.5]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    def _scan(self) -> tuple[list[dict[str, Any]], int, int]:
        """Returns (records, size of the valid prefix, file size)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return [], 0, 0
        records = []
        pos = 0
        lines = data.split(b"\n")
        for lineno, line in enumerate(lines, start=1):
            last = lineno == len(lines)
            if last and not line:
                break  # file ends with a newline
            try:
                if last:  # no newline after it: the write was cut short
                    raise ValueError("line has no terminating newline")
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                if last:
                    warnings.warn(
                        f"{self.path}: ignoring a truncated last line ({len(line)} bytes; "
                        f"{err}), left by an interrupted write; it is removed on the next append.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    break
                raise ValueError(
                    f"{self.path}, line {lineno}: not a JSON record ({err}). Only the last line "
                    "can be damaged by a crash; this ledger was edited or corrupted. Fix or "
                    "remove that line, or start the search in a new workdir."
                ) from None
            records.append(record)
            pos += len(line) + 1
        return records, pos, len(data)

    def load(self) -> list[dict[str, Any]]:
        """All complete records, in the order they were written (``[]`` if no file)."""
        return self._scan()[0]

    def __len__(self) -> int:
        return len(self.load())

    def append(self, record: Mapping[str, Any]) -> None:
        """Appends one finished-trial record atomically (single write + flush + fsync).

        Args:
          record: A mapping with at least ``id``, ``config``, ``budget``, ``status`` (one of
            ``completed``, ``stopped``, ``failed``) and ``reward``.

        Raises:
          ValueError: if a required key is missing or the status is unknown.
        """
        missing = [k for k in _REQUIRED if k not in record]
        if missing:
            raise ValueError(f"Trial record lacks required keys {missing}: {dict(record)!r}.")
        if record["status"] not in _STATUSES:
            raise ValueError(f"Trial status must be one of {_STATUSES}, got {record['status']!r}.")
        line = json.dumps(to_strict_json(record), allow_nan=False, separators=(",", ":"))
        data = (line + "\n").encode("utf-8")
        if not _is_writer():
            return  # multi-host: every process runs the search, only process 0 writes
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # load() already warned
            _, good_size, size = self._scan()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if size > good_size:  # drop a truncated last line before appending
                os.ftruncate(fd, good_size)
            written = 0
            while written < len(data):  # os.write may write less than asked (rare for files)
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
