"""TLS detection of an open port (``probe --tls-detect``): implicit TLS, or STARTTLS in the
protocol the port speaks, each with version, cipher, certificate subject, days left and
the verification verdict.

Which one is tried follows what the identification found: a port that speaks TLS from the
first byte reuses that handshake; a service whose protocol has a STARTTLS dialogue
(:data:`tcpcli.protocols.registry.DIALOGUES`: SMTP, LMTP, IMAP, POP3, FTP, NNTP, sieve,
LDAP, XMPP, IRC, MySQL, PostgreSQL, telnet) is upgraded on a fresh connection, on any port;
any other port gets an implicit handshake (which says what a plaintext server answered
instead), and an unidentified one that answers it in plaintext gets STARTTLS in the
protocol its greeting (or else its port) names.

The handshake is unverified (``insecure``), so an untrusted or expired certificate is
still reported; the verdict says what verification would have concluded.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from tcpcli.core.errors import PlaintextPeerError
from tcpcli.engines.scan_identify import STREAM_ERRORS, Connect, close, unverified
from tcpcli.engines.scan_limits import SocketRoom

if TYPE_CHECKING:
    from tcpcli.core.destination import IPAddress
    from tcpcli.core.tlsoptions import TLSOptions
    from tcpcli.core.tlsreport import TLSReport
    from tcpcli.protocols.banner import ServiceGuess
    from tcpcli.protocols.base import Dialogue

#: A dialogue reads replies, never more than this at once (nothing past the go-ahead).
DIALOGUE_READ = 4096
NO_ANSWER = "no TLS answer in time"


class TlsDetector:
    """Finds TLS on one open port; :meth:`run` returns the row's ``tls`` facts."""

    def __init__(self, *, connect: Connect, room: SocketRoom, address: IPAddress, port: int,
                 name: str | None, wait: float, timeout: float,
                 tls: TLSOptions | None = None) -> None:
        self._connect = connect
        self._room = room
        self.address = address
        self.port = port
        self.name = name  # the TLS server name (None for a literal address)
        self.wait = wait
        self.timeout = timeout
        self.tls = unverified(tls)

    async def run(self, service: ServiceGuess | None,
                  implicit: TLSReport | None) -> dict[str, Any]:
        from tcpcli.protocols.registry import DIALOGUES, auto_detect, detect_by_port

        if implicit is not None:
            return tls_facts(implicit, "implicit")
        if service is not None and service.name in DIALOGUES:
            return await self._starttls(service.name, service)
        plaintext = service is not None and service.fact("tls") != "implicit"
        # A service that answered in plaintext gets one reply's wait: a silent one (Redis
        # reads a ClientHello as half a command) would otherwise hold the row for long.
        facts, greeting = await self._implicit(self.wait if plaintext else None)
        if plaintext and facts.get("error") == NO_ANSWER:
            assert service is not None
            return {"detected": False, "error": f"not TLS: {service.name} answered in "
                                                "plaintext, and its protocol has no STARTTLS"}
        if facts.get("detected") or service is not None:
            return facts
        protocol = (auto_detect(self.port, greeting).protocol if greeting
                    else detect_by_port(self.port))
        if protocol is None:
            return facts
        return await self._starttls(protocol, None)

    async def _implicit(self, within: float | None = None) -> tuple[dict[str, Any], bytes]:
        """An unverified handshake on a fresh connection (within ``within`` seconds, else
        the timeout and a reply's wait); the plaintext greeting, when the server answered
        with one."""
        from tcpcli.core.tls import TLSStream

        slot = await self._room.acquire()
        stream: anyio.abc.ByteStream | None = None
        try:
            stream, _ = await self._connect(self.address, self.port)
            if stream is None:
                raise TimeoutError
            with anyio.fail_after(within or self.timeout + self.wait):
                tls = await TLSStream.wrap(stream, hostname=self.name,
                                           options=self.tls,
                                           target=f"{self.address}:{self.port}",
                                           port=self.port)
            facts = tls_facts(tls.report, "implicit")
            await close(tls)
            return facts, b""
        except TimeoutError:
            return {"detected": False, "error": NO_ANSWER}, b""
        except PlaintextPeerError as exc:
            return ({"detected": False,
                     "error": f"not TLS: the server answered in plaintext: '{exc.banner}'"},
                    exc.banner.encode("latin-1", "replace"))
        except STREAM_ERRORS as exc:
            return {"detected": False, "error": str(exc) or type(exc).__name__}, b""
        finally:
            if stream is not None:
                await close(stream)
            self._room.release(slot)

    async def _starttls(self, protocol: str, service: ServiceGuess | None) -> dict[str, Any]:
        """The protocol's STARTTLS dialogue on a fresh connection, then the handshake."""
        from tcpcli.core.tls import TLSStream
        from tcpcli.protocols.errors import ProtocolError, StartTlsNotOfferedError
        from tcpcli.protocols.registry import get_dialogue

        base: dict[str, Any] = {"mode": "starttls", "protocol": protocol}
        options: dict[str, Any] = {}
        if protocol.startswith("xmpp"):
            domain = service.fact("domain") if service is not None else None
            options["to"] = domain or self.name or "localhost"
        slot = await self._room.acquire()
        stream: anyio.abc.ByteStream | None = None
        try:
            stream, _ = await self._connect(self.address, self.port)
            if stream is None:
                raise TimeoutError
            dialogue = get_dialogue(protocol, **options)
            await upgrade(stream, dialogue, self.wait)
            with anyio.fail_after(self.timeout + self.wait):
                tls = await TLSStream.wrap(stream, hostname=self.name,
                                           options=self.tls,
                                           target=f"{self.address}:{self.port}",
                                           port=self.port)
            facts = {**tls_facts(tls.report, "starttls"), "protocol": protocol}
            await close(tls)
            return facts
        except StartTlsNotOfferedError:
            return {"detected": False, **base, "error": f"{protocol}: STARTTLS not offered"}
        except ProtocolError as exc:
            return {"detected": False, **base, "error": str(exc)}
        except TimeoutError:
            return {"detected": False, **base, "error": "no reply in time"}
        except STREAM_ERRORS as exc:
            return {"detected": False, **base, "error": str(exc) or type(exc).__name__}
        finally:
            if stream is not None:
                await close(stream)
            self._room.release(slot)


async def upgrade(stream: anyio.abc.ByteStream, dialogue: Dialogue, wait: float) -> None:
    """Drive ``dialogue`` until the server's go-ahead (its errors are raised): every read
    is a reply at most, so nothing past the go-ahead is taken from the socket."""
    from tcpcli.protocols.base import NEED_DATA, Done, ReadyForTls, Send
    from tcpcli.protocols.errors import RemoteProtocolError

    while True:
        event = dialogue.next_event()
        if event is NEED_DATA:
            data = b""
            with anyio.fail_after(wait), contextlib.suppress(anyio.EndOfStream):
                data = await stream.receive(DIALOGUE_READ)
            dialogue.receive_data(data)
        elif isinstance(event, Send):
            await stream.send(event.data)
        elif isinstance(event, ReadyForTls):
            return
        elif isinstance(event, Done):
            raise RemoteProtocolError(f"{dialogue.name}: the dialogue ended without TLS")


def tls_facts(report: TLSReport, mode: str) -> dict[str, Any]:
    """A row's ``tls``: how, version, cipher, ALPN, the leaf's subject, issuer and expiry,
    and the verdict."""
    facts: dict[str, Any] = {"detected": True, "mode": mode, "version": report.version,
                             "cipher": report.cipher}
    if report.alpn:
        facts["alpn"] = report.alpn
    if report.chain:
        leaf = report.chain[0]
        facts.update(subject=leaf.subject, issuer=leaf.issuer,
                     not_after=leaf.not_after.isoformat(), days_left=leaf.days_left)
    verification = report.verification
    facts["verdict"] = ("verified" if verification.verified
                        else f"not verified: {verification.reason}")
    return facts

