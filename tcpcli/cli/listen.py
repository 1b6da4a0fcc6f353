"""``tcpcli listen``: the server half (nc -l, ncat -l, openssl s_server).

Binds loopback unless told otherwise, and says where it listens. Modes: pipe one
connection to stdin/stdout byte-exactly (the default), or serve many with --echo,
--discard, --chargen or --banner.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.helpformat import SectionedCommand
from tcpcli.cli.paramtypes import DURATION, Count
from tcpcli.cli.runner import run

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator

    from anyio import CancelScope
    from anyio.abc import ByteStream, SocketListener, SocketStream
    from anyio.streams.stapled import MultiListener

EXAMPLES = """
\b
Examples:
  tcpcli listen 9000 > received.bin               # one connection, to stdout
  tcpcli listen 9000 --echo --keep-open --json    # an echo service, logged as JSON
  tcpcli listen 0.0.0.0:8443 --tls --cert c.pem --key k.pem --discard --keep-open
  tcpcli listen 9000 --tls --banner 'hello'       # throwaway certificate, pin printed
"""

#: RFC 864 character generator: 72-character lines rotating through printable ASCII.
_PRINTABLE = bytes(range(32, 127))
#: How long a finished connection may take to say goodbye (TLS close_notify) before we cut it.
CLOSE_GRACE_S = 1.0
#: After a failed accept (out of descriptors): a pause, so the loop does not spin.
ACCEPT_RETRY_S = 0.1

CHARGEN_BLOCK = b"".join(
    (_PRINTABLE * 2)[i % 95:i % 95 + 72] + b"\r\n" for i in range(95)
)


def parse_bind(text: str) -> tuple[str, int]:
    """``PORT`` (on loopback), ``HOST:PORT`` or ``[V6]:PORT``; port 0 picks a free one."""
    host = "127.0.0.1"
    port_text = text
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise click.BadParameter(f"{text!r}: use [V6]:PORT", param_hint="ADDRESS")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isascii() or not port_text.isdigit() \
            or int(port_text) > 65535:
        raise click.BadParameter(f"{text!r}: use PORT, HOST:PORT or [V6]:PORT "
                                 "(port 0-65535)", param_hint="ADDRESS")
    return host, int(port_text)


@click.command("listen", cls=SectionedCommand, epilog=EXAMPLES,
               short_help="Serve echo, discard, chargen or a banner (TLS too) for tests.")
@click.argument("address")
@click.option("--echo", "mode", flag_value="echo", help="Send back what each peer sends.")
@click.option("--discard", "mode", flag_value="discard", help="Read and drop everything.")
@click.option("--chargen", "mode", flag_value="chargen", help="Send RFC 864 lines forever.")
@click.option("--banner", metavar="TEXT", help=r"Send TEXT (escapes like \r\n) then close.")
@click.option("--keep-open", is_flag=True, help="Serve connections until interrupted.")
@click.option("--max-conns", type=Count(1), metavar="N",
              help="Stop after N connections.")
@click.option("--idle-timeout", type=DURATION, metavar="SECONDS",
              help="Close a connection idle for this long.")
@click.option("--tls", is_flag=True, help="Speak TLS (throwaway certificate unless --cert).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Certificate (PEM).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Key (PEM).")
@click.option("--ca-out", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write the throwaway certificate's CA here, for connect --ca-file.")
@click.option("--accept-proxy", is_flag=True,
              help="Read a PROXY protocol header (v1 or v2) first on each connection, as "
                   "a server behind haproxy's send-proxy does, and report the client it "
                   "names; a connection without a valid one is refused.")
@click.option("--json", "json_events", is_flag=True, help="JSON Lines events on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Print no diagnostics, only errors.")
@click.pass_obj
def listen_command(env: Environment | None, /, address: str, mode: str | None,
                   banner: str | None, keep_open: bool, max_conns: int | None,
                   idle_timeout: float | None, tls: bool, cert: str | None, key: str | None,
                   ca_out: str | None, accept_proxy: bool, json_events: bool,
                   quiet: bool) -> None:
    """Listen on ADDRESS (PORT, HOST:PORT or [V6]:PORT; loopback unless HOST is given)."""
    from tcpcli.cli.arguments import unescape

    env = env or Environment()
    if banner is not None:
        if mode is not None:
            raise click.UsageError("--banner excludes --echo, --discard and --chargen")
        mode = "banner"
    if (cert or key) and not tls:
        raise click.UsageError("--cert/--key need --tls")
    if key and not cert:
        raise click.UsageError("--key needs --cert")
    if ca_out and (cert or not tls):
        raise click.UsageError("--ca-out writes the throwaway certificate's CA: it needs "
                               "--tls and excludes --cert")
    if mode is None and (keep_open or max_conns):
        raise click.UsageError("piping stdin/stdout serves one connection; choose --echo, "
                               "--discard, --chargen or --banner to serve many")
    host, port = parse_bind(address)
    settings = ListenSettings(
        host, port, mode or "pipe", unescape(banner) if banner is not None else b"",
        max_conns=1 if mode is None else (max_conns if max_conns else
                                          None if keep_open else 1),
        idle_timeout=idle_timeout, tls=tls, cert=cert, key=key, ca_out=ca_out,
        accept_proxy=accept_proxy, json_events=json_events, quiet=quiet)
    run(Listener(env, settings).main, env)


@dataclass(frozen=True)
class ListenSettings:
    """What ``tcpcli listen`` was asked to do."""

    host: str
    port: int
    mode: str  # "pipe" | "echo" | "discard" | "chargen" | "banner"
    banner: bytes = b""
    max_conns: int | None = 1  # None: until interrupted (--keep-open)
    idle_timeout: float | None = None
    tls: bool = False
    cert: str | None = None
    key: str | None = None
    ca_out: str | None = None  # where to write the throwaway CA
    accept_proxy: bool = False  # a PROXY protocol header first on each connection
    json_events: bool = False
    quiet: bool = False


def describe_failure(exc: BaseException) -> str:
    """What happened to one connection, in words: a reset, a failed handshake, a scan."""
    import ssl

    import anyio

    from tcpcli.core.proxyheader import ProxyHeaderError

    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
    if isinstance(cause, ProxyHeaderError):
        return f"refused: {cause}"
    if isinstance(cause, ConnectionResetError):
        return "reset by the peer"
    if isinstance(cause, BrokenPipeError):
        return "the peer went away (broken pipe)"
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {cause.reason or cause}"
    if isinstance(exc, anyio.EndOfStream):
        return "closed by the peer before the TLS handshake finished"
    if cause is None:
        return "the connection broke"
    return str(cause) or type(cause).__name__


class Listener:
    """The server. Whatever one connection does (reset, half-close, a port scan's bare
    connect, a botched TLS handshake) ends that connection only: the listener goes on."""

    def __init__(self, env: Environment, settings: ListenSettings) -> None:
        self.env, self.settings = env, settings
        self.events = env.start_session("listen", json=settings.json_events)

    def say(self, event: str, text: str, **fields: object) -> None:
        if self.events is not None:
            self.events.emit(event, None, **fields)
        elif not self.settings.quiet:
            self.env.note(text)

    def _context(self) -> ssl.SSLContext:
        """The server context, announced with the pin a client passes to ``--pin``."""
        import ssl

        from tcpcli.core.certgen import spki_pin, throwaway_certificate

        settings = self.settings
        if settings.cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(settings.cert, settings.key)
            with open(settings.cert, "rb") as cert:
                pin = spki_pin(cert.read())
            self.say("certificate", f"certificate from {settings.cert}; pin {pin}",
                     pin=pin, throwaway=False)
            return context
        names = ["localhost", "127.0.0.1", "::1"]
        if settings.host not in names:
            names.append(settings.host)
        made = throwaway_certificate(*names)
        if settings.ca_out:
            with open(settings.ca_out, "wb") as ca_out:
                ca_out.write(made.ca_pem)
            how = f"trust its CA with --ca-file {settings.ca_out}, or its key with --pin"
        else:
            how = f"trust its key with --pin {made.pin}, or write its CA with --ca-out FILE"
        self.say("certificate", f"throwaway certificate for {', '.join(names)}; "
                 f"pin {made.pin} ({how})", pin=made.pin, throwaway=True, names=names,
                 fingerprint_sha256=made.fingerprint_sha256, ca_file=settings.ca_out)
        return made.server_context()

    async def main(self) -> int:
        import anyio

        from tcpcli.cli.stdio import InterruptLatch

        context = self._context() if self.settings.tls else None
        try:
            listener = await anyio.create_tcp_listener(
                local_host=self.settings.host, local_port=self.settings.port, reuse_port=False)
        except OSError as exc:
            return self._bind_failed(exc)
        with InterruptLatch() as latch:
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(self._serve_all, listener, context, tg.cancel_scope)
                await latch.wait()
                tg.cancel_scope.cancel()
        return ExitCode.INTERRUPTED if latch.presses else ExitCode.OK

    def _bind_failed(self, exc: OSError) -> int:
        """Not being able to listen is one line, and in use is its own exit code."""
        from tcpcli.core.address import join_host_port

        where = join_host_port(self.settings.host, self.settings.port)
        if exc.errno == errno.EADDRINUSE:
            message = (f"cannot listen on {where}: the address is already in use "
                       "(choose another port, or port 0 for a free one)")
            code = ExitCode.ADDRESS_IN_USE
        else:
            reason = exc.strerror or str(exc)
            message = f"cannot listen on {where}: {reason}"
            code = ExitCode.ERROR
        if self.events is not None:
            self.events.emit("error", kind="address-in-use" if code != ExitCode.ERROR
                             else "listen", message=message, exit_code=int(code))
        else:
            self.env.note(message)
        return code

    async def _serve_all(self, listener: MultiListener[SocketStream],
                         context: ssl.SSLContext | None, scope: CancelScope) -> None:
        import anyio

        from tcpcli.core.address import join_host_port

        sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
        where = join_host_port(sockname[0], sockname[1])
        reach = "loopback only" if sockname[0] in ("127.0.0.1", "::1") else "all interfaces" \
            if sockname[0] in ("0.0.0.0", "::") else "this address"
        self.say("listening", f"listening on {where} ({reach}), mode {self.settings.mode}"
                 + (", TLS" if self.settings.tls else ""), address=where,
                 mode=self.settings.mode, tls=self.settings.tls)
        numbers = itertools.count(1)
        async with anyio.create_task_group() as tg:
            for one in listener.listeners:
                assert isinstance(one, anyio.abc.SocketListener)  # TCP: one per family
                tg.start_soon(self._accept_loop, one, context, numbers, scope)

    async def _accept_loop(self, listener: SocketListener,
                           context: ssl.SSLContext | None, numbers: Iterator[int],
                           done: CancelScope) -> None:
        import anyio

        async with anyio.create_task_group() as tg:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    # Out of descriptors (EMFILE), or a connection gone before we took it:
                    # the listening socket itself is fine, so wait a moment and go on.
                    self.say("error", f"accept failed: {exc.strerror or exc}",
                             message=str(exc))
                    await anyio.sleep(ACCEPT_RETRY_S)
                    continue
                tg.start_soon(self._handle, stream, context, next(numbers), done)

    async def _handle(self, stream: SocketStream, context: ssl.SSLContext | None,
                      number: int, done: CancelScope) -> None:
        import anyio
        from anyio.streams.tls import TLSStream

        limit = self.settings.max_conns
        if limit is not None and number > limit:
            await anyio.aclose_forcefully(stream)
            return
        peer_text = _peer(stream)
        started = time.perf_counter()
        counts = {"in": 0, "out": 0}
        self.say("accepted", f"connection {number} from {peer_text}", peer=peer_text,
                 connection=number)
        served: ByteStream = stream
        graceful = False
        try:
            if self.settings.accept_proxy:
                served, peer_text = await self._accept_proxy_header(stream, number, peer_text)
            if context is not None:
                # standard_compatible: close_notify on our close, as TLS clients expect
                # (tcpcli connect warns about a TLS close without it).
                served = await TLSStream.wrap(served, server_side=True, ssl_context=context,
                                              standard_compatible=True)
            await self._serve(served, counts)
            graceful = True
        except Exception as exc:  # one connection's failure never ends the server
            reason = describe_failure(exc)
            self.say("error", f"connection {number} from {peer_text}: {reason}",
                     peer=peer_text, connection=number, message=reason)
        finally:
            with anyio.CancelScope(shield=True):
                if graceful:
                    with anyio.move_on_after(CLOSE_GRACE_S), \
                            contextlib.suppress(OSError, anyio.BrokenResourceError):
                        await served.aclose()
                await anyio.aclose_forcefully(served)
            seconds = time.perf_counter() - started
            self.say("closed", f"connection {number} from {peer_text} closed: received "
                     f"{counts['in']} bytes, sent {counts['out']} bytes in {seconds:.3f} s",
                     peer=peer_text, connection=number, bytes_received=counts["in"],
                     bytes_sent=counts["out"], duration_ms=round(seconds * 1000, 3))
            if limit is not None and number >= limit:
                done.cancel()

    async def _accept_proxy_header(self, stream: SocketStream, number: int,
                                   peer_text: str) -> tuple[ByteStream, str]:
        """Read the PROXY header and nothing after it (a server-speaks-first service must
        not eat its client's first bytes), report it, and return the stream to serve and
        the client's address as the header names it."""
        import anyio
        from anyio.streams.buffered import BufferedByteReceiveStream
        from anyio.streams.stapled import StapledByteStream

        from tcpcli.core.address import join_host_port
        from tcpcli.core.proxyheader import ProxyHeaderError, decode, still_needed
        from tcpcli.core.timing import REPLY_TIMEOUT

        wait = self.settings.idle_timeout or REPLY_TIMEOUT
        buffered = BufferedByteReceiveStream(stream)
        data = b""
        try:
            with anyio.fail_after(wait):
                while (needed := still_needed(data)) > 0:
                    # At most what is needed (so never past the header), and each piece
                    # checked as it comes: a client that is not a proxy is told at once.
                    data += await buffered.receive(needed)
        except TimeoutError:
            raise ProxyHeaderError(f"no complete PROXY header within {wait:g} s "
                                   f"(got {len(data)} bytes)") from None
        except anyio.EndOfStream:
            raise ProxyHeaderError(f"closed after {len(data)} bytes, before its PROXY header "
                                   "was complete") from None
        header = decode(data)
        client = join_host_port(*header.source) if header.source is not None else None
        self.say("proxy_header", f"connection {number} from {peer_text}: {header.describe()}",
                 peer=peer_text, connection=number, version=header.version,
                 command=header.command, client=client,
                 destination=join_host_port(*header.destination)
                 if header.destination is not None else None, tlvs=header.tlvs)
        served = StapledByteStream(stream, buffered)  # what came after the header, first
        return served, f"{client} via {peer_text}" if client is not None else peer_text

    async def _read(self, stream: ByteStream) -> bytes:
        import anyio

        if self.settings.idle_timeout is None:
            return bytes(await stream.receive(256 * 1024))
        with anyio.fail_after(self.settings.idle_timeout):
            return bytes(await stream.receive(256 * 1024))

    async def _serve(self, stream: ByteStream, counts: dict[str, int]) -> None:
        import anyio

        mode = self.settings.mode
        try:
            if mode == "banner":
                await stream.send(self.settings.banner)
                counts["out"] += len(self.settings.banner)
            elif mode == "chargen":
                while True:
                    await stream.send(CHARGEN_BLOCK)
                    counts["out"] += len(CHARGEN_BLOCK)
            elif mode in ("echo", "discard"):
                # A half-close (EOF) ends the loop after everything before it was echoed.
                while True:
                    data = await self._read(stream)
                    counts["in"] += len(data)
                    if mode == "echo":
                        await stream.send(data)
                        counts["out"] += len(data)
            else:
                await self._pipe(stream, counts)
        except (anyio.EndOfStream, TimeoutError):
            pass

    async def _pipe(self, stream: ByteStream, counts: dict[str, int]) -> None:
        """One connection <-> stdin/stdout, byte-exact; stdin EOF half-closes."""
        import anyio

        from tcpcli.cli.stdio import CHUNK, FdReader, FdWriter

        reader = FdReader(self.env.stdin.fileno())
        writer = FdWriter(self.env.stdout.fileno())

        async def upstream() -> None:
            while data := await reader.read(CHUNK):
                await stream.send(data)
                counts["out"] += len(data)
            # anyio's server-side TLS stream has no half-close: keep reading regardless.
            with contextlib.suppress(NotImplementedError):
                await stream.send_eof()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(upstream)
                try:
                    while True:
                        data = await self._read(stream)
                        counts["in"] += len(data)
                        await writer.write(data)
                except (anyio.EndOfStream, TimeoutError):
                    pass
                tg.cancel_scope.cancel()
        finally:
            reader.restore()
            writer.restore()


def _peer(stream: SocketStream) -> str:
    """The peer's address; a peer that reset before we looked (a port scan) has none."""
    import anyio

    from tcpcli.core.address import join_host_port

    try:
        address = stream.extra(anyio.abc.SocketAttribute.remote_address)
    except (OSError, anyio.TypedAttributeLookupError):
        return "(gone)"
    return address if isinstance(address, str) else join_host_port(address[0], address[1])
