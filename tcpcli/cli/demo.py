"""``tcpcli demo``: what tcpcli does, in under a minute, with no network.

It starts loopback peers inside this process (a plain echo service, a TLS echo service and
an SMTP-style service with STARTTLS, all with a throwaway CA), then runs connect, probe,
starttls and bench against them. Loopback is blocked by the default policy, so the demo
first shows that refusal, then allows 127.0.0.1 for its own peers only.

The tour is the command's product, so it goes to stdout, a section at a time: Rich on a
terminal, plain text at most 80 columns wide when piped (``tcpcli demo | less``), no
colour with NO_COLOR; with ``--json`` one ``demo_section`` event per section.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.runner import run

if TYPE_CHECKING:
    import ssl

    from anyio.abc import ByteStream, SocketStream
    from rich.console import Console

    from tcpcli.core.policy import Policy
    from tcpcli.core.tlsoptions import TLSOptions

EXAMPLES = """
\b
Examples:
  tcpcli demo                      # about a second; needs no network
  tcpcli demo | less               # the same, as plain text (80 columns)
  tcpcli demo --json | jq -r .title
"""


@click.command("demo", epilog=EXAMPLES,
               short_help="A tour of every command on this machine: start here.")
@click.option("--json", "as_json", is_flag=True,
              help="One demo_section event per section (JSON Lines on stdout).")
@click.pass_obj
def demo_command(env: Environment | None, as_json: bool) -> None:
    """Run connect, probe, starttls, bench and ping against built-in loopback peers (works
    offline): an echo service, a TLS echo service and an SMTP service with STARTTLS."""
    env = env or Environment()
    env.start_session("demo", json=as_json)
    run(lambda: _demo(Tour(env)), env)


class Tour:
    """The demo's output: each section is drawn on a console of its own and written to
    stdout when it is done (or emitted as a ``demo_section`` event with ``--json``)."""

    #: Piped or as JSON, the tour is plain text this wide (it reads well in ``less``).
    PLAIN_WIDTH = 80

    def __init__(self, env: Environment) -> None:
        from rich.console import Console

        self.env = env
        self.buffer = io.StringIO()
        self.title = "tcpcli demo"
        self.console: Console
        if env.events is not None:
            self.console = Console(file=self.buffer, force_terminal=False, no_color=True,
                                   color_system=None, width=self.PLAIN_WIDTH,
                                   highlight=False, emoji=False)
        else:
            self.console = env.stdout_console(self.buffer)
            if not env.stdout_isatty:
                self.console.width = min(self.console.width, self.PLAIN_WIDTH)

    def section(self, title: str) -> None:
        """End the section before, start this one under a rule."""
        self.flush()
        self.title = title
        if self.env.events is None:
            self.console.rule(title)

    def flush(self) -> None:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        if not text:
            return
        if self.env.events is not None or not self.env.stdout_rich:
            # Rich pads table rows to the width; plain text needs no trailing blanks.
            text = "".join(line.rstrip() + "\n" for line in text.splitlines())
        if self.env.events is not None:
            self.env.emit("demo_section", title=self.title,
                          lines=text.rstrip("\n").splitlines())
        else:
            self.env.write(text)


async def _echo(stream: ByteStream) -> None:
    import anyio

    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def _tls_echo(stream: SocketStream, context: ssl.SSLContext) -> None:
    import anyio
    from anyio.streams.tls import TLSStream

    try:
        tls = await TLSStream.wrap(stream, server_side=True, ssl_context=context,
                                   standard_compatible=False)
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
        return
    await _echo(tls)


async def _smtp(stream: SocketStream, context: ssl.SSLContext) -> None:
    """Just enough ESMTP for a STARTTLS dialogue, offering AUTH PLAIN in clear (a finding
    starttls reports) and STARTTLS until the upgrade."""
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream
    from anyio.streams.tls import TLSStream

    async def converse(channel: ByteStream, secure: bool) -> bool:
        """Serve commands; True when the client asked for STARTTLS and got the go-ahead."""
        reader = BufferedByteReceiveStream(channel)
        while True:
            verb = (await reader.receive_until(b"\r\n", 1024)).split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                offers = [b"PIPELINING", b"SIZE 10240000", b"AUTH PLAIN LOGIN"]
                offers += [] if secure else [b"STARTTLS"]
                lines = [b"demo.tcpcli.invalid", *offers]
                await channel.send(b"".join(b"250-" + line + b"\r\n" for line in lines[:-1])
                                   + b"250 " + lines[-1] + b"\r\n")
            elif verb == b"STARTTLS" and not secure:
                await channel.send(b"220 2.0.0 Ready to start TLS\r\n")
                return True
            elif verb == b"QUIT":
                await channel.send(b"221 2.0.0 Bye\r\n")
                return False
            else:
                await channel.send(b"502 5.5.2 Error: command not recognized\r\n")

    try:
        async with stream:
            await stream.send(b"220 demo.tcpcli.invalid ESMTP tcpcli-demo\r\n")
            if await converse(stream, secure=False):
                tls = await TLSStream.wrap(stream, server_side=True, ssl_context=context)
                await converse(tls, secure=True)
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream,
            anyio.ClosedResourceError, anyio.IncompleteRead, anyio.DelimiterNotFound):
        pass


async def _demo(tour: Tour) -> int:
    import anyio

    from tcpcli.core.certgen import throwaway_certificate
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.errors import PolicyError
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.policy import Policy
    from tcpcli.core.socket import Socket, connect
    from tcpcli.core.tls import TLSOptions
    from tcpcli.render.report import render_tls, render_waterfall

    console = tour.console
    certificate = throwaway_certificate("127.0.0.1", "localhost")
    context = certificate.server_context()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ca_file = certificate.write_ca(tmp)
        plain = await anyio.create_tcp_listener(local_host="127.0.0.1")
        secure = await anyio.create_tcp_listener(local_host="127.0.0.1")
        mail = await anyio.create_tcp_listener(local_host="127.0.0.1")
        plain_port = plain.extra(anyio.abc.SocketAttribute.local_port)
        tls_port = secure.extra(anyio.abc.SocketAttribute.local_port)
        smtp_port = mail.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as peers:
            peers.start_soon(plain.serve, _echo)
            peers.start_soon(secure.serve, lambda s: _tls_echo(s, context))
            peers.start_soon(mail.serve, lambda s: _smtp(s, context))
            console.print(f"[bold]tcpcli demo[/] — loopback peers: echo on 127.0.0.1:{plain_port},"
                          f" TLS echo on 127.0.0.1:{tls_port}, SMTP with STARTTLS on "
                          f"127.0.0.1:{smtp_port} (throwaway CA)\n")

            tour.section("1. The Workers destination policy (the default)")
            async with Invocation():
                try:
                    await connect(f"127.0.0.1:{plain_port}").opened
                except PolicyError as exc:
                    console.print(f"refused, nothing sent: {exc}\n")

            lifted = Policy.parse("workers", allow=["127.0.0.1"])
            console.print("[dim]From here on the demo allows 127.0.0.1 (--allow 127.0.0.1) "
                          "for its own peers only.[/]\n")

            tour.section("2. tcpcli connect 127.0.0.1 — a plain echo round trip")
            async with Invocation(policy=lifted):
                origin = time.perf_counter_ns()
                async with connect(f"127.0.0.1:{plain_port}") as sock:
                    await sock.writable.send(b"hello from tcpcli\n")
                    reply = await sock.readable.receive()
                console.print(f"sent b'hello from tcpcli\\n', received {reply!r}")
                render_waterfall(console, sock.clock.phases, origin)
                console.print()

            tour.section("3. tcpcli connect --tls — the TLS report")
            async with Invocation(policy=lifted, options=ConnectOptions(
                    tls=TLSOptions(ca_file=ca_file))):
                origin = time.perf_counter_ns()
                async with connect(f"127.0.0.1:{tls_port}", secure_transport="on") as sock:
                    await sock.writable.send(b"secret")
                    await sock.readable.receive()
                render_waterfall(console, sock.clock.phases, origin)
                if sock.tls_report is not None:
                    render_tls(console, sock.tls_report)
                console.print()

            tour.section("4. The six-socket cap: seven connects, one waits for a slot")
            async with Invocation(policy=lifted) as invocation:
                sockets: list[Socket] = []

                async def hold(index: int) -> None:
                    sock = connect(f"127.0.0.1:{plain_port}")
                    sockets.append(sock)
                    await sock.writable.send(b"x")
                    await sock.readable.receive()
                    # Stay busy reading for a while: an idle socket would be canceled to
                    # unblock the queue (the limits page's deadlock rule).
                    with anyio.move_on_after(0.2):
                        await sock.readable.receive()
                    await sock.close()

                async with anyio.create_task_group() as tg:
                    for index in range(7):
                        tg.start_soon(hold, index)
                for sock in sockets:
                    waited = sock.clock.total_ms("slot-wait")
                    note = f"waited {waited:.0f} ms for a free slot" if waited else "no wait"
                    console.print(f"  socket {sockets.index(sock) + 1}: {note}")
                console.print(f"  peak simultaneous sockets: {invocation.slots.peak} "
                              "(lift with --max-sockets)")
                console.print()

            tls_options = TLSOptions(ca_file=ca_file)
            await _probe_section(tour, lifted, tls_options,
                                 [plain_port, tls_port, smtp_port])
            await _starttls_section(tour, lifted, tls_options, smtp_port)
            await _bench_section(tour, lifted, plain_port)
            await _ping_section(tour, lifted, tls_options, tls_port)
            tour.flush()
            peers.cancel_scope.cancel()
    return ExitCode.OK


async def _probe_section(tour: Tour, policy: Policy, tls: TLSOptions,
                         open_ports: list[int]) -> None:
    import socket

    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.scan import Scanner
    from tcpcli.engines.scan_results import ProbeResult, ScanOptions
    from tcpcli.engines.scan_targets import parse_target
    from tcpcli.render.probe import results_table

    # A bound socket that does not listen: its port refuses, and stays ours meanwhile.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        ports = [*open_ports, unused.getsockname()[1], 25]
        tour.section(f"5. tcpcli probe 127.0.0.1 -p {','.join(map(str, ports))} "
                     "--banner --tls-detect")
        rows: list[ProbeResult] = []
        invocation = Invocation(policy=policy, options=ConnectOptions(tls=tls))
        async with invocation:
            options = ScanOptions(timeout=1.0, banner=True, banner_wait=0.3, tls_detect=True)
            await Scanner(invocation, options, rows.append).run([parse_target("127.0.0.1")],
                                                                ports)
    console = tour.console
    console.print(results_table(rows))
    console.print("[dim]Port 25 stays blocked even with --allow 127.0.0.1: Workers refuse "
                  "SMTP's port everywhere. The worker column is what connect() in a Worker "
                  "would be allowed.[/]\n")


async def _starttls_section(tour: Tour, policy: Policy, tls: TLSOptions,
                            smtp_port: int) -> None:
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.socket import connect
    from tcpcli.core.starttls import run_starttls
    from tcpcli.protocols.registry import get_dialogue
    from tcpcli.render.report import dialogue_lines, render_waterfall

    console = tour.console
    tour.section(f"6. tcpcli starttls 127.0.0.1:{smtp_port} -P smtp")
    async with Invocation(policy=policy, options=ConnectOptions(tls=tls)):
        origin = time.perf_counter_ns()
        sock = connect(f"127.0.0.1:{smtp_port}", secure_transport="starttls")
        await sock.opened
        result = await run_starttls(sock, get_dialogue("smtp"))
        report = result.socket.tls_report
        await result.socket.close()
    for line in dialogue_lines(result.report, "chosen with -P"):
        console.print(line, markup=False)
    render_waterfall(console, [p for p in sock.clock.phases if p.name != "first-byte"],
                     origin)
    if report is not None:
        console.print(f"TLS {report.version} {report.cipher}, "
                      f"{'verified' if report.verification.verified else 'NOT verified'}")
    console.print("[dim]AUTH PLAIN before TLS is a finding: a client could send its "
                  "password in clear.[/]\n")


async def _bench_section(tour: Tour, policy: Policy, port: int) -> None:
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.bench import Bench, BenchConfig
    from tcpcli.render.bench import rich_report

    tour.section(f"7. tcpcli bench 127.0.0.1:{port} -n 300 (six at a time, the Workers "
                 "cap)")
    async with Invocation(policy=policy) as invocation:
        result = await Bench(BenchConfig(address=f"127.0.0.1:{port}", count=300),
                             invocation).run()
    for renderable in rich_report(result, None):
        tour.console.print(renderable)


async def _ping_section(tour: Tour, policy: Policy, tls: TLSOptions, port: int) -> None:
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.expect import check_all, parse
    from tcpcli.core.invocation import Invocation
    from tcpcli.engines.ping import Attempt, PingConfig, Pinger
    from tcpcli.render.ping import attempt_line, header_line, summary_lines

    console = tour.console
    checks = ["loss<=0%", "p99<500ms", "cert.days>=1"]
    tour.section("8. tcpcli ping --tls: handshakes over time, checked with --expect")
    console.print(f"$ tcpcli ping 127.0.0.1:{port} --tls -c 3 -i 0.1 "
                  + " ".join(f"--expect '{c}'" for c in checks), markup=False)
    config = PingConfig(address=f"127.0.0.1:{port}", count=3, interval=0.1,
                        secure_transport="on")

    def show(attempt: Attempt) -> None:
        console.print(attempt_line(attempt), markup=False)

    console.print(header_line(config), markup=False)
    async with Invocation(policy=policy, options=ConnectOptions(tls=tls)) as invocation:
        stats = await Pinger(config, invocation, on_attempt=show).run()
    for line in summary_lines(config, stats):
        console.print(line, markup=False)
    for verdict in check_all([parse(c, "ping") for c in checks], stats.facts()):
        state = "ok" if verdict.passed else "FAILED"
        console.print(f"check {verdict.expectation}: {state} ({verdict.found})", markup=False)
    console.print("[dim]Each round is a fresh TCP and TLS handshake, the name resolved and "
                  "judged again; --expect turns any run into a gate (exit 9).[/]\n")
