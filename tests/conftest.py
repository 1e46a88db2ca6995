"""Suite-wide test settings."""

from hypothesis import HealthCheck, settings

# Other jobs often share the two cores, so one example can take far longer than usual: a
# per-example deadline or the too-slow health check would fail runs without finding bugs.
# The parent keeps the rest of the active profile (hypothesis's own "ci" profile under CI).
settings.register_profile("gemmstone", parent=settings.default, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gemmstone")
