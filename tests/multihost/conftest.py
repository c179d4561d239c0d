"""Fixtures of the multi-host tests: a fresh lab (network namespaces, real engines) per test.

Skipped, loudly, when this machine cannot build it (not root, no network namespaces, a missing
engine); scripts/test says so at its start and end too. Everything the lab made (processes,
namespaces, temporary directories) is removed in the finalizer, whatever the test did.
"""
import sys

import pytest

from tests.multihost import hosts, topology


def _loud_skip(reason: str):
    line = "#" * 80
    sys.stderr.write(f"\n{line}\n#  MULTI-HOST TESTS SKIPPED: {reason}\n{line}\n")
    pytest.skip(f"MULTI-HOST TESTS SKIPPED: {reason}")


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_options(**kwargs): keyword arguments for topology.Topology")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def lab(request):
    """A started topology.Topology (every host up); its logs are printed if the test fails."""
    missing = topology.missing_tools()
    if missing:
        _loud_skip("missing " + "; ".join(missing))
    try:
        made = hosts.Lab()
    except hosts.Unavailable as reason:
        _loud_skip(str(reason))
    try:
        marker = request.node.get_closest_marker("lab_options")
        deployment = topology.Topology(made, **{"segment_seconds": 2, **(marker.kwargs if marker else {})})
        deployment.start()
    except BaseException:
        sys.stderr.write(f"\n--- the lab did not start ---\n{_logs(made)}\n")
        made.close()
        raise
    yield deployment
    failed = any(getattr(request.node, f"report_{when}", None) is not None
                 and getattr(request.node, f"report_{when}").failed for when in ("setup", "call"))
    if failed:
        sys.stderr.write(f"\n--- lab logs ---\n{deployment.logs(8000)}\n")
    made.close()


def _logs(made) -> str:
    return "\n".join(f"--- {c.host.name}/{c.name} ---\n{c.output()}" for c in made.children)
