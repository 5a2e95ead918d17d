"""Test configuration: float64 available for reference tests, strict rank promotion."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

import atexit
import shutil
import tempfile

# One persistent compilation cache for the whole session: the xdist workers, the process-pool and
# Ray engine workers and the subprocesses of the interrupt tests inherit the folder and load what
# another process already compiled (a cache hit loads the same executable: results are unchanged).
# The process that creates the folder removes it at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="medphys-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    # every program, however quick to compile: the engine and subprocess tests' fresh workers
    # load the many small ones too (tests/pipelines/test_engines.py: 43 s → 36 s)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402  (after the cache settings, which jax reads when imported)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
