"""Figures for learning-rate distributions (matplotlib, optional ``plots`` extra).

matplotlib is imported only inside the plotting functions and drawn with the Agg canvas (no
display, no global backend change), so the rest of the library does not need it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from lrdist_jax.slots import slot_names

__all__ = ["plot_distribution", "require_matplotlib"]


def require_matplotlib():
    """Imports matplotlib's Figure and Agg canvas, or fails with the install command."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "plotting needs matplotlib, which is not installed: pip install 'lrdist-jax[plots]'"
        ) from e
    return Figure, FigureCanvasAgg


def plot_distribution(
    lrs: ArrayLike,
    out: str | os.PathLike,
    *,
    num_layers: int,
    slots: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Plots per-slot learning rates on a log axis, each slot labelled with its layers.

    Args:
      lrs: f[n] per-slot learning rates.
      out: PNG path to write.
      num_layers: encoder layers of the model (for the slot labels).
      slots: slot labels; defaults to :func:`lrdist_jax.slots.slot_names`.
      title: figure title.
      dpi: resolution.

    Returns:
      The written path.
    """
    Figure, FigureCanvasAgg = require_matplotlib()
    values = np.asarray(lrs, np.float64)
    labels = list(slots) if slots is not None else slot_names(values.size, num_layers)
    if len(labels) != values.size:
        raise ValueError(f"{len(labels)} slot labels for {values.size} learning rates")
    fig = Figure(figsize=(max(6.0, 0.75 * values.size + 2.0), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(values.size)
    ax.bar(x, values, color="tab:blue", alpha=0.35, width=0.7)
    ax.plot(x, values, "o-", color="tab:blue")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{i}: {name}" for i, name in enumerate(labels)], rotation=35, ha="right")
    ax.set_ylabel("learning rate")
    ax.set_xlabel(f"slot ({num_layers} encoder layers)")
    for xi, v in zip(x, values, strict=True):
        ax.annotate(f"{v:.2g}", (xi, v), textcoords="offset points", xytext=(0, 5),
                    ha="center", fontsize=8)  # fmt: skip
    ax.set_title(title or "learning-rate distribution")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=dpi, format="png")
    return path
