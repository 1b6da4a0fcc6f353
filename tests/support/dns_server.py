"""A real DNS server on loopback (UDP and TCP, one port) for resolver tests.

Built on dnspython's message parsing. Each name has a behaviour: records (A, AAAA, CNAME),
NXDOMAIN, SERVFAIL, REFUSED, silence (a timeout), or truncation over UDP with the full
answer over TCP. ``log`` records every question with its transport.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Record = tuple[str, str]  # (type, value): ("A", "127.0.0.1"), ("CNAME", "next.test.")


@dataclass
class Zone:
    records: dict[str, list[Record]] = field(default_factory=dict)
    rcode: dict[str, int] = field(default_factory=dict)  # name -> NXDOMAIN/SERVFAIL/REFUSED
    silent: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)


@dataclass
class DnsServer:
    zone: Zone
    port: int = 0
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, transport)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        self.log.append((name, qtype, transport))
        if name in self.zone.silent:
            return None
        response = dns.message.make_response(query)
        if name in self.zone.rcode:
            response.set_rcode(self.zone.rcode[name])
            return response.to_wire()
        if name in self.zone.truncate and transport == "udp":
            response.flags |= dns.flags.TC
            return response.to_wire()
        owner = name
        for _ in range(8):  # follow CNAMEs inside the zone, as an authoritative server does
            records = self.zone.records.get(owner, [])
            cnames = [value for rtype, value in records if rtype == "CNAME"]
            if cnames:
                response.answer.append(dns.rrset.from_text(owner + ".", 60, "IN", "CNAME",
                                                           cnames[0]))
                owner = cnames[0].rstrip(".").lower()
                continue
            matching = [value for rtype, value in records if rtype == qtype]
            if matching:
                response.answer.append(dns.rrset.from_text(owner + ".", 60, "IN", qtype,
                                                           *matching))
            break
        if not response.answer and name not in self.zone.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


@contextmanager
def dns_server(zone: Zone) -> Iterator[DnsServer]:
    server = DnsServer(zone)

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            reply = server.answer(data, "udp")
            if reply is not None:
                sock.sendto(reply, self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            length = conn.recv(2)
            if len(length) < 2:
                return
            wire = b""
            size = int.from_bytes(length, "big")
            while len(wire) < size:
                chunk = conn.recv(size - len(wire))
                if not chunk:
                    return
                wire += chunk
            reply = server.answer(wire, "tcp")
            if reply is not None:
                conn.sendall(len(reply).to_bytes(2, "big") + reply)

    for _ in range(20):  # the UDP port's TCP twin may be taken: try another pair
        udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        server.port = udp.server_address[1]
        try:
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", server.port), Tcp)
            break
        except OSError:
            udp.server_close()
    else:
        raise RuntimeError("no free UDP+TCP port pair on loopback")
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                daemon=True) for s in (udp, tcp)]
    for thread in threads:
        thread.start()
    try:
        yield server
    finally:
        for s in (udp, tcp):
            s.shutdown()
            s.server_close()
