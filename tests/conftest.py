import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Every session starts with an empty user cache, as on a machine's first run of the day: ArviZ's
# once-a-day FutureWarning then fires wherever arviz is imported unfiltered, and with warnings as
# errors such an import fails every time, not only on days the machine has not seen yet.
# (Subprocesses and notebook kernels inherit it.)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="gram-test-cache-")
# XLA compilations are kept for the session (both xdist workers and every subprocess read the
# same folder, new each session): many tests compile the same small NumPyro programs, and compiling
# is most of their time (one test: 157 s cold, 24 s warm).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.environ["XDG_CACHE_HOME"], "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
