"""Byte-exact, fast stdin/stdout for the event loop: non-blocking fd reads and writes.

A thread per chunk costs ~5× the throughput (measured: 0.42 GB/s vs 2.2 GB/s), so pipes
and sockets are switched to O_NONBLOCK and polled by the event loop. Regular files never
block and are read or written directly; terminals stay blocking (they are slow anyway, and
O_NONBLOCK on a terminal would leak into stderr and the parent shell).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat

import anyio
import anyio.lowlevel

#: Large reads keep bulk transfers cheap; the socket side uses the same size.
CHUNK = 1024 * 1024
#: Linux fcntl: grow a pipe's buffer (not exported by the fcntl module on 3.11).
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1024 * 1024


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        mode = os.fstat(fd).st_mode
        self.pollable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        self._restore: int | None = None
        if self.pollable:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            if not flags & os.O_NONBLOCK:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
                self._restore = flags
            if stat.S_ISFIFO(mode):
                # Over /proc/sys/fs/pipe-max-size, or not permitted: keep the default.
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        self.blocking_tty = os.isatty(fd)

    def restore(self) -> None:
        """Give the descriptor back as we found it (it is shared with the parent shell)."""
        if self._restore is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.fd, fcntl.F_SETFL, self._restore)
            self._restore = None


class FdReader(_Fd):
    async def read(self, size: int = CHUNK) -> bytes:
        """Up to ``size`` bytes; b"" at end of input."""
        if not self.pollable:
            if self.blocking_tty:
                # A terminal: wait in a worker thread so the socket side keeps flowing.
                return await anyio.to_thread.run_sync(
                    os.read, self.fd, size, abandon_on_cancel=True
                )
            await anyio.lowlevel.checkpoint()
            return os.read(self.fd, size)
        while True:
            try:
                return os.read(self.fd, size)
            except BlockingIOError:
                await anyio.wait_readable(self.fd)


class FdWriter(_Fd):
    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                await anyio.wait_writable(self.fd)
                continue
            view = view[written:]
        if not self.pollable:
            await anyio.lowlevel.checkpoint()
