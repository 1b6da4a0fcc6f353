"""The six-socket cap and its deadlock rule: the rule on its own, then sockets that open
all at once (a Worker's ``Promise.all``) against real loopback listeners."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

import tcpcli
from tcpcli.core.errors import SocketCanceledError, StreamClosedError
from tcpcli.core.slots import WORKERS_MAX_SOCKETS, SlotHolder, SocketSlot, SocketSlots
from tcpcli.core.tlsoptions import TLSOptions
from tests.support.peers import echo, serve

pytestmark = pytest.mark.anyio

#: Every test that could hang is bounded by this: a hang fails instead.
SETTLE_SECONDS = 5


class Holder:
    """A slot holder whose state each test sets by hand."""

    def __init__(self, slots: SocketSlots, slot: SocketSlot, last_used_ns: int,
                 *, is_open: bool = True) -> None:
        self.slots, self.slot = slots, slot
        self.is_open = is_open
        self.io_in_progress = 0
        self.last_used_ns = last_used_ns
        self.canceled = False
        slot.owner = self

    async def cancel_for_limit(self) -> None:
        self.canceled, self.is_open = True, False
        self.slots.release(self.slot)


def hold(slots: SocketSlots, count: int, *, is_open: bool = True) -> list[Holder]:
    holders = []
    for used in range(count):
        slot = slots.try_acquire()
        assert slot is not None
        holders.append(Holder(slots, slot, last_used_ns=used, is_open=is_open))
    return holders


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(10):
        await anyio.lowlevel.checkpoint()


async def served(got: list[SocketSlot]) -> None:
    """Wait (bounded) until the queued acquire has its slot."""
    with anyio.fail_after(SETTLE_SECONDS):
        while not got:
            await anyio.sleep(0.001)


def test_a_socket_satisfies_the_holder_protocol() -> None:
    def holder(item: SlotHolder) -> SlotHolder:
        return item

    sock = tcpcli.connect("127.0.0.1:7", invocation=tcpcli.Invocation())
    assert holder(sock) is sock  # mypy checks this line; the run checks the names exist
    assert not sock.is_open and sock.io_in_progress == 0


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SocketSlots(0)
    assert SocketSlots().limit == WORKERS_MAX_SOCKETS


async def test_all_idle_and_open_cancels_the_least_recently_used() -> None:
    slots = SocketSlots(3)
    holders = hold(slots, 3)
    holders[0].last_used_ns = 10  # used after the others
    with anyio.fail_after(SETTLE_SECONDS):
        slot = await slots.acquire()
    assert [h.canceled for h in holders] == [False, True, False]
    assert slot in slots.held and slots.live == 3


async def test_a_handshake_or_a_dial_under_way_holds_the_rule_back() -> None:
    slots = SocketSlots(2)
    opened, handshaking = hold(slots, 2)
    handshaking.is_open = False  # connected, TLS handshake running: not idle
    got: list[SocketSlot] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _acquire_into(slots, got))
        await settle()
        assert got == [] and not opened.canceled and not handshaking.canceled
        handshaking.is_open = True
        handshaking.last_used_ns = 99
        slots.changed()  # the handshake finished: the rule applies now
        await served(got)
    assert opened.canceled and not handshaking.canceled


async def test_a_slot_without_holder_holds_the_rule_back_until_released() -> None:
    slots = SocketSlots(2)
    (opened,) = hold(slots, 1)
    dialing = slots.try_acquire()  # a dial attempt (or an engine's raw slot): no owner
    assert dialing is not None
    got: list[SocketSlot] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _acquire_into(slots, got))
        await settle()
        assert got == [] and not opened.canceled
        slots.release(dialing)
        await served(got)
    assert not opened.canceled


async def test_an_io_in_progress_holds_the_rule_back_until_it_ends() -> None:
    slots = SocketSlots(2)
    reading, idle = hold(slots, 2)
    reading.io_in_progress = 1
    got: list[SocketSlot] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _acquire_into(slots, got))
        await settle()
        assert got == [] and not idle.canceled
        reading.io_in_progress = 0
        reading.last_used_ns = 99
        slots.changed()
        await served(got)
    assert idle.canceled and not reading.canceled


async def test_a_canceled_head_of_queue_hands_the_rule_to_the_next() -> None:
    slots = SocketSlots(1)
    (holder,) = hold(slots, 1)
    holder.io_in_progress = 1
    got: list[SocketSlot] = []
    first = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _acquire_in(slots, first))
        await settle()
        tg.start_soon(lambda: _acquire_into(slots, got))
        await settle()
        assert slots.queued == 2
        holder.io_in_progress = 0  # idle now, but nobody said so
        first.cancel()  # the head leaves: the next in line must look at the rule
        await served(got)
    assert holder.canceled and slots.queued == 0 and slots.live == 1


async def test_waiters_are_served_in_order() -> None:
    slots = SocketSlots(1)
    first = slots.try_acquire()
    assert first is not None
    order: list[int] = []

    async def wait(index: int) -> None:
        slot = await slots.acquire()
        order.append(index)
        await anyio.lowlevel.checkpoint()
        slots.release(slot)

    async with anyio.create_task_group() as tg:
        for index in range(4):
            tg.start_soon(wait, index)
            await settle()
        slots.release(first)
    assert order == [0, 1, 2, 3]
    assert slots.peak == 1 and slots.live == 0


async def _acquire_into(slots: SocketSlots, got: list[SocketSlot]) -> None:
    got.append(await slots.acquire())


async def _acquire_in(slots: SocketSlots, scope: anyio.CancelScope) -> None:
    with scope:
        await slots.acquire()


# ------------------------------------------------------------- all at once, on loopback


async def open_all_then_use(sockets: Sequence[tcpcli.Socket]) -> list[str]:
    """Promise.all(sockets.map(s => s.opened)), then a round trip on each: what each did."""
    async with anyio.create_task_group() as tg:
        for sock in sockets:
            tg.start_soon(_opened, sock)
    outcomes = []
    for sock in sockets:
        try:
            await sock.writable.send(b"ping")
            assert await sock.readable.receive() == b"ping"
            outcomes.append("echoed")
        except SocketCanceledError:
            outcomes.append("canceled")
    return outcomes


async def _opened(sock: tcpcli.Socket) -> None:
    await sock.opened


@pytest.mark.parametrize("count", [7, 20])
async def test_sockets_opened_at_once_all_settle(count: int) -> None:
    with serve(echo) as server:
        async with tcpcli.Invocation(policy="open") as inv:
            sockets = [tcpcli.connect(server.address) for _ in range(count)]
            with anyio.fail_after(SETTLE_SECONDS):
                outcomes = await open_all_then_use(sockets)
            assert outcomes.count("canceled") == count - WORKERS_MAX_SOCKETS
            assert outcomes.count("echoed") == WORKERS_MAX_SOCKETS
            assert inv.slots.peak == WORKERS_MAX_SOCKETS
            canceled = [s for s, o in zip(sockets, outcomes, strict=True) if o == "canceled"]
            with pytest.raises(SocketCanceledError):
                await canceled[0].readable.receive()  # later use raises, every time
            with pytest.raises(SocketCanceledError):
                await canceled[0].closed
            for sock in sockets:
                await sock.close()
            assert inv.slots.live == 0


async def test_each_task_opening_its_own_socket_settles() -> None:
    """Seven tasks each ``await sock.opened``, and read only once all seven have."""
    with serve(echo) as server:
        async with tcpcli.Invocation(policy="open") as inv:
            all_open = anyio.Event()
            opened = 0
            outcomes: list[str] = []

            async def one() -> None:
                nonlocal opened
                sock = tcpcli.connect(server.address)
                await sock.opened
                opened += 1
                if opened == 7:
                    all_open.set()
                await all_open.wait()
                try:
                    await sock.writable.send(b"x")
                    outcomes.append(as_text(await sock.readable.receive()))
                except SocketCanceledError:
                    outcomes.append("canceled")
                await sock.close()

            with anyio.fail_after(SETTLE_SECONDS):
                async with anyio.create_task_group() as tg:
                    for _ in range(7):
                        tg.start_soon(one)
            assert sorted(outcomes) == ["canceled", *["x"] * 6]
            assert inv.slots.peak == WORKERS_MAX_SOCKETS and inv.slots.live == 0


def as_text(data: bytes) -> str:
    return data.decode()


async def test_tls_sockets_opened_at_once_cancel_only_finished_handshakes(
    server_ssl_context: ssl.SSLContext, ca_file: str
) -> None:
    with serve(echo, ssl_context=server_ssl_context) as server:
        async with tcpcli.Invocation(policy="open") as inv:
            sockets = [tcpcli.connect(server.address, secure_transport="on",
                                      tls=TLSOptions(ca_file=ca_file)) for _ in range(8)]
            with anyio.fail_after(SETTLE_SECONDS):
                outcomes = await open_all_then_use(sockets)
            assert outcomes.count("canceled") == 2
            # Each canceled socket had finished its handshake: a TLS report, then canceled.
            for sock, outcome in zip(sockets, outcomes, strict=True):
                assert sock.tls_report is not None, outcome
            assert inv.slots.peak == WORKERS_MAX_SOCKETS
        assert inv.slots.live == 0


async def test_invocation_end_gives_back_queued_and_open_slots() -> None:
    with serve(echo) as server:
        async with tcpcli.Invocation(policy="open") as inv:
            busy = [tcpcli.connect(server.address) for _ in range(WORKERS_MAX_SOCKETS)]
            for sock in busy:
                await sock.opened
            queued = tcpcli.connect(server.address)
            async with anyio.create_task_group() as tg:

                async def keep_reading(sock: tcpcli.Socket) -> None:
                    with pytest.raises(Exception):  # noqa: B017, PT011 - any end of the read
                        await sock.readable.receive()

                for sock in busy:  # reads in progress: the rule must not fire
                    tg.start_soon(keep_reading, sock)
                tg.start_soon(_opened_or_closed, queued)
                await anyio.sleep(0.05)
                assert inv.slots.queued == 1
                with anyio.fail_after(SETTLE_SECONDS):
                    await inv.abort_all(StreamClosedError("ended"))
            assert inv.slots.live == 0 and inv.slots.queued == 0
            with pytest.raises(StreamClosedError, match="ended"):
                await queued.opened


async def _opened_or_closed(sock: tcpcli.Socket) -> None:
    with pytest.raises(StreamClosedError):
        await sock.opened


async def test_io_issued_before_the_open_keeps_a_socket_from_the_rule() -> None:
    """Seven tasks each write, read the echo and keep reading a while, then close: the
    writes were asked for before their sockets opened, so none is idle, none canceled;
    the seventh waits for the first close."""
    with serve(echo) as server:
        async with tcpcli.Invocation(policy="open") as inv:
            sockets: list[tcpcli.Socket] = []

            async def busy() -> None:
                sock = tcpcli.connect(server.address)
                sockets.append(sock)
                await sock.writable.send(b"x")
                assert await sock.readable.receive() == b"x"
                with anyio.move_on_after(0.1):
                    await sock.readable.receive()
                await sock.close()

            with anyio.fail_after(SETTLE_SECONDS):
                async with anyio.create_task_group() as tg:
                    for _ in range(7):
                        tg.start_soon(busy)
            waited = [sock.clock.total_ms("slot-wait") for sock in sockets]
            assert sum(1 for ms in waited if ms >= 50) == 1, waited
            assert inv.slots.peak == WORKERS_MAX_SOCKETS and inv.slots.live == 0
