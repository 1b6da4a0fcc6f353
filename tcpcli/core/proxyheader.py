"""The PROXY protocol header (haproxy's spec, v1 text and v2 binary): what a load balancer
writes at the start of a connection to say who the client really was.

``connect --send-proxy`` writes one, as haproxy's ``send-proxy``/``send-proxy-v2`` does, so
a service behind ``accept-proxy`` can be tested directly; ``listen --accept-proxy`` reads
one. Encoding and decoding are the ``proxy-protocol`` package's; this module adds the
framing a reader needs (how many more bytes to read, never past the header, which a
server-speaks-first service depends on), the limits of the spec, and one error type with
a plain message for everything malformed. Sans-IO: bytes in, bytes or facts out.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

#: The v2 signature (spec §2.2): a v1 parser or a text protocol rejects it at once.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
#: The longest v1 line, CRLF included (spec §2.1: "PROXY UNKNOWN" with two IPv6 addresses).
V1_MAX_LENGTH = 107
#: The shortest header of either version ("PROXY UNKNOWN\r\n"): reading this much first
#: can never read past a header.
MIN_LENGTH = 15
V2_FIXED_LENGTH = 16

ProxyVersion = Literal[1, 2]

#: v2 TLV types (spec §2.2.7) by the names reports use.
_TLV_NAMES = {0x01: "alpn", 0x02: "authority", 0x03: "crc32c", 0x04: "noop",
              0x05: "unique_id", 0x20: "ssl", 0x30: "netns"}


class ProxyHeaderError(ValueError):
    """Bytes that are not a well-formed PROXY protocol header; the message says why."""


@dataclass(frozen=True)
class ProxyHeaderSpec:
    """What ``--send-proxy`` writes: the version, and the client address to claim
    (``None``: the connection's own local address, as a load balancer would)."""

    version: ProxyVersion = 2
    source: tuple[str, int] | None = None


@dataclass(frozen=True)
class ProxyHeader:
    """A header as read: ``command`` "proxy" (a relayed connection), "local" (the
    balancer's own, e.g. a health check) or "unknown" (v1 UNKNOWN, or a v2 family the
    spec leaves to the receiver); ``source``/``destination`` the original client and the
    address it connected to; ``tlvs`` v2's type-length-value fields by name."""

    version: ProxyVersion
    command: str
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tlvs: dict[str, str] = field(default_factory=dict)
    length: int = 0

    def describe(self) -> str:
        """One line for a report: "PROXY v2 from 203.0.113.7:4242 to 10.0.0.1:443"."""
        from tcpcli.core.address import join_host_port

        text = f"PROXY v{self.version}"
        if self.source is not None and self.destination is not None:
            text += (f" from {join_host_port(*self.source)} to "
                     f"{join_host_port(*self.destination)}")
        elif self.command == "local":
            text += " LOCAL (the proxy's own connection, no client address)"
        else:
            text += " UNKNOWN (no client address)"
        if self.tlvs:
            text += "; " + ", ".join(f"{name}={value}" for name, value in self.tlvs.items())
        return text


def encode(spec: ProxyHeaderSpec, local: tuple[str, int], peer: tuple[str, int]) -> bytes:
    """The header for a connection from ``local`` to ``peer`` (or from ``spec.source``).
    ProxyHeaderError when the claimed source and the connection differ in family: the
    header carries one family for both addresses."""
    from proxyprotocol.result import ProxyResultIPv4, ProxyResultIPv6
    from proxyprotocol.v1 import ProxyProtocolV1
    from proxyprotocol.v2 import ProxyProtocolV2

    source_host, source_port = spec.source if spec.source is not None else local
    source_ip, destination_ip = ip_address(source_host), ip_address(peer[0])
    if source_ip.version != destination_ip.version:
        raise ProxyHeaderError(
            f"the PROXY header's source {source_ip} is IPv{source_ip.version} but the "
            f"connection is IPv{destination_ip.version}; a header carries one family for "
            f"both addresses (give an IPv{destination_ip.version} source)")
    result: ProxyResultIPv4 | ProxyResultIPv6
    # TCP, said so: without it the package writes transport UNSPEC (0x10/0x20), which
    # the spec reserves for LOCAL and unsupported protocols.
    stream = socket.SOCK_STREAM
    if isinstance(source_ip, IPv4Address) and isinstance(destination_ip, IPv4Address):
        result = ProxyResultIPv4((source_ip, source_port), (destination_ip, peer[1]),
                                 protocol=stream)
    elif isinstance(source_ip, IPv6Address) and isinstance(destination_ip, IPv6Address):
        result = ProxyResultIPv6((source_ip, source_port), (destination_ip, peer[1]),
                                 protocol=stream)
    if spec.version == 1:
        return ProxyProtocolV1().pack(result)
    return ProxyProtocolV2().pack(result)


def still_needed(buffer: bytes) -> int:
    """How many more bytes to read for the header that ``buffer`` starts (0: complete),
    never more than the header has, so nothing after it is consumed. ProxyHeaderError as
    soon as the bytes so far cannot begin one."""
    if not buffer:
        return MIN_LENGTH
    seen = len(buffer)
    if V2_SIGNATURE.startswith(buffer[:12]):
        if seen < V2_FIXED_LENGTH:
            return V2_FIXED_LENGTH - seen
        if buffer[12] >> 4 != 2:
            raise ProxyHeaderError(f"PROXY v2 header with version {buffer[12] >> 4} "
                                   "(only 2 exists)")
        total = V2_FIXED_LENGTH + int.from_bytes(buffer[14:16], "big")
        if seen > total:
            raise ProxyHeaderError("read past the PROXY header")
        return total - seen
    if not V1_PREFIX.startswith(buffer[:6]):
        raise ProxyHeaderError(f"not a PROXY protocol header: it starts with "
                               f"{bytes(buffer[:16])!r} (neither 'PROXY ' nor the v2 "
                               "signature)")
    if seen < MIN_LENGTH:
        return MIN_LENGTH - seen
    end = buffer.find(b"\n")
    if end == -1:
        if seen >= V1_MAX_LENGTH:
            raise ProxyHeaderError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes "
                                   "without its CRLF")
        return 1  # a line: one byte at a time, so as not to read past it
    if end != seen - 1 or buffer[end - 1:end] != b"\r":
        raise ProxyHeaderError(f"malformed PROXY v1 header {bytes(buffer[:end + 1])!r}: "
                               "the line must end with CRLF")
    return 0


def decode(header: bytes) -> ProxyHeader:
    """The complete header (as :func:`still_needed` framed it) read into facts, or
    ProxyHeaderError naming what is wrong."""
    if still_needed(header):
        raise ProxyHeaderError("incomplete PROXY header")
    from proxyprotocol.result import ProxyResultLocal
    from proxyprotocol.v1 import ProxyProtocolV1
    from proxyprotocol.v2 import ProxyProtocolV2

    version: ProxyVersion = 2 if header.startswith(V2_SIGNATURE) else 1
    try:
        if version == 1:
            result = ProxyProtocolV1().unpack(header)
        else:
            result = ProxyProtocolV2().unpack(header)
        tlvs = _tlvs(result.tlv) if version == 2 else {}
    except ProxyHeaderError:
        raise
    except Exception as exc:  # the package's own, ValueError, struct.error, IndexError...
        detail = str(exc) or type(exc).__name__
        shown = f" {header!r}" if version == 1 else ""  # a v1 header is one short line
        raise ProxyHeaderError(f"malformed PROXY v{version} header{shown}: {detail}") from exc
    if isinstance(result, ProxyResultLocal):
        return ProxyHeader(version, "local", tlvs=tlvs, length=len(header))
    peer, sock = result.peername, result.sockname
    if not isinstance(peer, tuple) or not isinstance(sock, tuple):
        return ProxyHeader(version, "unknown", tlvs=tlvs, length=len(header))
    return ProxyHeader(version, "proxy", (str(peer[0]), int(peer[1])),
                       (str(sock[0]), int(sock[1])), tlvs, len(header))


def _tlvs(tlv: Mapping[int, bytes]) -> dict[str, str]:
    """v2's TLVs by name, as text (unknown types by number, bytes as hex)."""
    shown: dict[str, str] = {}
    for kind, value in tlv.items():
        name = _TLV_NAMES.get(int(kind), f"type_{int(kind):#04x}")
        raw = bytes(value)
        if name in ("alpn", "authority", "netns"):
            shown[name] = raw.decode("utf-8", "backslashreplace")
        else:
            shown[name] = raw.hex()
    return shown


def header_for(spec: ProxyHeaderSpec, local: tuple[str, int] | None,
               peer: tuple[str, int] | None, *, target: str) -> bytes:
    """:func:`encode` for a dialed connection, its impossibilities as the core's
    :class:`~tcpcli.core.errors.SocketOptionError` (a usage error: the claimed source)."""
    from tcpcli.core.errors import SocketOptionError

    if local is None or peer is None:
        raise SocketOptionError(f"cannot write a PROXY header on the connection to {target}: "
                                "its addresses are unknown")
    try:
        return encode(spec, local, peer)
    except ProxyHeaderError as exc:
        raise SocketOptionError(str(exc)) from None
