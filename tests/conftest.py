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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
