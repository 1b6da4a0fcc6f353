"""``tcpcli starttls``: run a protocol's STARTTLS dialogue, upgrade, and report.

The report (the dialogue, the waterfall, the TLS report, each check) is for people, on
stderr; with ``--json`` it is JSON Lines on stdout instead (``starttls_report``,
``tls_report``, ``check`` and the phase events), so ``starttls --json | jq`` reads it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tcpcli.cli.arguments import STARTTLS_PROTOCOLS
from tcpcli.cli.environment import Environment
from tcpcli.cli.exit_codes import ExitCode
from tcpcli.cli.expectations import expect_option
from tcpcli.cli.helpformat import SectionedCommand
from tcpcli.cli.options import (
    common_options,
    proxy_header_options,
    target_argument,
    via_option,
    with_proxy_header,
    with_via,
)
from tcpcli.cli.paramtypes import PORT, Text
from tcpcli.cli.runner import run

if TYPE_CHECKING:
    import ssl

    from tcpcli.cli.commonoptions import CommonOptions
    from tcpcli.core.dialoguedriver import PlainChannel, StartTlsResult
    from tcpcli.core.expect import Expectation
    from tcpcli.core.invocation import Invocation
    from tcpcli.core.socket import Socket
    from tcpcli.core.timing import Phase, PhaseClock
    from tcpcli.core.tls import TLSReport
    from tcpcli.protocols.base import Dialogue

    S = TypeVar("S")

PROTOCOLS = ("auto", *STARTTLS_PROTOCOLS)
#: How long --protocol auto listens for a greeting before deciding by port alone.
GREETING_WAIT = 1.5

EXAMPLES = """
\b
Examples:
  tcpcli starttls mail.example.com:587
  tcpcli starttls db.internal:5432 --protocol postgres --expect verified
  tcpcli starttls imap.example.com:143 --expect 'tls>=1.2' --expect 'days-left>=21'
  tcpcli starttls mail.example.com:25 --resume     # full vs resumed TLS handshake
"""

@click.command("starttls", cls=SectionedCommand, epilog=EXAMPLES,
               short_help="Upgrade a mail, XMPP, LDAP or database session to TLS and report.")
@target_argument()
@click.argument("port", required=False, type=PORT)
@click.option("--protocol", "-P", type=click.Choice(PROTOCOLS), default="auto",
              show_default=True, metavar="PROTO",
              help="The dialogue to run: " + ", ".join(PROTOCOLS)
              + ". auto picks by port and confirms by the greeting.")
@click.option("--ehlo-name", default="tcpcli.invalid", show_default=True, metavar="NAME",
              type=Text("a host name", 253),
              help="smtp/lmtp: the name sent with EHLO/LHLO.")
@click.option("--xmpp-to", metavar="DOMAIN", type=Text("a domain", 253),
              help="xmpp: the stream's to= (default: host).")
@expect_option("starttls", what="A check on the upgrade and its TLS report")
@click.option("--resume", is_flag=True,
              help="Then connect again, run the dialogue and offer the TLS session (TLS 1.3 "
                   "tickets too): shows full vs resumed handshake time and whether the "
                   "server resumed.")
@proxy_header_options
@via_option
@common_options
@click.pass_obj
def starttls_command(env: Environment | None, /, target: str, port: int | None,
                     **kwargs: Any) -> None:
    """Run the STARTTLS dialogue with TARGET, upgrade to TLS, and show the TLS report.

    A refused or missing STARTTLS, or bytes injected after the server's go-ahead, end
    the run with the protocol-error exit code (8): tcpcli never continues in plaintext.
    """
    from tcpcli.cli.arguments import target_address

    env = env or Environment()
    protocol, ehlo, xmpp_to = kwargs.pop("protocol"), kwargs.pop("ehlo_name"), \
        kwargs.pop("xmpp_to")
    checks = list(kwargs.pop("expectations"))
    resume = kwargs.pop("resume")
    from tcpcli.cli.commonoptions import CommonOptions

    extras = {name: kwargs.pop(name) for name in ("send_proxy", "proxy_source", "via")}
    common = CommonOptions.from_kwargs(kwargs)
    address = target_address(target, port)
    invocation = common.invocation()
    with_proxy_header(invocation, extras)
    with_via(invocation, extras)
    session = StartTlsSession(env, common, address, protocol, ehlo, xmpp_to, checks,
                              resume=resume)
    invocation.observer = session.observe
    run(lambda: session.main(invocation), env, traceback=common.traceback,
        without_loop=lambda: session.main_now(invocation))


class StartTlsSession:
    def __init__(self, env: Environment, common: CommonOptions, address: str, protocol: str,
                 ehlo: str, xmpp_to: str | None, checks: list[Expectation], *,
                 resume: bool = False) -> None:
        self.env, self.common, self.address = env, common, address
        self.protocol, self.ehlo, self.xmpp_to, self.checks = protocol, ehlo, xmpp_to, checks
        self.resume = resume
        self.origin_ns = time.perf_counter_ns()
        env.start_session("starttls", json=common.json, target=address, quiet=common.quiet,
                          origin_ns=self.origin_ns)
        from tcpcli.core.tlssession import load_report_builders

        load_report_builders()  # its report is the product: built after the handshake

    def observe(self, stage: str, phase: Phase) -> None:
        if stage == "end" and self.env.events is not None:
            self.env.events.phase(phase, self.address)

    def _dialogue(self, name: str, host: str) -> Dialogue:
        from tcpcli.protocols.registry import get_dialogue

        if name in ("smtp", "lmtp"):
            return get_dialogue(name, ehlo_name=self.ehlo)
        if name in ("xmpp", "xmpp-server"):
            return get_dialogue(name, to=self.xmpp_to or host)
        return get_dialogue(name)

    async def main(self, invocation: Invocation) -> int:
        from tcpcli.core.socket import connect
        from tcpcli.core.starttls import SocketChannel

        async with invocation:
            sock = connect(self.address, secure_transport="starttls")
            await sock.opened
            if sock.judged_by_name:
                self.env.note(sock.judged_by_name)
            host = sock.address.hostname
            name, note, result = await self._upgrade(SocketChannel(sock), host,
                                                     sock.address.port)
            tls_report = result.socket.tls_report
            failed_after_tls = result.after_tls_error
            # Taken before close: a TLS 1.3 ticket arrives after the handshake.
            tls_session = await result.socket.resumable_tls_session() \
                if self.resume and failed_after_tls is None else None
            await result.socket.close()
            assert tls_report is not None
            code = self._show(note, result, tls_report, sock.clock)
            if failed_after_tls is not None:
                # The upgrade and its report stand; what failed afterwards is the error.
                raise failed_after_tls
            if self.resume:
                await self._resume(name, host, tls_session, tls_report, sock)
        return code

    def main_now(self, invocation: Invocation) -> int | None:
        """:meth:`main` without an event loop (``core.blocking``, ``core.blockingstarttls``):
        the same dialogue, report and errors over a connection whose addresses are known
        without a DNS query. None, with nothing done, when the event-loop core is needed:
        a DNS query, a proxy or tunnel (see ``open_now``), or --resume, whose second
        connection offers the first one's TLS session through the Socket."""
        if self.resume:
            return None
        from tcpcli.core.address import parse_address
        from tcpcli.core.blocking import open_now
        from tcpcli.core.blockingstarttls import BlockingChannel
        from tcpcli.core.timing import PhaseClock
        from tcpcli.core.waits import run_without_loop

        address = parse_address(self.address)
        clock = PhaseClock(invocation.observer)
        conn = open_now(invocation, address.hostname, address.port,
                        target=address.address_str, options=invocation.options, clock=clock)
        if conn is None:
            return None
        channel = BlockingChannel(conn, hostname=address.hostname, options=invocation.options)
        try:
            _, note, result = run_without_loop(
                self._upgrade(channel, address.hostname, address.port))
            tls_report = result.socket.tls_report
            result.socket.close()
        except BaseException:
            channel.abort()  # as the invocation's end aborts the loop's sockets
            raise
        code = self._show(note, result, tls_report, clock)
        if result.after_tls_error is not None:
            raise result.after_tls_error  # (as main: the report stands)
        return code

    async def _upgrade(self, channel: PlainChannel[S], host: str,
                       port: int) -> tuple[str, str, StartTlsResult[S]]:
        """The dialogue named or detected, run over ``channel`` and upgraded (the same
        coroutine on both paths): its name, how it was chosen, and the result."""
        from tcpcli.core.dialoguedriver import drive_starttls, first_words
        from tcpcli.core.errors import LocalProtocolError
        from tcpcli.protocols.registry import auto_detect

        first = b""
        name = self.protocol
        note = f"--protocol {name}"
        if name == "auto":
            first = await first_words(channel, GREETING_WAIT)
            detection = auto_detect(port, first)
            if detection.protocol is None:
                raise LocalProtocolError(
                    f"cannot tell which protocol {self.address} speaks "
                    f"({detection.note}); name it with --protocol")
            name, note = detection.protocol, f"detected {detection.protocol} by " \
                f"{detection.note}"
        dialogue = self._dialogue(name, host)
        if first:
            dialogue.receive_data(first)
        result = await drive_starttls(channel, dialogue,
                                      reply_timeout=self.common.reply_timeout)
        return name, note, result

    async def _resume(self, name: str, host: str, tls_session: ssl.SSLSession | None,
                      first_report: TLSReport, first_sock: Socket) -> None:
        """A second connection, same dialogue, offering the first one's TLS session.

        The same options give the same (cached) SSLContext, which resumption needs. A
        server that declines is reported, not an error: the exit code stays as it was.
        """
        from tcpcli.core.socket import connect
        from tcpcli.core.starttls import run_starttls
        from tcpcli.render.report import (
            render_waterfall,
            resumption_lines,
            session_line,
            waterfall_lines,
        )

        lifetime = tls_session.ticket_lifetime_hint \
            if tls_session is not None and tls_session.has_ticket else None
        self.env.emit("tls_resume_offer", session=tls_session is not None,
                      ticket=lifetime is not None, ticket_lifetime_s=lifetime)
        self.env.say(session_line(tls_session, first_report.version))
        self.env.say("second connection, offering the session:")
        sock = connect(self.address, secure_transport="starttls", tls_session=tls_session)
        await sock.opened
        result = await run_starttls(sock, self._dialogue(name, host),
                                    reply_timeout=self.common.reply_timeout)
        second = result.socket.tls_report
        await result.socket.close()
        assert second is not None
        full_ms, second_ms = _handshake_ms(first_sock), _handshake_ms(sock)
        self.env.emit("tls_resume", resumed=second.session_reused,
                      offered=second.session_offered, version=second.version,
                      full_handshake_ms=round(full_ms, 3),
                      second_handshake_ms=round(second_ms, 3))
        if self.env.human_report:
            phases = [p for p in sock.clock.phases if p.name != "first-byte"]
            started = min(p.start_ns for p in phases)  # this connection's own time line
            if self.env.rich:
                render_waterfall(self.env.console, phases, started)
            else:
                for line in waterfall_lines(phases, started):
                    self.env.say(line)
            for line in resumption_lines(full_ms, second_ms, second):
                self.env.say(line)

    def _show(self, note: str, result: StartTlsResult[Any], tls_report: TLSReport,
              clock: PhaseClock) -> int:
        """The report, and the exit code its checks give. ``clock`` is the connection's,
        one across the upgrade."""
        from tcpcli.render.report import (
            dialogue_lines,
            render_tls,
            render_waterfall,
            tls_lines,
            waterfall_lines,
        )

        report = result.report
        env = self.env
        env.emit("starttls_report", protocol=report.protocol, how=note,
                 greeting=report.greeting, starttls_offered=report.starttls_offered,
                 capabilities_before=report.capabilities_before,
                 capabilities_after=report.capabilities_after,
                 plaintext_login_offered=report.plaintext_login_offered,
                 upgrade_reply=report.upgrade_reply, details=dict(report.details),
                 steps=result.steps,
                 after_tls_error=None if result.after_tls_error is None
                 else str(result.after_tls_error))
        env.emit("tls_report", **tls_report.to_dict())
        if env.human_report:
            for line in dialogue_lines(report, note):
                env.say(line)
            phases = [p for p in clock.phases if p.name != "first-byte"]
            if self.env.rich:
                render_waterfall(self.env.console, phases, self.origin_ns)
                render_tls(self.env.console, tls_report)
            else:
                for line in waterfall_lines(phases, self.origin_ns) + tls_lines(tls_report):
                    env.say(line)
        from tcpcli.cli.expectations import all_passed, phase_facts, report_checks, tls_facts

        facts = {**phase_facts(clock.phases), **tls_facts(tls_report)}
        if report.starttls_offered is not None:
            facts["starttls"] = report.starttls_offered
        if not all_passed(report_checks(env, self.checks, facts)):
            return ExitCode.CHECK_FAILED
        return ExitCode.OK


def _handshake_ms(sock: Socket) -> float:
    """The TLS handshake time of a (STARTTLS-upgraded) socket's last handshake."""
    phase = sock.clock.find("tls")[-1]
    return float(phase.duration_ms or 0.0)
