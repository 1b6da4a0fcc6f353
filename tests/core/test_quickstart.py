"""The README's translation of the Workers quick start runs as written."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme

import tcpcli
from tcpcli.core.resolve import StaticResolver
from tcpcli.core.tls import TLSOptions
from tests.support.peers import recv_all, serve

pytestmark = pytest.mark.anyio


async def handler() -> bytes:  # the README's code, verbatim
    socket = tcpcli.connect(tcpcli.SocketAddress("db.internal.company.net", 5432),
                            secure_transport="on")
    try:
        await socket.opened
        await socket.writable.send(b"QUERY\r\n")
        await socket.writable.aclose()          # half-close: FIN, reading goes on
        value = await socket.readable.receive()
        return value
    finally:
        await socket.close()


async def test_quickstart(tls_ca: trustme.CA, ca_file: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("db.internal.company.net").configure_cert(context)

    def database(conn: socket.socket) -> None:
        assert recv_all(conn) == b"QUERY\r\n"
        conn.sendall(b"ROWS")

    with serve(database, ssl_context=context) as server:
        # Stand-ins for the Worker's environment: the name resolves to the loopback peer,
        # whose port we map; the policy lets the test reach loopback.
        class PortMap(tcpcli.SystemConnector):
            async def connect_tcp(self, host, port, *, local_address=None):  # type: ignore[no-untyped-def]
                return await super().connect_tcp(host, server.port, local_address=local_address)

        async with tcpcli.Invocation(
            policy=tcpcli.Policy.parse("workers", allow=["db.internal.company.net"]),
            resolver=StaticResolver({"db.internal.company.net": ["127.0.0.1"]}),
            connector=PortMap(),
            options=tcpcli.ConnectOptions(tls=TLSOptions(ca_file=ca_file)),
        ):
            assert await handler() == b"ROWS"
