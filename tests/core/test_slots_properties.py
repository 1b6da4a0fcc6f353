"""Random schedules over a few sockets and a small cap: nothing hangs, the cap is never
exceeded, and every slot comes back (hypothesis, both anyio backends).

Each socket runs its own list of operations in its own task, all at once, against
in-memory peers (the connector seam): open, a write, a write and its echo, a read cut
short (a cancellation), close, abort, a STARTTLS dialogue and start_tls(), and a
connect canceled while it may still be queued.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import pytest
import trustme
from anyio.streams.tls import TLSStream
from hypothesis import given, settings, strategies as st

import tcpcli
from tcpcli.core.errors import TcpcliError
from tcpcli.core.memory import MemoryByteStream, MemoryConnector
from tcpcli.core.resolve import StaticResolver
from tcpcli.core.slots import SocketSlot, SocketSlots
from tcpcli.core.tlsoptions import TLSOptions

PEER = "203.0.113.10"  # a documentation address, only ever "dialed" through the memory seam
NAME = "peer.test"
#: One example may not take longer than this: past it, it hung.
EXAMPLE_SECONDS = 10
#: What an operation may meet on a socket that another task closed, aborted or upgraded,
#: or that the cap's rule canceled: anything else is a bug.
EXPECTED = (TcpcliError, anyio.EndOfStream, anyio.ClosedResourceError,
            anyio.BrokenResourceError)

OPS = ["open", "write", "exchange", "short-read", "close", "abort", "start-tls",
       "cancel-soon"]


class CheckedSlots(SocketSlots):
    """The cap, checked each time a slot is taken."""

    def _take(self) -> SocketSlot:
        slot = super()._take()
        assert self.limit is None or len(self.held) <= self.limit, "the cap was exceeded"
        return slot


def tls_contexts(tmp_dir: str) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(server)
    ca_file = f"{tmp_dir}/ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    return server, ca_file


def starttls_echo(server_context: ssl.SSLContext) -> Any:
    """Echo every byte; on b"S" answer b"G" and go on echoing over TLS."""

    async def handle(stream: MemoryByteStream) -> None:
        current: Any = stream
        try:
            while True:
                data = await current.receive()
                if b"S" in data and current is stream:
                    before = data[:data.index(b"S")]
                    await stream.send(before + b"G")
                    current = await TLSStream.wrap(stream, server_side=True,
                                                   ssl_context=server_context)
                    continue
                await current.send(data)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                ssl.SSLError, OSError):
            pass

    return handle


async def run_one(sockets: list[tcpcli.Socket], index: int, ops: list[str]) -> None:
    for op in ops:
        sock = sockets[index]
        try:
            if op == "open":
                await sock.opened
            elif op == "write":
                await sock.writable.send(b"x")
            elif op == "exchange":
                await sock.writable.send(b"y")
                await sock.readable.receive()
            elif op == "short-read":
                with anyio.move_on_after(0.005):
                    await sock.readable.receive()
            elif op == "close":
                await sock.close()
            elif op == "abort":
                await sock.abort()
            elif op == "cancel-soon":
                with anyio.move_on_after(0.001):
                    await sock.opened
            elif op == "start-tls" and sock.secure_transport == "starttls":
                await sock.writable.send(b"S")
                while b"G" not in await sock.readable.receive():
                    pass
                sockets[index] = sock.start_tls()
                await sockets[index].opened
        except EXPECTED:
            pass


async def schedule(cap: int, plans: list[tuple[bool, list[str]]], server: ssl.SSLContext,
                   ca_file: str) -> None:
    async with MemoryConnector() as net:
        net.serve(PEER, 7, starttls_echo(server))
        invocation = tcpcli.Invocation(
            max_sockets=cap, policy="open", connector=net,
            resolver=StaticResolver({NAME: [PEER]}),
        )
        invocation.slots = checked = CheckedSlots(cap)
        async with invocation:
            sockets = [
                tcpcli.connect(f"{NAME}:7", secure_transport="starttls" if tls else "off",
                               tls=TLSOptions(ca_file=ca_file))
                for tls, _ in plans
            ]
            with anyio.fail_after(EXAMPLE_SECONDS):
                async with anyio.create_task_group() as tg:
                    for index, (_, ops) in enumerate(plans):
                        tg.start_soon(run_one, sockets, index, ops)
                for sock in sockets:
                    await sock.close()
            assert checked.live == 0 and checked.queued == 0, "a slot was not given back"
        assert checked.peak <= cap
        assert checked.live == 0


plans_strategy = st.lists(
    st.tuples(st.booleans(), st.lists(st.sampled_from(OPS), max_size=6)),
    min_size=1, max_size=6,
)


@pytest.fixture(scope="module")
def tls_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    return tls_contexts(str(tmp_path_factory.mktemp("slots-ca")))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=75, deadline=None)
@given(cap=st.integers(min_value=1, max_value=3), plans=plans_strategy)
def test_random_schedules_settle_within_the_cap(
    backend: str, cap: int, plans: list[tuple[bool, list[str]]],
    tls_setup: tuple[ssl.SSLContext, str],
) -> None:
    server, ca_file = tls_setup
    anyio.run(schedule, cap, plans, server, ca_file, backend=backend)
