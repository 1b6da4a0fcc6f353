"""``tcpcli listen``: the server half (nc -l, ncat -l, openssl s_server).

Binds loopback unless told otherwise, and says where it listens. Modes: pipe one
connection to stdin/stdout byte-exactly (the default), or serve many with --echo,
--discard, --chargen or --banner.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.runner import run

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


@click.command("listen", epilog=EXAMPLES)
@click.argument("address")
@click.option("--echo", "mode", flag_value="echo", help="Send back what each peer sends.")
@click.option("--discard", "mode", flag_value="discard", help="Read and drop everything.")
@click.option("--chargen", "mode", flag_value="chargen", help="Send RFC 864 lines forever.")
@click.option("--banner", metavar="TEXT", help=r"Send TEXT (escapes like \r\n) then close.")
@click.option("--keep-open", is_flag=True, help="Serve connections until interrupted.")
@click.option("--max-conns", type=click.IntRange(min=1), metavar="N",
              help="Stop after N connections.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Close a connection idle for this long.")
@click.option("--tls", is_flag=True, help="Speak TLS (throwaway certificate unless --cert).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Certificate (PEM).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Key (PEM).")
@click.option("--json", "json_events", is_flag=True, help="JSON Lines events on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Print no diagnostics, only errors.")
@click.pass_obj
def listen_command(env: Environment | None, /, address: str, mode: str | None,
                   banner: str | None, keep_open: bool, max_conns: int | None,
                   idle_timeout: float | None, tls: bool, cert: str | None, key: str | None,
                   json_events: bool, quiet: bool) -> None:
    """Listen on ADDRESS (PORT, HOST:PORT or [V6]:PORT; loopback unless HOST is given)."""
    from tcpcli.cli.connect import unescape

    env = env or Environment()
    if banner is not None:
        if mode is not None:
            raise click.UsageError("--banner excludes --echo, --discard and --chargen")
        mode = "banner"
    if (cert or key) and not tls:
        raise click.UsageError("--cert/--key need --tls")
    if key and not cert:
        raise click.UsageError("--key needs --cert")
    if mode is None and (keep_open or max_conns):
        raise click.UsageError("piping stdin/stdout serves one connection; choose --echo, "
                               "--discard, --chargen or --banner to serve many")
    host, port = parse_bind(address)
    server = Listener(env, host, port, mode or "pipe",
                      unescape(banner) if banner is not None else b"",
                      1 if mode is None else (max_conns if max_conns else
                                              None if keep_open else 1),
                      idle_timeout, tls, cert, key, json_events, quiet)
    run(server.main, env)


class Listener:
    def __init__(self, env: Environment, host: str, port: int, mode: str, banner: bytes,
                 max_conns: int | None, idle_timeout: float | None, tls: bool,
                 cert: str | None, key: str | None, json_events: bool, quiet: bool) -> None:
        from tcpcli.render.events import EventWriter

        self.env, self.host, self.port, self.mode, self.banner = env, host, port, mode, banner
        self.max_conns, self.idle_timeout = max_conns, idle_timeout
        self.tls, self.cert, self.key, self.quiet = tls, cert, key, quiet
        self.events = EventWriter(env.stderr) if json_events else None
        self.served = 0

    def say(self, event: str, text: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(event, **fields)
        elif not self.quiet:
            self.env.note(text)

    def _context(self) -> Any:
        import ssl

        if self.cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, self.key)
            return context
        from tcpcli.core.certgen import throwaway_certificate

        names = ["localhost", "127.0.0.1", "::1"]
        if self.host not in names:
            names.append(self.host)
        made = throwaway_certificate(*names)
        self.say("certificate", f"throwaway certificate, SHA-256 fingerprint "
                 f"{made.fingerprint_sha256}", fingerprint_sha256=made.fingerprint_sha256)
        return made.server_context()

    async def main(self) -> int:
        import anyio
        from anyio.streams.tls import TLSStream

        from tcpcli.core.address import join_host_port

        context = self._context() if self.tls else None
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port,
                                                   reuse_port=False)
        sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
        where = join_host_port(sockname[0], sockname[1])
        scope = "loopback only" if sockname[0] in ("127.0.0.1", "::1") else "all interfaces" \
            if sockname[0] in ("0.0.0.0", "::") else "this address"
        self.say("listening", f"listening on {where} ({scope}), mode {self.mode}"
                 + (", TLS" if self.tls else ""), address=where, mode=self.mode, tls=self.tls)
        done = anyio.Event()
        counter = itertools.count(1)

        async def handle(stream: Any) -> None:
            number = next(counter)
            if self.max_conns is not None and number > self.max_conns:
                await stream.aclose()
                return
            peer = stream.extra(anyio.abc.SocketAttribute.remote_address)
            peer_text = f"{peer[0]}:{peer[1]}"
            started = time.perf_counter()
            counts = {"in": 0, "out": 0}
            self.say("accepted", f"connection {number} from {peer_text}", peer=peer_text,
                     connection=number)
            graceful = False
            try:
                if context is not None:
                    # standard_compatible: close_notify on our close, as TLS clients expect
                    # (tcpcli connect warns about a TLS close without it).
                    stream = await TLSStream.wrap(stream, server_side=True, ssl_context=context,
                                                  standard_compatible=True)
                await self._serve(stream, counts)
                graceful = True
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream,
                    anyio.ClosedResourceError) as exc:
                self.say("error", f"connection {number}: {exc or type(exc).__name__}",
                         peer=peer_text, message=str(exc))
            finally:
                with anyio.CancelScope(shield=True):
                    if graceful:
                        with anyio.move_on_after(CLOSE_GRACE_S), \
                                contextlib.suppress(OSError, anyio.BrokenResourceError):
                            await stream.aclose()
                    await anyio.aclose_forcefully(stream)
                seconds = time.perf_counter() - started
                self.say("closed", f"connection {number} from {peer_text} closed: received "
                         f"{counts['in']} bytes, sent {counts['out']} bytes in {seconds:.3f} s",
                         peer=peer_text, connection=number, bytes_received=counts["in"],
                         bytes_sent=counts["out"], duration_ms=round(seconds * 1000, 3))
                if self.max_conns is not None and number >= self.max_conns:
                    done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            await done.wait()
            tg.cancel_scope.cancel()
        return ExitCode.OK

    async def _read(self, stream: Any) -> bytes:
        import anyio

        if self.idle_timeout is None:
            return bytes(await stream.receive(256 * 1024))
        with anyio.fail_after(self.idle_timeout):
            return bytes(await stream.receive(256 * 1024))

    async def _serve(self, stream: Any, counts: dict[str, int]) -> None:
        import anyio

        try:
            if self.mode == "banner":
                await stream.send(self.banner)
                counts["out"] += len(self.banner)
            elif self.mode == "chargen":
                while True:
                    await stream.send(CHARGEN_BLOCK)
                    counts["out"] += len(CHARGEN_BLOCK)
            elif self.mode in ("echo", "discard"):
                while True:
                    data = await self._read(stream)
                    counts["in"] += len(data)
                    if self.mode == "echo":
                        await stream.send(data)
                        counts["out"] += len(data)
            else:
                await self._pipe(stream, counts)
        except (anyio.EndOfStream, TimeoutError):
            pass

    async def _pipe(self, stream: Any, counts: dict[str, int]) -> None:
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
