"""Host settings that make XLA:CPU steps fast: the glibc allocator tuning applied on
``import lrdist_jax``, and the compiler options the train and eval steps are compiled with."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import warnings

__all__ = ["ALLOCATOR_ENV", "XLA_OPTIONS_ENV", "step_compiler_options", "tune_host_allocator"]

#: Set to ``0`` to keep glibc's default allocator behaviour (see :func:`tune_host_allocator`).
ALLOCATOR_ENV = "LRDIST_JAX_MALLOC_TUNING"

#: Set to ``0`` to compile the steps with XLA's default options (see :func:`step_compiler_options`).
XLA_OPTIONS_ENV = "LRDIST_JAX_XLA_CPU_OPTIONS"

#: XLA:CPU hands dots and reductions to YNNPACK by default; this adds element-wise fusions.
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"
    )
}


def tune_host_allocator() -> bool:
    """Keeps XLA:CPU's per-step buffers in the glibc heap instead of fresh ``mmap`` pages.

    XLA:CPU allocates one temporary buffer per execution of a compiled step (about 2 GB for a
    MiniLM train step at batch 32, length 128) with ``posix_memalign`` from a worker thread.
    Under glibc's defaults that request goes to ``mmap`` and is ``munmap``-ed after the step, so
    every step page-faults and zeroes the whole buffer again: about a third of the step's CPU
    time was kernel time (``docs/performance.md``). This sets ``M_ARENA_MAX=1`` (one heap, so
    worker threads do not fall back to per-arena ``mmap``), ``M_MMAP_MAX=0`` and an unlimited
    ``M_TRIM_THRESHOLD``, so a freed buffer is reused by the next step. The resident size then
    stays at its peak instead of shrinking between steps.

    It runs once when :mod:`lrdist_jax` is imported (it must run before JAX starts its CPU
    threads, i.e. before the first JAX computation), only with glibc on Linux, and does nothing
    if the environment variable ``LRDIST_JAX_MALLOC_TUNING`` is ``0``.

    Returns:
      Whether the settings were applied.
    """
    if os.environ.get(ALLOCATOR_ENV, "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # <malloc.h>
    ok = libc.mallopt(m_arena_max, 1) == 1
    ok &= libc.mallopt(m_mmap_max, 0) == 1
    ok &= libc.mallopt(m_trim_threshold, -1) == 1  # (size_t)-1: never trim the heap top
    return bool(ok)


@functools.cache
def _accepted(options: tuple[tuple[str, str], ...]) -> bool:
    """Whether this jaxlib's CPU compiler takes ``options`` (checked once on a tiny program)."""
    import jax
    import jax.numpy as jnp

    try:
        jax.jit(jnp.negative, compiler_options=dict(options)).lower(jnp.zeros(2)).compile()
    except Exception as err:  # an unknown option or enum value: XLA raises JaxRuntimeError
        warnings.warn(
            f"XLA:CPU rejected the step compiler options {dict(options)} ({err}); compiling "
            f"with the defaults. Set {XLA_OPTIONS_ENV}=0 to silence this.",
            stacklevel=3,
        )
        return False
    return True


def step_compiler_options(backend: str | None = None) -> dict[str, str]:
    """XLA options for compiling this library's train and eval steps (``jax.jit(...,
    compiler_options=...)``).

    On the CPU the step lets YNNPACK run element-wise fusions as well as the dots and
    reductions it runs by default (``xla_cpu_experimental_ynn_fusion_type``): the MiniLM train
    step (batch 32, length 128) ran about 7% faster with the same losses
    (``docs/performance.md``, fourth round). The options apply per executable, so the rest of a
    user's program compiles as before.

    Args:
      backend: the platform the step runs on; default ``jax.default_backend()``.

    Returns:
      The options, or ``{}`` off the CPU, when the environment variable
      ``LRDIST_JAX_XLA_CPU_OPTIONS`` is ``0``, or when this jaxlib rejects them (with a warning).
    """
    if os.environ.get(XLA_OPTIONS_ENV, "1") == "0":
        return {}
    if backend is None:
        import jax

        backend = jax.default_backend()
    if backend != "cpu" or not _accepted(tuple(_CPU_OPTIONS.items())):
        return {}
    return dict(_CPU_OPTIONS)
