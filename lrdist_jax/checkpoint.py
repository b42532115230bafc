"""Orbax checkpointing of the full training state, with JSON metadata beside it.

A checkpoint is ``Composite(state=StandardSave(pytree), meta=JsonSave(dict))``: the pytree holds
parameters, optimizer state (with the per-slot learning rates), R4F vectors and EWC state; the
metadata says where in the protocol the run stood (phase, epoch, batch) and the metrics so far.
Restores always use an abstract target built with ``jax.eval_shape`` so NamedTuple optimizer states
come back with their types.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["CheckpointManager", "make_checkpoint_manager"]


def make_checkpoint_manager(
    directory: str | os.PathLike, *, keep: int = 2, async_save: bool = True
) -> ocp.CheckpointManager:
    """An Orbax manager keeping the latest ``keep`` checkpoints (``LatestN`` preservation policy).

    Saves are decided by the caller (``force=True``); asynchronous saves are awaited by
    :class:`CheckpointManager` on exit.
    """
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(keep),
        enable_async_checkpointing=async_save,
        create=True,
    )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class CheckpointManager:
    """Context manager around :func:`make_checkpoint_manager` that waits for saves on exit.

    Example::

        with CheckpointManager(workdir / "checkpoints") as ckpt:
            restored = ckpt.restore_latest(abstract_state)  # None when there is none
            ...
            ckpt.save(step, state, {"phase": 0, "epoch": 1})
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 2, async_save: bool = True):
        self._manager = make_checkpoint_manager(directory, keep=keep, async_save=async_save)

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Saves (asynchronously); a checkpoint already at ``step`` is replaced."""
        if self._manager.latest_step() == step:
            self._manager.wait_until_finished()
            self._manager.delete(step)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
        """Restores ``(state, meta)`` of the latest checkpoint, or returns None if there is none.

        Args:
          abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (``jax.eval_shape`` of the state
            constructor) or of arrays; it fixes the structure, dtypes and shardings.
        """
        step = self._manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(
            lambda x: (
                x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x)
            ),
            abstract_state,
        )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return restored.state, restored.meta
