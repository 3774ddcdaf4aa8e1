"""Shared test settings: CPU only, Hypothesis profiles.

``--hypothesis-profile=long`` (or ``SHAPEDMAP_PROFILE=long``) runs the long fuzz and property
campaigns; the default ``ci`` profile keeps the whole suite within minutes on 2 cores.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("SHAPEDMAP_PROFILE", "ci"))

# tests/multidevice needs 8 simulated devices, which XLA_FLAGS must request before JAX starts:
# tests/test_sharding.py runs it in a subprocess; a plain run of the suite skips the folder.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    collect_ignore = ["multidevice"]
