"""``tcpcli connect``: a netcat-grade client. stdout carries the peer's bytes, exactly.

EOF semantics, explicitly:

* stdin EOF half-closes (FIN; close_notify on TLS) and we keep reading until the peer
  closes — however long it takes, no fixed cut-off.
* The peer closing first ends the run even while stdin is still open (with the Workers
  default ``allowHalfOpen: false``, our write side closes too). ``--half-open`` keeps the
  write side open and ends at stdin EOF instead.
* ``--idle-timeout`` ends a run with no bytes in either direction for that long.
"""

from __future__ import annotations

import os
import stat
import time
from typing import IO, TYPE_CHECKING, Any

import click

from tcpcli.cli.arguments import STARTTLS_PROTOCOLS, target_address, unescape
from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.expectations import expect_option
from tcpcli.cli.helpformat import OUTPUT, TIMING, SectionedCommand, option
from tcpcli.cli.options import (
    common_options,
    proxy_header_options,
    target_argument,
    via_option,
    with_proxy_header,
    with_via,
)
from tcpcli.cli.paramtypes import DURATION, KEEPALIVE, PORT, OutputFile
from tcpcli.cli.runner import report_error, run

if TYPE_CHECKING:
    import selectors

    from anyio import CancelScope

    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.cli.stdio import FdWriter, InterruptLatch
    from tcpcli.core.blocking import BlockingConnection
    from tcpcli.core.blockingtls import BlockingTLS
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.errors import TcpcliError
    from tcpcli.core.expect import Expectation
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.socket import Socket
    from tcpcli.core.timing import Phase
    from tcpcli.render.report import Waterfall, WaterfallRow

EXAMPLES = """
\b
Examples:
  printf 'PING\\r\\n' | tcpcli connect cache.internal:6379
  tcpcli connect db.internal:5432 --tls -v < /dev/null
  tcpcli connect example.com 443 --tls --send 'HEAD / HTTP/1.0\\r\\n\\r\\n'
  tcpcli connect 127.0.0.1:8080 --allow 127.0.0.1 --transcript session.log
"""


class Outcome:
    """How the conversation ended, for the footer and the ``close`` event."""

    def __init__(self) -> None:
        self.first_closer = ""  # "peer" | "us"
        self.how = ""  # "FIN" | "RST" | "idle-timeout"
        self.stdin_open = True
        self.started = time.perf_counter()


class Transcript:
    """A direction-tagged, timestamped record of every chunk (``--transcript``)."""

    def __init__(self, path: str, fmt: str, origin_ns: int) -> None:
        self.file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self.fmt = fmt
        self.origin_ns = origin_ns

    def record(self, direction: str, data: bytes) -> None:
        t_ms = (time.perf_counter_ns() - self.origin_ns) / 1e6
        self.file.write(f"[{t_ms:12.3f} ms] {direction} {len(data)} bytes\n")
        if self.fmt == "text":
            self.file.write(data.decode("latin-1").encode("unicode_escape").decode("ascii"))
            self.file.write("\n")
        else:
            for offset in range(0, len(data), 16):
                row = data[offset:offset + 16]
                hexpart = " ".join(f"{b:02x}" for b in row)
                text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
                self.file.write(f"  {offset:08x}  {hexpart:<47}  {text}\n")

    def close(self) -> None:
        self.file.close()


def to_crlf(data: bytes, previous_cr: bool) -> bytes:
    """LF -> CRLF (nc -C), leaving existing CRLF alone, even across chunk boundaries."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if previous_cr and out.startswith(b"\r\n"):
        out = out[1:]
    return out


@click.command("connect", cls=SectionedCommand, epilog=EXAMPLES,
               short_help="Open a TCP or TLS connection and pipe stdin/stdout through it.")
@target_argument()
@click.argument("port", required=False, type=PORT)
@click.option("--half-open", is_flag=True,
              help="Keep sending after the peer's EOF (Workers allowHalfOpen: true).")
@option("--idle-timeout", type=DURATION, metavar="SECONDS", section=TIMING,
        help="End after this long with no bytes in either direction.")
@option("--keepalive", type=KEEPALIVE, section=TIMING,
        help="TCP keepalive: a probe after IDLE s of silence, then every INTERVAL s "
             "(default 10), COUNT (5) unanswered end it; keeps NATs and tunnels from "
             "forgetting an idle session.")
@click.option("--no-stdin", is_flag=True, help="Send nothing; only print what the peer sends.")
@click.option("--send", "send_text", metavar="TEXT",
              help=r"Send TEXT (escapes like \r\n allowed) instead of stdin, then EOF.")
@click.option("--send-file", type=click.Path(exists=True, dir_okay=False, allow_dash=False),
              help="Send this file instead of stdin, then EOF.")
@click.option("--crlf", is_flag=True, help="Send line endings as CRLF (nc -C).")
@option("--transcript", type=OutputFile(), section=OUTPUT, metavar="FILE",
        help="Write a timestamped, direction-tagged transcript to this file.")
@option("--transcript-format", type=click.Choice(["hex", "text"]), default="hex",
        show_default=True, section=OUTPUT, help="How --transcript writes the bytes.")
@click.option("--starttls", "starttls", metavar="PROTO",
              type=click.Choice(STARTTLS_PROTOCOLS),
              help="Run PROTO's STARTTLS dialogue, upgrade, then pipe over TLS.")
@click.option("--tls-eof", type=click.Choice(["close-notify", "wait"]),
              help="At stdin EOF over TLS (no half-close there): send close_notify and "
                   "read on (default with --tls), or send nothing and read until the "
                   "server closes (default with --starttls, as s_client -ign_eof).")
@option("--events", "events_file", type=OutputFile(), metavar="FILE", section=OUTPUT,
        help="Write JSON Lines events to this file instead of stderr.")
@expect_option("connect", what="A check on the connection, checked when it ends")
@proxy_header_options
@via_option
@common_options
@click.pass_obj
def connect_command(env: Environment | None, /, target: str, port: int | None,
                    **kwargs: Any) -> None:
    """Connect to TARGET (host:port, [v6]:port, or host PORT) and pipe stdin/stdout.

    stdout carries exactly the peer's bytes; diagnostics go to stderr. stdin EOF sends FIN
    and keeps reading until the peer closes; the peer closing first ends the run.
    """
    env = env or Environment()
    from tcpcli.cli.commonoptions import CommonOptions

    common = CommonOptions.from_kwargs(kwargs)
    if port is not None and not 1 <= port <= 65535:
        raise click.BadParameter(f"port {port} is out of range (1-65535)", param_hint="PORT")
    address = target_address(target, port)
    sources = [bool(kwargs["no_stdin"]), kwargs["send_text"] is not None,
               kwargs["send_file"] is not None]
    if sum(sources) > 1:
        raise click.UsageError("--no-stdin, --send and --send-file exclude each other")
    if kwargs["starttls"] and common.tls:
        raise click.UsageError("--tls and --starttls exclude each other")
    invocation = common.invocation()  # bad --allow/--resolver values are usage errors
    with_proxy_header(invocation, kwargs)
    with_via(invocation, kwargs)
    keepalive = kwargs.pop("keepalive")
    if keepalive is not None:
        from tcpcli.core.connect import Keepalive
        from tcpcli.record import replace

        invocation.options = replace(invocation.options, keepalive=Keepalive(*keepalive))
    session = ConnectSession(env, common, address, **kwargs)
    invocation.observer = session.observe
    run(lambda: session.main(invocation), env, traceback=common.traceback,
        on_error=session.report_error, without_loop=lambda: session.main_now(invocation))


class ConnectSession:
    def __init__(self, env: Environment, common: CommonOptions, address: str, *,
                 half_open: bool, idle_timeout: float | None, no_stdin: bool,
                 send_text: str | None, send_file: str | None, crlf: bool,
                 transcript: str | None, transcript_format: str,
                 events_file: str | None, starttls: str | None,
                 tls_eof: str | None, expectations: tuple[Expectation, ...] = ()) -> None:

        self.env, self.common, self.address = env, common, address
        self.half_open, self.idle_timeout = half_open, idle_timeout
        self.no_stdin, self.crlf = no_stdin, crlf
        self.starttls = starttls
        # TLS has no half-close: what stdin EOF does there (see --tls-eof).
        self.wait_at_tls_eof = (tls_eof or ("wait" if starttls else "close-notify")) == "wait" \
            and bool(common.tls or starttls)
        self.payload = unescape(send_text) if send_text is not None else None
        self.send_file = send_file
        self.origin_ns = time.perf_counter_ns()
        # connect's product is the peer's bytes: its JSON goes to --events FILE or stderr,
        # and once it is on, the notes below become events in it too.
        self.events = env.start_session("connect", json=common.json, events_file=events_file,
                                        quiet=common.quiet,
                                        origin_ns=self.origin_ns)
        self.waterfall: Waterfall | None = None  # the -v rows and the timing event
        if common.verbose or self.events is not None:
            from tcpcli.render.report import Waterfall

            self.waterfall = Waterfall(self.origin_ns)
        if (common.tls or starttls) and (common.verbose or self.events is not None
                                         or expectations):
            from tcpcli.core.tlssession import load_report_builders

            load_report_builders()  # the report it shows: its builders, imported in the set-up
        self.transcript = Transcript(transcript, transcript_format, self.origin_ns) \
            if transcript else None
        self.outcome = Outcome()
        self.last_activity = time.monotonic()
        self._kernel_at_close: dict[str, object] | None = None
        self.expectations = expectations
        self._kernel_connected: dict[str, object] | None = None
        self.first_bytes = bytearray()  # what a banner check reads

    # ---------------------------------------------------------------- reporting

    def observe(self, stage: str, phase: Phase) -> None:
        if stage == "end" and self.events is not None:
            self.events.phase(phase, self.address)

    def report_error(self, error: TcpcliError, code: ExitCode) -> None:
        report_error(self.env, self.events, self.address, error, code)

    def _show_connected(self, sock: Socket | BlockingConnection | BlockingTLS) -> None:
        if sock.judged_by_name and not self.common.quiet:
            self.env.note(sock.judged_by_name)
        kernel = sock.tcp_info() if self._wants_kernel_facts else None
        self._kernel_connected = kernel
        if self.events is not None:
            self.events.emit("connected", self.address,
                             peer=_join(sock.peer_address),
                             local=_join(sock.local_sockname),
                             secure_transport=sock.secure_transport,
                             **({"via": sock.via} if sock.via else {}),
                             **({"tcp": kernel} if kernel is not None else {}))
            if sock.tls_report is not None:
                self.events.emit("tls_report", self.address, **sock.tls_report.to_dict())
        if self.common.verbose and not self.common.quiet:
            from tcpcli.render.report import render_tls, tls_lines

            assert self.waterfall is not None
            self._show_rows(self.waterfall.take(sock.clock.phases))
            self._say_kernel_facts(kernel, "connected")
            if self.env.rich:
                if sock.tls_report is not None:
                    render_tls(self.env.console, sock.tls_report)
            else:
                if sock.tls_report is not None:
                    for line in tls_lines(sock.tls_report):
                        self.env.note(line)
        v = sock.tls_verification
        if v is not None and not v.verified and not self.common.quiet:
            if v.pin_matched:  # trusted by its key, as ssh trusts a known host
                if self.common.verbose:
                    self.env.note(f"certificate chain not verified ({v.verify_code}: "
                                  f"{v.reason}); trusted because its key matches --pin")
            else:
                self.env.warn(f"certificate NOT verified ({v.verify_code}: "
                              f"{v.reason}); continuing because of --insecure")

    @property
    def _wants_kernel_facts(self) -> bool:
        return bool(self.common.verbose or self.expectations) or self.events is not None

    def _say_kernel_facts(self, kernel: dict[str, object] | None, when: str) -> None:
        from tcpcli.core.tcpinfo import describe

        if kernel is not None:
            self.env.note(f"{describe(kernel)} ({when})")
        elif when == "connected":
            self.env.note("kernel tcp: no TCP_INFO on this system")

    def _kernel_facts_at_close(self, sock: Socket | BlockingConnection | BlockingTLS) -> None:
        """Read before the socket closes: the footer and the close event report them."""
        if self._wants_kernel_facts:
            self._kernel_at_close = sock.tcp_info()

    def _show_rows(self, rows: list[WaterfallRow]) -> None:
        from tcpcli.render.report import render_rows, row_lines

        if self.env.rich:
            render_rows(self.env.console, rows)
        else:
            for line in row_lines(rows):
                self.env.note(line)

    def _footer(self, sock: Socket | BlockingConnection | BlockingTLS) -> None:
        duration = time.perf_counter() - self.outcome.started
        if self.waterfall is not None:
            rows = self.waterfall.finish(sock.clock.phases)  # the whole run: it ends here
            if self.events is not None:
                self.events.emit("timing", self.address, **self.waterfall.event_fields())
            if self.common.verbose and not self.common.quiet:
                self._show_rows(rows)
        kernel = self._kernel_at_close
        if self.events is not None:
            self.events.emit("close", self.address, first=self.outcome.first_closer,
                             how=self.outcome.how, bytes_sent=sock.bytes_sent,
                             bytes_received=sock.bytes_received,
                             duration_ms=round(duration * 1000, 3),
                             **({"truncated": True} if sock.truncated else {}),
                             **({"tcp": kernel} if kernel is not None else {}))
        if self.common.verbose and not self.common.quiet:
            if kernel is not None:
                self._say_kernel_facts(kernel, "at close")
            who = "the peer" if self.outcome.first_closer == "peer" else "we"
            self.env.note(f"closed: {who} closed first ({self.outcome.how}); "
                          f"sent {sock.bytes_sent} bytes, received {sock.bytes_received} bytes "
                          f"in {duration:.3f} s")

    # ---------------------------------------------------------------- the session

    async def main(self, invocation: Invocation) -> int:
        """The conversation, which Ctrl-C ends at any point with 130 (see InterruptLatch)."""
        import anyio

        from tcpcli.cli.stdio import InterruptLatch

        code: int = ExitCode.INTERRUPTED
        with InterruptLatch() as latch:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._end_at_interrupt, latch, tg.cancel_scope)
                    code = await self._converse(invocation)
                    tg.cancel_scope.cancel()
            except BaseException:
                if not latch.presses:
                    raise
                # Whatever the clean-up after Ctrl-C met, the user asked us to stop.
        return ExitCode.INTERRUPTED if latch.presses else code

    def main_now(self, invocation: Invocation) -> int | None:
        """The conversation without an event loop (``core.blocking``; ``core.blockingtls``
        for --tls, ``core.blockingstarttls`` for --starttls): a connection whose addresses
        are known without a DNS query. None, with nothing done, when the event-loop core
        is needed (a proxy, a DNS query)."""
        import signal

        from tcpcli.core.address import parse_address
        from tcpcli.core.blocking import open_now
        from tcpcli.core.timing import PhaseClock

        address = parse_address(self.address)
        clock = PhaseClock(invocation.observer)
        options = invocation.options
        try:
            conn: BlockingConnection | BlockingTLS | None
            if self.common.tls:
                from tcpcli.core.blockingtls import open_tls_now

                conn = open_tls_now(invocation, address.hostname, address.port,
                                    target=address.address_str, options=options, clock=clock)
            else:
                plain = open_now(invocation, address.hostname, address.port,
                                 target=address.address_str, options=options, clock=clock)
                conn = plain if plain is None or not self.starttls else \
                    self._upgrade_now(plain, address.hostname, options)
            if conn is None:
                return None
            return self._converse_now(conn)
        except KeyboardInterrupt:
            # As InterruptLatch does for the loop: once Ctrl-C was pressed the process is
            # on its way out, and no later press may turn exit 130 into a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return ExitCode.INTERRUPTED

    def _upgrade_now(self, conn: BlockingConnection, hostname: str,
                     options: ConnectOptions) -> BlockingTLS:
        """--starttls over the blocking connection: the dialogue's rules are
        ``core.dialoguedriver``'s, as over the Socket (:meth:`_converse`)."""
        from tcpcli.core.blockingstarttls import BlockingChannel
        from tcpcli.core.dialoguedriver import drive_starttls
        from tcpcli.core.waits import run_without_loop
        from tcpcli.protocols.registry import get_dialogue

        assert self.starttls is not None
        channel = BlockingChannel(conn, hostname=hostname, options=options)
        try:
            result = run_without_loop(drive_starttls(
                channel, get_dialogue(self.starttls), reply_timeout=self.common.reply_timeout))
            if result.after_tls_error is not None:
                raise result.after_tls_error
        except BaseException:
            channel.abort()  # as the invocation's end aborts the loop's sockets
            raise
        return result.socket

    def _converse_now(self, conn: BlockingConnection | BlockingTLS) -> int:
        self._show_connected(conn)
        graceful = False
        try:
            self._relay_now(conn)
            graceful = True
        finally:
            self._kernel_facts_at_close(conn)
            conn.close(graceful=graceful)
            if self.transcript is not None:
                self.transcript.close()
        self._footer(conn)
        return self._verdict(conn)

    def _relay_now(self, conn: BlockingConnection | BlockingTLS) -> None:
        """stdin (or --send/--send-file) -> socket and socket -> stdout, polled together,
        with the rules of ``_upstream`` and ``_downstream``."""
        import selectors

        from tcpcli.cli.stdio import CHUNK, FdWriter

        writer = FdWriter(self.env.stdout.fileno())
        buffer = memoryview(bytearray(CHUNK))  # one buffer for every read
        selector = selectors.DefaultSelector()
        upstream = _Upstream(self, conn) if not self.no_stdin else None
        receiving = True
        # The last read found bytes: read again before asking the poller (a bulk pull
        # would otherwise pay one poll per chunk, as the loop's streams do not).
        hot = False
        try:
            while receiving or upstream is not None:
                sock_events = selectors.EVENT_READ if receiving else 0
                if conn.unsent:  # TLS records the kernel has not taken yet
                    sock_events |= selectors.EVENT_WRITE
                poll_input = False
                if upstream is not None:
                    if upstream.wants_socket:
                        sock_events |= selectors.EVENT_WRITE
                    elif upstream.reader is not None and upstream.reader.needs_poll:
                        poll_input = True
                    else:
                        upstream.pump(readable=True)  # never blocks: a file, --send
                        if upstream.done:
                            upstream = None
                        continue
                interest = {conn.fileno(): sock_events} if sock_events else {}
                if poll_input:
                    assert upstream is not None
                    assert upstream.reader is not None
                    interest[upstream.reader.fd] = selectors.EVENT_READ
                ready = self._wait_now(selector, interest, at_once=hot)
                if ready is None:
                    self.outcome.how = "idle-timeout"
                    if not self.outcome.first_closer:
                        self.outcome.first_closer = "us"
                    return
                if hot:
                    ready[conn.fileno()] = ready.get(conn.fileno(), 0) | selectors.EVENT_READ
                if conn.unsent and ready.get(conn.fileno(), 0) & selectors.EVENT_WRITE:
                    conn.flush()
                if receiving and ready.get(conn.fileno(), 0) & selectors.EVENT_READ:
                    count = self._receive_now(conn, buffer, writer)
                    hot, receiving = bool(count), count != 0
                    if not receiving and (upstream is None or not self.half_open):
                        return
                if upstream is not None:
                    socket_ready = bool(ready.get(conn.fileno(), 0) & selectors.EVENT_WRITE)
                    input_ready = upstream.reader is not None \
                        and upstream.reader.fd in ready
                    upstream.pump(readable=input_ready, writable=socket_ready)
                    if upstream.done:
                        upstream = None
                        if not receiving:
                            return
        finally:
            selector.close()
            writer.restore()
            if upstream is not None:
                upstream.release()

    def _wait_now(self, selector: selectors.BaseSelector, interest: dict[int, int], *,
                  at_once: bool = False) -> dict[int, int] | None:
        """Which of ``interest``'s descriptors are ready (and for what); None once the idle
        timeout ran out with nothing moving either way. ``at_once``: only look."""
        registered = selector.get_map()
        for key in list(registered.values()):
            if interest.get(key.fd) != key.events:
                selector.unregister(key.fd)
        for fd, events in interest.items():
            if fd not in registered:
                selector.register(fd, events)
        while True:
            timeout = None
            if self.idle_timeout:
                timeout = self.last_activity + self.idle_timeout - time.monotonic()
                if timeout <= 0:
                    return None
            ready = selector.select(0 if at_once else timeout)
            if ready or at_once:
                return {key.fd: events for key, events in ready}

    def _receive_now(self, conn: BlockingConnection | BlockingTLS, buffer: memoryview,
                     writer: FdWriter) -> int | None:
        """One read from the socket to stdout: the bytes it moved, 0 at the peer's EOF,
        None when there were none yet."""
        from tcpcli.core.errors import ConnectionLostError

        try:
            count = conn.recv_into(buffer)
        except ConnectionLostError:
            if not self.outcome.first_closer:
                self.outcome.first_closer = "peer"
            self.outcome.how = "RST"
            raise
        if count is None:
            return None
        if not count:
            self._at_peer_eof(truncated=conn.truncated)
            return 0
        self.last_activity = time.monotonic()
        data = buffer[:count]
        self._keep_first(data)
        if self.transcript is not None:
            self.transcript.record("<", bytes(data))
        if self.events is not None and self.common.verbose:
            self.events.emit("data", self.address, direction="in", bytes=count)
        writer.write_now(data)
        return count

    @staticmethod
    async def _end_at_interrupt(latch: InterruptLatch, scope: CancelScope) -> None:
        await latch.wait()
        scope.cancel()

    async def _converse(self, invocation: Invocation) -> int:
        import anyio

        from tcpcli.core.socket import connect

        async with invocation:
            mode = "on" if self.common.tls else "starttls" if self.starttls else "off"
            sock = connect(self.address, secure_transport=mode,
                           allow_half_open=self.half_open)
            sock.keep_tcp_info = self._wants_kernel_facts
            await sock.opened
            if self.starttls:
                from tcpcli.core.starttls import run_starttls
                from tcpcli.protocols.registry import get_dialogue

                result = await run_starttls(sock, get_dialogue(self.starttls),
                                            reply_timeout=self.common.reply_timeout)
                if result.after_tls_error is not None:
                    raise result.after_tls_error
                sock = result.socket
            self._show_connected(sock)
            try:
                async with anyio.create_task_group() as tg:
                    if self.idle_timeout:
                        tg.start_soon(self._idle_watch, tg.cancel_scope)
                    async with anyio.create_task_group() as directions:
                        directions.start_soon(self._downstream, sock, tg.cancel_scope)
                        directions.start_soon(self._upstream, sock)
                    # Both directions ended (half-open: the peer's EOF, then stdin's): the
                    # idle watch has nothing left to watch.
                    tg.cancel_scope.cancel()
            finally:
                self._kernel_facts_at_close(sock)
                with anyio.CancelScope(shield=True):
                    await sock.close()
                    if self.transcript is not None:
                        self.transcript.close()
            self._footer(sock)
        return self._verdict(sock)

    async def _upstream(self, sock: Socket) -> None:
        """stdin (or --send/--send-file) -> socket, then FIN."""
        import anyio

        from tcpcli.cli.stdio import CHUNK, FdReader
        from tcpcli.core.errors import StreamClosedError

        if self.no_stdin:
            return
        reader: FdReader | None = None
        file: IO[bytes] | None = None
        previous_cr = False
        sent_whole_file = False
        try:
            if self.payload is None and self.send_file is None:
                stdin = self.env.stdin.fileno()
                if self._zero_copy and stat.S_ISREG(os.fstat(stdin).st_mode):
                    sent_whole_file = await self._send_whole_file(sock, stdin)
                else:
                    reader = FdReader(stdin)
            elif self.send_file is not None:
                file = open(self.send_file, "rb")  # noqa: SIM115, ASYNC230 - a local file
                if self._zero_copy:
                    sent_whole_file = await self._send_whole_file(sock, file.fileno())
            while not sent_whole_file:
                if self.payload is not None:
                    data, self.payload = self.payload, b""
                elif file is not None:
                    data = await anyio.to_thread.run_sync(file.read, CHUNK)
                else:
                    assert reader is not None
                    # A fresh bytes per read: measured faster here than readv into one
                    # reused buffer (0.45 vs 0.60 s of system time per 2 GiB).
                    data = await reader.read(CHUNK)
                if not data:
                    break
                self.last_activity = time.monotonic()
                if self.crlf:
                    converted = to_crlf(data, previous_cr)
                    previous_cr = data.endswith(b"\r")
                    data = converted
                if self.transcript is not None:
                    self.transcript.record(">", data)
                if self.events is not None and self.common.verbose:
                    self.events.emit("data", self.address, direction="out", bytes=len(data))
                await sock.writable.send(data)
            self._at_end_of_input()
            if self.wait_at_tls_eof:
                return  # the server closes first; close() then sends close_notify
            await sock.writable.aclose()
        except StreamClosedError:
            pass  # the peer closed first; the downstream task reports it
        finally:
            if reader is not None:
                reader.restore()
            if file is not None:
                file.close()

    @property
    def _zero_copy(self) -> bool:
        """Whether bytes may go from a file to the socket without passing through us."""
        return not self.crlf and self.transcript is None and not (
            self.events is not None and self.common.verbose)

    async def _send_whole_file(self, sock: Socket, fd: int) -> bool:
        """A regular file -> socket, copied by the kernel where it can (sendfile): 1.5x
        faster than reading and sending (benchmarks/connect_throughput.py)."""
        while await sock.writable.send_file(fd):
            self.last_activity = time.monotonic()
        return True

    async def _downstream(self, sock: Socket, scope: CancelScope) -> None:
        """socket -> stdout until the peer's EOF."""
        import anyio

        from tcpcli.cli.stdio import CHUNK, FdWriter
        from tcpcli.core.errors import ConnectionLostError

        writer = FdWriter(self.env.stdout.fileno())
        buffer = memoryview(bytearray(CHUNK))  # one buffer for every read: no allocations
        try:
            while True:
                try:
                    data = buffer[:await sock.readable.receive_into(buffer)]
                except anyio.EndOfStream:
                    break
                except ConnectionLostError:
                    if not self.outcome.first_closer:
                        self.outcome.first_closer = "peer"
                    self.outcome.how = "RST"
                    raise
                self.last_activity = time.monotonic()
                self._keep_first(data)
                if self.transcript is not None:
                    self.transcript.record("<", bytes(data))
                if self.events is not None and self.common.verbose:
                    self.events.emit("data", self.address, direction="in", bytes=len(data))
                await writer.write(data)
        finally:
            writer.restore()
        self._at_peer_eof(truncated=sock.truncated)
        if not self.half_open or not self.outcome.stdin_open or self.no_stdin:
            scope.cancel()

    def _at_peer_eof(self, *, truncated: bool = False) -> None:
        if not self.outcome.first_closer:
            self.outcome.first_closer, self.outcome.how = "peer", "FIN"
        if truncated and not self.common.quiet and not self.env.events_on_stderr:
            # (with the JSON stream on stderr, the close event's "truncated" says it)
            self.env.warn("the peer closed the TLS connection without close_notify; "
                          "what arrived may be truncated")
        if self.outcome.stdin_open and not self.no_stdin and not self.common.quiet:
            self.env.note("peer closed the connection")

    def _at_end_of_input(self) -> None:
        """stdin (or --send, --send-file) is exhausted: FIN follows, unless TLS waits."""
        self.outcome.stdin_open = False
        if not self.wait_at_tls_eof and not self.outcome.first_closer:
            self.outcome.first_closer, self.outcome.how = "us", "FIN"

    def _keep_first(self, data: memoryview) -> None:
        from tcpcli.cli.expectations import BANNER_LIMIT

        if self.expectations and len(self.first_bytes) < BANNER_LIMIT:
            self.first_bytes += data[:BANNER_LIMIT - len(self.first_bytes)]

    def _verdict(self, sock: Socket | BlockingConnection | BlockingTLS) -> int:
        """The run's exit code, once every --expect was checked against what it saw."""
        code = self._ending()
        if not self.expectations:
            return code
        from tcpcli.cli.expectations import (
            all_passed,
            banner_text,
            phase_facts,
            report_checks,
            tls_facts,
        )

        facts = {**phase_facts(sock.clock.phases), **tls_facts(sock.tls_report),
                 "total.ms": (time.perf_counter() - self.outcome.started) * 1000}
        if self._kernel_connected is not None:
            facts["rtt.ms"] = self._kernel_connected["rtt_ms"]
        if self.first_bytes:
            facts["banner"] = banner_text(bytes(self.first_bytes))
        if not all_passed(report_checks(self.env, self.expectations, facts)):
            return ExitCode.CHECK_FAILED
        return code

    def _ending(self) -> int:
        if self.outcome.how == "idle-timeout":
            if not self.common.quiet:
                self.env.note(f"no data for {self.idle_timeout:g} s: idle timeout")
            return ExitCode.TIMEOUT
        return ExitCode.OK

    async def _idle_watch(self, scope: CancelScope) -> None:
        import anyio

        assert self.idle_timeout is not None
        while True:
            remaining = self.last_activity + self.idle_timeout - time.monotonic()
            if remaining <= 0:
                self.outcome.how = "idle-timeout"
                if not self.outcome.first_closer:
                    self.outcome.first_closer = "us"
                scope.cancel()
                return
            await anyio.sleep(remaining)


class _Upstream:
    """connect's input side without an event loop: stdin, --send or --send-file to the
    socket, then FIN, by the rules of ``ConnectSession._upstream``."""

    def __init__(self, session: ConnectSession, conn: BlockingConnection | BlockingTLS) -> None:
        from tcpcli.cli.stdio import FdReader

        self.session, self.conn = session, conn
        self.reader: FdReader | None = None
        self.file: IO[bytes] | None = None
        self.whole_file: int | None = None  # a regular file the kernel sends (sendfile)
        self.outgoing = memoryview(b"")  # read, not yet taken by the socket
        self.payload = session.payload  # --send: read once, then the end of input
        self.previous_cr = False
        self.done = False
        if self.payload is not None:
            return  # --send: _read hands it out, nothing to open
        if session.send_file is not None:
            self.file = open(session.send_file, "rb")  # noqa: SIM115 - closed in release()
            if session._zero_copy:
                self.whole_file = self.file.fileno()
        else:
            stdin = session.env.stdin.fileno()
            if session._zero_copy and stat.S_ISREG(os.fstat(stdin).st_mode):
                self.whole_file = stdin
            else:
                self.reader = FdReader(stdin)

    @property
    def wants_socket(self) -> bool:
        """Waiting for the socket to take bytes (else for input, or for nothing)."""
        return bool(self.outgoing) or self.whole_file is not None

    def pump(self, *, readable: bool = False, writable: bool = False) -> None:
        """One step: send what is pending when the socket is ``writable``, else read more
        when the input is ``readable``; FIN at the end of input."""
        session, conn = self.session, self.conn
        if self.whole_file is not None:
            if writable:
                try:
                    sent = conn.send_file(self.whole_file, 16 * 1024 * 1024)
                except NotImplementedError:  # a file system without sendfile: read it
                    self._read_instead()
                    return
                if sent:
                    session.last_activity = time.monotonic()
                elif sent == 0:
                    self._finish()
            return
        if self.outgoing:
            if writable:
                self.outgoing = self.outgoing[conn.send(self.outgoing):]
            return
        if not readable:
            return
        data = self._read()
        if data is None:
            return
        if not data:
            self._finish()
            return
        session.last_activity = time.monotonic()
        if session.crlf:
            converted = to_crlf(data, self.previous_cr)
            self.previous_cr = data.endswith(b"\r")
            data = converted
        if session.transcript is not None:
            session.transcript.record(">", data)
        if session.events is not None and session.common.verbose:
            session.events.emit("data", session.address, direction="out", bytes=len(data))
        self.outgoing = memoryview(data)

    def _read(self) -> bytes | None:
        from tcpcli.cli.stdio import CHUNK

        if self.payload is not None:
            data, self.payload = self.payload, b""
            return data
        if self.file is not None:
            return self.file.read(CHUNK)  # a regular file never blocks
        assert self.reader is not None
        try:
            return os.read(self.reader.fd, CHUNK)
        except BlockingIOError:
            return None

    def _read_instead(self) -> None:
        from tcpcli.cli.stdio import FdReader

        if self.file is None:
            assert self.whole_file is not None
            self.reader = FdReader(self.whole_file)
        self.whole_file = None

    def _finish(self) -> None:
        self.release()
        self.session._at_end_of_input()
        if not self.session.wait_at_tls_eof:  # (else the server closes first)
            self.conn.shutdown_write()
        self.done = True

    def release(self) -> None:
        if self.reader is not None:
            self.reader.restore()
            self.reader = None
        if self.file is not None:
            self.file.close()
            self.file = None
        self.whole_file = None


def _join(address: tuple[str, int] | None) -> str | None:
    from tcpcli.core.address import join_host_port

    return None if address is None else join_host_port(*address)
