"""Process-level settings that make XLA:CPU steps fast (applied on ``import lrdist_jax``)."""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["ALLOCATOR_ENV", "tune_host_allocator"]

#: Set to ``0`` to keep glibc's default allocator behaviour (see :func:`tune_host_allocator`).
ALLOCATOR_ENV = "LRDIST_JAX_MALLOC_TUNING"


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
