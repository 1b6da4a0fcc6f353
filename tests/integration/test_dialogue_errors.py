"""A dialogue's error (tcpcli.protocols.errors) reaches callers of the core, and the CLI's
exit code, as the core's ProtocolError family, exactly as before the dialogues had errors
of their own."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.integration.test_cli_starttls import ALLOW, smtp_server
from tests.support.cli import run_cli
from tests.support.peers import serve


@pytest.mark.anyio
async def test_a_refused_starttls_is_the_cores_protocol_error(
        server_ssl_context: ssl.SSLContext, anyio_backend: str) -> None:
    import tcpcli
    from tcpcli.core.errors import ErrorKind, ProtocolError, RemoteProtocolError
    from tcpcli.core.starttls import run_starttls
    from tcpcli.protocols import StartTlsRefusedError, get_dialogue

    policy = tcpcli.Policy.parse("workers", allow=["127.0.0.1"])
    with serve(smtp_server(server_ssl_context, refuse=True)) as server:
        async with tcpcli.Invocation(policy=policy):
            sock = tcpcli.connect(server.address, secure_transport="starttls")
            with pytest.raises(tcpcli.TcpcliError) as raised:
                await run_starttls(sock, get_dialogue("smtp"), reply_timeout=5)
            await sock.close()
    error = raised.value
    assert type(error) is ProtocolError and not isinstance(error, RemoteProtocolError)
    assert error.kind is ErrorKind.PROTOCOL and getattr(error, "reason", None) == "starttls-refused"
    assert "454" in str(error) and isinstance(error.__cause__, StartTlsRefusedError)


def test_a_dialogue_error_outside_the_core_still_exits_8() -> None:
    """get_dialogue refuses an EHLO name with a space; the CLI calls it directly, so the
    runner maps the dialogue's error: one line, exit 8, as before."""
    def greet(conn: socket.socket) -> None:
        conn.sendall(b"220 mail.test ESMTP\r\n")
        conn.recv(100)

    with serve(greet) as server:
        proc = run_cli("starttls", server.address, "-P", "smtp", "--ehlo-name", "bad name",
                       *ALLOW)
    err = proc.stderr.decode()
    assert proc.returncode == 8, err
    assert err.strip().splitlines() == [
        "tcpcli: EHLO name contains a forbidden character: 'bad name'"]
