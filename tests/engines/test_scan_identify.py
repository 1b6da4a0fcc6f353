"""Service identification in the scan engine, through the in-memory connector: several
safe probes at once, the search ending at the first sure answer, follow-ups, and the
six-socket cap kept while inspections run."""

from __future__ import annotations

import anyio
import pytest

from tcpcli.core.invocation import Invocation
from tcpcli.core.memory import MemoryByteStream, MemoryConnector
from tcpcli.engines.scan import Scanner
from tcpcli.engines.scan_identify import PARALLEL
from tcpcli.engines.scan_results import PortState, ProbeResult, ScanOptions
from tcpcli.engines.scan_targets import parse_target
from tcpcli.protocols.banner import How, ServiceGuess

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]

HOST = "198.51.100.9"
INFO = (b"# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n"
        b"server_name:valkey\r\nvalkey_version:8.0.1\r\n")


class Peer:
    """Counts its connections, and how many were open at once."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.heard: list[list[bytes]] = []  # per connection, what the client sent

    async def __call__(self, stream: MemoryByteStream) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.heard.append([])
        try:
            await self.serve(stream, self.heard[-1])
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the client hung up first, as probes do after their goodbye
        finally:
            self.open -= 1

    async def serve(self, stream: MemoryByteStream, heard: list[bytes]) -> None:
        raise NotImplementedError


class Valkey(Peer):
    """Silent until spoken to; answers PING and INFO only, and says nothing to anything
    else (as long as the test lasts): only the Redis probe can name it."""

    async def serve(self, stream: MemoryByteStream, heard: list[bytes]) -> None:
        first = await stream.receive()
        heard.append(first)
        if first != b"PING\r\n":
            await until_closed(stream)
            return
        await stream.send(b"+PONG\r\n")
        heard.append(await stream.receive())
        await stream.send(b"$%d\r\n%s\r\n" % (len(INFO), INFO))
        heard.append(await stream.receive())


class Postfix(Peer):
    async def serve(self, stream: MemoryByteStream, heard: list[bytes]) -> None:
        await stream.send(b"220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n")
        while line := await stream.receive():
            heard.append(line)
            if line.startswith(b"EHLO"):
                await stream.send(b"250-mail.example.net\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            elif line.startswith(b"QUIT"):
                await stream.send(b"221 2.0.0 Bye\r\n")
                return


class Silent(Peer):
    async def serve(self, stream: MemoryByteStream, heard: list[bytes]) -> None:
        await until_closed(stream)


async def until_closed(stream: MemoryByteStream) -> None:
    """Say nothing, read everything, until the client closes."""
    try:
        while await stream.receive():
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def scan(net: MemoryConnector, ports: list[int], *, max_sockets: int | None = None,
               wait: float = 0.3) -> tuple[dict[int, ProbeResult], int]:
    invocation = Invocation(policy="open", connector=net, max_sockets=max_sockets)
    rows: list[ProbeResult] = []
    scanner = Scanner(invocation, ScanOptions(timeout=0.5, banner=True, banner_wait=wait),
                      rows.append)
    async with invocation:
        summary = await scanner.run([parse_target(HOST)], ports)
    return {row.port: row for row in rows}, summary.peak_sockets


async def test_a_silent_service_is_named_by_its_answer_the_probes_at_once() -> None:
    valkey = Valkey()
    async with MemoryConnector() as net:
        net.serve(HOST, 4242, valkey)
        with anyio.fail_after(5):  # the silent probes wait 0.3 s each; the search does not
            rows, _ = await scan(net, [4242])
    row = rows[4242]
    assert row.identity is not None
    assert (row.identity.name, row.identity.product, row.identity.version) == (
        "redis", "Valkey", "8.0.1")
    assert row.identity.how is How.VERSION and row.identity.fact("auth") == "none"
    assert row.to_dict()["service"]["confidence"] == "version from banner"
    # The first PARALLEL probes went out together, Redis's third among them; once it
    # answered, the search stopped: no fifth probe was sent.
    assert valkey.most_open == PARALLEL and valkey.connections == PARALLEL
    firsts = [heard[0] for heard in valkey.heard if heard]
    assert len(firsts) == len(set(firsts)) == PARALLEL  # four different probes
    assert [b"PING\r\n", b"INFO server\r\n", b"QUIT\r\n"] in valkey.heard


async def test_a_greeting_is_followed_by_its_capability_question() -> None:
    postfix = Postfix()
    async with MemoryConnector() as net:
        net.serve(HOST, 2600, postfix)
        rows, _ = await scan(net, [2600])
    identity = rows[2600].identity
    assert identity is not None
    assert (identity.name, identity.product, identity.fact("starttls")) == (
        "smtp", "Postfix", "offered")
    assert postfix.connections == 1  # the scan's own connection carried it all
    assert postfix.heard == [[b"EHLO tcpcli.invalid\r\n", b"QUIT\r\n"]]


async def test_inspections_keep_the_workers_cap() -> None:
    silent = Silent()
    async with MemoryConnector() as net:
        ports = list(range(7000, 7009))
        for port in ports:
            net.serve(HOST, port, silent)
        with anyio.fail_after(25):
            rows, peak = await scan(net, ports, max_sockets=6, wait=0.1)
    assert peak <= 6
    assert all(row.state is PortState.OPEN and row.identity is None for row in rows.values())
    assert silent.most_open <= 6


async def test_the_row_says_port_default_only_without_an_answer() -> None:
    async with MemoryConnector() as net:
        net.serve(HOST, 6379, Silent())
        rows, _ = await scan(net, [6379], wait=0.1)
    assert rows[6379].to_dict()["service"] == {"name": "redis",
                                               "confidence": "port default only"}


def test_the_service_object_has_product_version_and_facts() -> None:
    row = ProbeResult(HOST, HOST, 993, PortState.OPEN, "connected", service="imaps")
    row.identity = ServiceGuess("imap", "* OK Dovecot ready.", "high",  # type: ignore[arg-type]
                                None, "Dovecot", None, (("tls", "implicit"),
                                                        ("starttls", "offered")))
    assert row.to_dict()["service"] == {
        "name": "imap", "product": "Dovecot", "confidence": "matched by answer",
        "tunnel": "tls", "detail": "* OK Dovecot ready.",
        "facts": {"tls": "implicit", "starttls": "offered"}}
