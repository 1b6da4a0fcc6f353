"""The tcpcli side of the differential suite: runs one scenario with the library.

A line-for-line counterpart of ``worker.mjs``: the same steps, the same outcome record.
JavaScript promises run whether or not anyone awaits them; here each promise-like step is a
task in the run's task group, so a step that watches a promise for a while ("is `closed`
still pending?") never cancels the work behind it.

Outcome mapping: an exception that is a ``TypeError`` maps to JavaScript's ``TypeError``,
any other to ``Error``; its message is ``workers_message`` for tcpcli errors (what a Worker
would see) and ``str()`` otherwise. ``anyio.EndOfStream`` is a reader's ``{done: true}``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from tcpcli.core.address import SocketAddress
from tcpcli.core.errors import TcpcliError
from tcpcli.core.invocation import Invocation
from tcpcli.core.socket import Socket, SocketInfo, connect
from tcpcli.core.tls import TLSOptions

#: Cleanup (not part of the outcome) gives each socket this long to close.
CLEANUP_SECONDS = 2.0


def describe(error: BaseException) -> dict[str, str]:
    kind = "TypeError" if isinstance(error, TypeError) else "Error"
    message = error.workers_message if isinstance(error, TcpcliError) else str(error)
    return {"type": kind, "message": message}


def revive(value: Any) -> Any:
    """JSON → Python, with ``{"$number": "NaN"}`` for the numbers JSON cannot spell."""
    if isinstance(value, list):
        return [revive(item) for item in value]
    if isinstance(value, dict):
        if "$number" in value:
            return float(value["$number"].replace("Infinity", "inf"))
        return {key: revive(item) for key, item in value.items()}
    return value


def _as_json(value: Any) -> str:
    """JSON.stringify's text, to sort the way worker.mjs does."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_bytes(text: str) -> bytes:
    return text.encode("latin-1")


def as_text(data: bytes | bytearray) -> str:
    return bytes(data).decode("latin-1")


class Promise:
    """A task whose outcome can be inspected, like a JavaScript promise."""

    def __init__(self, task_group: anyio.abc.TaskGroup,
                 work: Callable[[], Awaitable[Any]],
                 on_value: Callable[[Any], Any] = lambda _: None) -> None:
        self.done = anyio.Event()
        self.outcome: dict[str, Any] = {"pending": True}
        self._on_value = on_value
        task_group.start_soon(self._run, work)

    async def _run(self, work: Callable[[], Awaitable[Any]]) -> None:
        try:
            value = await work()
        except Exception as error:
            self.outcome = {"rejected": describe(error)}
        else:
            self.outcome = {"resolved": self._on_value(value)}
        finally:
            self.done.set()

    async def settle(self, ms: float) -> dict[str, Any]:
        with anyio.move_on_after(ms / 1000):
            await self.done.wait()
        return dict(self.outcome)


def info(value: SocketInfo) -> dict[str, Any]:
    return {"remoteAddress": value.remote_address, "localAddress": value.local_address}


class Run:
    def __init__(self, task_group: anyio.abc.TaskGroup, tls: TLSOptions,
                 connect_timeout: float | None) -> None:
        self.task_group = task_group
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.sockets: dict[str, Socket] = {}
        self.opened: dict[str, Promise] = {}
        self.closed: dict[str, Promise] = {}
        self.pending_writes: list[Promise] = []

    def promise(self, work: Callable[[], Awaitable[Any]],
                on_value: Callable[[Any], Any] = lambda _: None) -> Promise:
        return Promise(self.task_group, work, on_value)

    def connect(self, address: Any, options: dict[str, Any]) -> Socket:
        address = revive(address)
        if isinstance(address, dict):
            address = SocketAddress(address["hostname"], address["port"])
        kwargs: dict[str, Any] = {"tls": self.tls}
        if "secureTransport" in options:
            kwargs["secure_transport"] = options["secureTransport"]
        if "allowHalfOpen" in options:
            kwargs["allow_half_open"] = options["allowHalfOpen"]
        if self.connect_timeout is not None:
            kwargs["connect_timeout"] = self.connect_timeout
        return connect(address, **kwargs)

    async def read(self, socket: Socket, limit: int | None, ms: float) -> dict[str, Any]:
        data = bytearray()
        with anyio.move_on_after(ms / 1000):
            while limit is None or len(data) < limit:
                try:
                    data += await socket.readable.receive()
                except anyio.EndOfStream:
                    return {"data": as_text(data), "eof": True}
                except Exception as error:
                    return {"data": as_text(data), "error": describe(error)}
            return {"data": as_text(data), "eof": False}
        return {"data": as_text(data), "timeout": True}

    async def step(self, step: dict[str, Any]) -> dict[str, Any]:
        op = step["op"]
        name = step.get("socket", "main")
        socket = self.sockets.get(name)
        ms = step.get("within_ms", 0)
        if op == "connect":
            try:
                self.sockets[step["as"]] = self.connect(step["address"], step["options"])
            except Exception as error:
                return {"throws": describe(error)}
            return {"ok": True}
        assert socket is not None, f"no socket {name}"
        if op == "opened":
            if name not in self.opened:
                self.opened[name] = self.promise(lambda: socket.opened, info)
            return await self.opened[name].settle(ms)
        if op == "closed":
            if name not in self.closed:
                self.closed[name] = self.promise(lambda: socket.closed)
            return await self.closed[name].settle(ms)
        if op == "close":
            return await self.promise(socket.close).settle(ms)
        if op == "write":
            data = as_bytes(step["data"])
            return await self.promise(lambda: socket.writable.send(data)).settle(ms)
        if op == "write-value":
            value = step["value"]
            return await self.promise(lambda: socket.writable.send(value)).settle(ms)
        if op == "write-nowait":
            data = as_bytes(step["data"])
            self.pending_writes.append(self.promise(lambda: socket.writable.send(data)))
            return {}
        if op == "pending-writes":
            results = [await write.settle(ms) for write in self.pending_writes]
            self.pending_writes = []
            return {"results": results}
        if op == "close-writer":
            return await self.promise(socket.writable.aclose).settle(ms)
        if op == "read":
            return await self.read(socket, step.get("bytes"), ms)
        if op == "cancel-reader":
            return await self.promise(socket.readable.aclose).settle(ms)
        if op in ("second-writer", "second-reader"):
            return {"ok": True}  # anyio streams have no locks
        if op == "release-locks":
            return {}
        if op == "start-tls":
            try:
                self.sockets[step["as"]] = socket.start_tls()
            except Exception as error:
                return {"throws": describe(error)}
            if "again" not in step:
                return {"ok": True}
            try:  # at once, nothing awaited in between: JavaScript's same tick
                self.sockets[step["again"]] = socket.start_tls()
            except Exception as error:
                return {"ok": True, "again": {"throws": describe(error)}}
            return {"ok": True, "again": {"ok": True}}
        if op == "opened-all":
            promises = [self.promise(self._opened_of(self.sockets[each]), info)
                        for each in step["sockets"]]
            return {"results": [await promise.settle(ms) for promise in promises]}
        if op == "round-trip-all":
            return await self.round_trip_all(step["sockets"], ms)
        if op == "attrs":
            return {"upgraded": socket.upgraded, "secureTransport": socket.secure_transport}
        if op == "sleep":
            await anyio.sleep(step["ms"] / 1000)
            return {}
        raise ValueError(f"unknown step {op}")

    @staticmethod
    def _opened_of(socket: Socket) -> Callable[[], Awaitable[SocketInfo]]:
        async def opened() -> SocketInfo:
            return await socket.opened

        return opened

    async def round_trip_all(self, names: list[str], ms: float) -> dict[str, Any]:
        """Write "x" on each socket in turn and read it back: how many echoed, and the
        errors of those that did not (sorted, so the order of sockets does not matter)."""
        echoed, rejected = 0, []
        for name in names:
            socket = self.sockets[name]
            try:
                await socket.writable.send(b"x")
            except Exception as error:
                rejected.append(describe(error))
                continue
            result = await self.read(socket, 1, ms)
            if result.get("data") == "x":
                echoed += 1
            else:
                rejected.append(result.get("error", result))
        return {"echoed": echoed, "rejected": sorted(rejected, key=_as_json)}

    async def cleanup(self) -> None:
        """Close what is left, so the peers see the end promptly (not part of the outcome)."""
        async with anyio.create_task_group() as closing:
            for socket in self.sockets.values():
                closing.start_soon(self._close_quietly, socket)

    @staticmethod
    async def _close_quietly(socket: Socket) -> None:
        with anyio.move_on_after(CLEANUP_SECONDS):
            with contextlib.suppress(Exception):
                await socket.close()


async def run_scenario(steps: list[dict[str, Any]], *, ca_file: str,
                       library: dict[str, Any]) -> dict[str, Any]:
    """Run the steps with tcpcli; return ``{"steps": [...]}`` like the Worker does."""
    results: list[dict[str, Any]] = []
    invocation = Invocation(policy=library.get("policy", "open"),
                                   max_sockets=library.get("max_sockets"))
    async with invocation, anyio.create_task_group() as task_group:
        run = Run(task_group, TLSOptions(ca_file=ca_file),
                  library.get("connect_timeout"))
        try:
            for step in steps:
                result = await run.step(step)
                results.append({"op": step["op"], **result})
                if step["op"] == "connect" and "throws" in result and step["as"] == "main":
                    break
        finally:
            await run.cleanup()
            task_group.cancel_scope.cancel()  # promises nobody settled
    return {"steps": results}

