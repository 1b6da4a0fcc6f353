"""One workerd and one set of peers per session, in a loopback-only network namespace."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from anyio.from_thread import start_blocking_portal

from tests.conformance.harness import Certificates, Harness, Outcomes
from tests.conformance.netns import enter_loopback_namespace, only_loopback_routes
from tests.conformance.runtime import check_installed
from tests.conformance.scenarios import Scenario

if TYPE_CHECKING:
    import trustme


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


class Oracle:
    """Runs scenarios on the session's harness from the (synchronous) test thread."""

    def __init__(self, call: object, harness: Harness) -> None:
        self._call = call
        self.harness = harness

    def run(self, scenario: Scenario) -> Outcomes:
        outcomes: Outcomes = self._call(self.harness.run, scenario)  # type: ignore[operator]
        return outcomes

    def run_library(self, scenario: Scenario) -> dict[str, Any]:
        outcome: dict[str, Any] = self._call(  # type: ignore[operator]
            self.harness.run_library, scenario)
        return outcome


@pytest.fixture(scope="session")
def oracle(tls_ca: trustme.CA, ca_file: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    import trustme

    check_installed()  # fails (never skips) with what to run when workerd is missing
    certificates = Certificates(
        ca_pem=tls_ca.cert_pem.bytes(),
        ca_file=ca_file,
        trusted=_server_context(tls_ca, "localhost", "127.0.0.1", "::1"),
        name_only=_server_context(tls_ca, "localhost"),
        untrusted=_server_context(trustme.CA(), "localhost", "127.0.0.1", "::1"),
    )
    harness = Harness(tmp_path_factory.mktemp("workerd"), certificates)
    with start_blocking_portal("asyncio") as portal:
        # The portal's event-loop thread (and all it starts) leaves the host's network.
        portal.call(enter_loopback_namespace)
        assert portal.call(only_loopback_routes), "the namespace must hold only loopback"
        with portal.wrap_async_context_manager(harness.running()):
            yield Oracle(portal.call, harness)
