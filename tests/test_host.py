"""The glibc allocator tuning applied on import (docs/performance.md)."""

import platform

import pytest

from lrdist_jax.host import ALLOCATOR_ENV, tune_host_allocator


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(ALLOCATOR_ENV, "0")
    assert tune_host_allocator() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applies_on_glibc(monkeypatch):
    monkeypatch.delenv(ALLOCATOR_ENV, raising=False)
    assert tune_host_allocator() is True
