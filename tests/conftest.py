"""Shared fixtures: both anyio backends, and one trustme CA per session."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import trustme


@pytest.fixture(scope="session", autouse=True)
def no_user_configuration() -> Iterator[None]:
    """A developer's ~/.config/tcpcli/config.toml must not change what any test sees: every
    tcpcli started here (in-process or as a subprocess, which inherits os.environ) reads an
    empty configuration. tests/integration/test_cli_config.py sets its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TCPCLI_CONFIG", os.devnull)
        yield


@pytest.fixture(scope="session", autouse=True)
def own_cache_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What tcpcli caches (certifi's bundle as a hashed directory) goes to the session's
    temporary directory, not to the home of whoever runs the tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose leaf is valid for localhost, 127.0.0.1 and ::1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    return context
