"""``tcpcli demo``: what tcpcli does, in under a minute, with no network.

It starts loopback peers inside this process (a plain echo service and a TLS echo service
with a throwaway CA), then runs the core against them. Loopback is blocked by the default
policy, so the demo first shows that refusal, then allows 127.0.0.1 for its own peers only.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import click

from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.runner import run


@click.command("demo")
@click.pass_obj
def demo_command(env: Environment | None) -> None:
    """Run tcpcli against built-in loopback peers (works offline)."""
    env = env or Environment()
    run(lambda: _demo(env), env)


async def _echo(stream: Any) -> None:
    import anyio

    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def _tls_echo(stream: Any, context: Any) -> None:
    import anyio
    from anyio.streams.tls import TLSStream

    try:
        tls = await TLSStream.wrap(stream, server_side=True, ssl_context=context,
                                   standard_compatible=False)
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
        return
    await _echo(tls)


async def _demo(env: Environment) -> int:
    import anyio

    from tcpcli.core.certgen import throwaway_certificate
    from tcpcli.core.connect import ConnectOptions
    from tcpcli.core.errors import PolicyError
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.policy import Policy
    from tcpcli.core.socket import Socket, connect
    from tcpcli.core.tls import TLSOptions
    from tcpcli.render.report import render_tls, render_waterfall

    console = env.console
    certificate = throwaway_certificate("127.0.0.1", "localhost")
    context = certificate.server_context()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = certificate.write_ca(tmp)
        plain = await anyio.create_tcp_listener(local_host="127.0.0.1")
        secure = await anyio.create_tcp_listener(local_host="127.0.0.1")
        plain_port = plain.extra(anyio.abc.SocketAttribute.local_port)
        tls_port = secure.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as peers:
            peers.start_soon(plain.serve, _echo)
            peers.start_soon(secure.serve, lambda s: _tls_echo(s, context))
            console.print(f"[bold]tcpcli demo[/] — loopback peers: echo on 127.0.0.1:{plain_port},"
                          f" TLS echo on 127.0.0.1:{tls_port} (throwaway CA)\n")

            console.rule("1. The Workers destination policy (the default)")
            async with Invocation():
                try:
                    await connect(f"127.0.0.1:{plain_port}").opened
                except PolicyError as exc:
                    console.print(f"refused, nothing sent: {exc}\n")

            lifted = Policy.parse("workers", allow=["127.0.0.1"])
            console.print("[dim]From here on the demo allows 127.0.0.1 (--allow 127.0.0.1) "
                          "for its own peers only.[/]\n")

            console.rule("2. tcpcli connect 127.0.0.1 — a plain echo round trip")
            async with Invocation(policy=lifted):
                origin = time.perf_counter_ns()
                async with connect(f"127.0.0.1:{plain_port}") as sock:
                    await sock.writable.send(b"hello from tcpcli\n")
                    reply = await sock.readable.receive()
                console.print(f"sent b'hello from tcpcli\\n', received {reply!r}")
                render_waterfall(console, sock.clock.phases, origin)
                console.print()

            console.rule("3. tcpcli connect --tls — the TLS report")
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

            console.rule("4. The six-socket cap: seven connects, one waits for a slot")
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
            peers.cancel_scope.cancel()
    return ExitCode.OK
