"""Test configuration: 8 simulated CPU devices (set before JAX initialises its backend) and a
persistent compilation cache shared by the test processes (identical programs compile once)."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault(
    "LRDIST_JAX_CACHE_DIR", os.path.join(tempfile.gettempdir(), "lrdist_jax_test_xla_cache")
)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["LRDIST_JAX_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
