"""Shared pytest configuration: hypothesis profiles and the kernel-test policy.

Hypothesis profiles (``KSERVICE_HYPOTHESIS_PROFILE``):

* ``dev``  -- the default for ``make test``: few examples, the whole suite stays fast.
* ``ci``   -- what ``.ci/run`` uses: more examples.
* ``deep`` -- thousands of examples, for a long local run.

Kernel tests (marker ``kernel``) need root and the netfilter tools. Without them they skip
with a reason -- except when ``KSERVICE_REQUIRE_KERNEL=1`` (set by ``.ci/run``), where a
would-be skip is turned into a failure so CI cannot pass without actually running them.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# differing_executors: BackendContract's @given methods run once per backend subclass (the
# point of a contract class, as hypothesis' own StoreTests pattern); each subclass draws from
# the same strategies, so a replayed example from another subclass is still a valid input.
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.differing_executors]
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=_SUPPRESS)
# ci: derandomized, so a CI run tries the same 60 examples per test every time and a red
# run is a regression, reproducible with the same profile; the search for new bugs is the
# job of dev (random, the default for `make test`) and deep (2000 examples).
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_SUPPRESS,
                          derandomize=True)
settings.register_profile(
    "deep", max_examples=2000, deadline=None, suppress_health_check=_SUPPRESS
)
settings.load_profile(os.environ.get("KSERVICE_HYPOTHESIS_PROFILE", "dev"))


def kernel_requirements(*binaries: str) -> str | None:
    """Why kernel tests cannot run here, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "kernel tests need root (network namespaces)"
    missing = [b for b in ("ip", *binaries) if shutil.which(b) is None]
    if missing:
        return "missing binaries: " + ", ".join(missing)
    return None


def require_kernel(*binaries: str) -> None:
    """Skip (or, in CI, fail) the calling test unless the kernel tools are usable."""
    reason = kernel_requirements(*binaries)
    if reason is None:
        return
    if os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1":
        pytest.fail(f"KSERVICE_REQUIRE_KERNEL=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def kernel_tools() -> None:
    """Fixture form of :func:`require_kernel` for iptables/nft/ipset tests."""
    require_kernel()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a skipped ``kernel`` test is a failure, whichever way it skipped."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and item.get_closest_marker("kernel") is not None
        and os.environ.get("KSERVICE_REQUIRE_KERNEL") == "1"
    ):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"kernel test skipped but KSERVICE_REQUIRE_KERNEL=1: {reason}"
