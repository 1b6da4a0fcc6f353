"""LDAP StartTLS (RFC 4511 §4.14, RFC 4513 §3), sans-IO.

    C: SearchRequest #1: base "", scope base, (objectClass=*), supportedExtension, ...
    S: SearchResultEntry #1 (the RootDSE) / SearchResultDone #1 success
    C: ExtendedRequest #2: requestName 1.3.6.1.4.1.1466.20037
    S: ExtendedResponse #2: resultCode success    <- nothing may follow it in the buffer
    -- TLS --

The anonymous RootDSE read (``root_dse=False`` skips it) tells whether StartTLS is
listed in ``supportedExtension`` and which SASL mechanisms are offered before TLS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import tcpcli.protocols.ber as ber
from tcpcli.protocols.base import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_REPLY,
    Goal,
    Outcome,
    Send,
    Table,
    TableDialogue,
    printable,
)
from tcpcli.protocols.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError
from tcpcli.protocols.lines import PLAINTEXT_MECHANISMS

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
NOTICE_OF_DISCONNECTION_OID = "1.3.6.1.4.1.1466.20036"
KNOWN_OIDS = {
    STARTTLS_OID: "StartTLS",
    "1.3.6.1.4.1.4203.1.11.1": "Modify Password",
    "1.3.6.1.4.1.4203.1.11.3": "Who am I?",
    "1.3.6.1.1.8": "Cancel",
    "1.3.6.1.1.21.1": "Start Transaction",
    "1.3.6.1.4.1.1466.101.119.1": "Dynamic Refresh",
}
ROOT_DSE_ATTRIBUTES = (
    "supportedExtension", "supportedSASLMechanisms", "supportedLDAPVersion", "vendorName",
    "vendorVersion",
)

# protocolOp tags ([APPLICATION n], constructed)
SEARCH_REQUEST, SEARCH_ENTRY, SEARCH_DONE, SEARCH_REFERENCE = 0x63, 0x64, 0x65, 0x73
EXTENDED_REQUEST, EXTENDED_RESPONSE = 0x77, 0x78
RESULT_NAMES = {
    0: "success", 1: "operationsError", 2: "protocolError", 7: "authMethodNotSupported",
    8: "strongerAuthRequired", 50: "insufficientAccessRights", 51: "busy",
    52: "unavailable", 53: "unwillingToPerform", 80: "other",
}


def search_root_dse(message_id: int) -> bytes:
    present = ber.octets("objectClass", tag=0x87)  # Filter: present [7]
    attributes = ber.sequence(*(ber.octets(name) for name in ROOT_DSE_ATTRIBUTES))
    request = ber.sequence(
        ber.octets(""), ber.integer(0, ber.ENUMERATED), ber.integer(0, ber.ENUMERATED),
        ber.integer(0), ber.integer(0), ber.boolean(False), present, attributes,
        tag=SEARCH_REQUEST,
    )
    return ber.sequence(ber.integer(message_id), request)


def starttls_request(message_id: int) -> bytes:
    request = ber.sequence(ber.octets(STARTTLS_OID, tag=0x80), tag=EXTENDED_REQUEST)
    return ber.sequence(ber.integer(message_id), request)


@dataclass(frozen=True)
class LdapMessage:
    """One LDAP message as far as a client needs it: its id, the operation, and a result's
    code, diagnostic and extended response name."""

    message_id: int
    op: int
    result_code: int | None = None
    diagnostic: str = ""
    response_name: str = ""
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


def parse_message(data: bytes) -> LdapMessage:
    """Decode one LDAPMessage (the outer SEQUENCE's content)."""
    parts = ber.children(data)
    if len(parts) < 2 or parts[0][0] != ber.INTEGER:
        raise RemoteProtocolError("ldap: an LDAPMessage without messageID and protocolOp")
    message_id = ber.decode_integer(parts[0][1])
    op, content = parts[1]
    if op in (SEARCH_DONE, EXTENDED_RESPONSE):
        fields = ber.children(content)
        if len(fields) < 3 or [tag for tag, _ in fields[:3]] != [
            ber.ENUMERATED, ber.OCTET_STRING, ber.OCTET_STRING
        ]:
            raise RemoteProtocolError("ldap: a malformed LDAPResult")
        name = next((printable(value) for tag, value in fields[3:] if tag == 0x8A), "")
        return LdapMessage(message_id, op, ber.decode_integer(fields[0][1]),
                           printable(fields[2][1]), name)
    if op == SEARCH_ENTRY:
        fields = ber.children(content)
        if len(fields) != 2 or fields[1][0] != ber.SEQUENCE:
            raise RemoteProtocolError("ldap: a malformed SearchResultEntry")
        attributes: list[tuple[str, tuple[str, ...]]] = []
        for tag, attribute in ber.children(fields[1][1]):
            pair = ber.children(attribute)
            if tag != ber.SEQUENCE or len(pair) != 2 or pair[1][0] != ber.SET:
                raise RemoteProtocolError("ldap: a malformed attribute")
            values = tuple(printable(value) for _, value in ber.children(pair[1][1]))
            attributes.append((printable(pair[0][1]), values))
        return LdapMessage(message_id, op, attributes=tuple(attributes))
    return LdapMessage(message_id, op)


class Step(enum.Enum):
    ROOT_DSE = "root-dse"
    STARTTLS = "starttls"


class LdapDialogue(TableDialogue[LdapMessage]):
    """LDAP StartTLS. Options: ``message_id`` (of the first request), ``root_dse``."""

    name = "ldap"
    default_ports = (389,)
    server_speaks_first = False

    FIRST = Step.ROOT_DSE
    AFTER_TLS = Goal.DONE
    TABLE: ClassVar[Table] = {
        # Rule 1 — the RootDSE: StartTLS in supportedExtension → StartTLS; a listing
        # without it → not offered; no listing (no entry, access denied) → try anyway.
        (Step.ROOT_DSE, Outcome.OFFERED): Step.STARTTLS,
        (Step.ROOT_DSE, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.ROOT_DSE, Outcome.UNKNOWN): Step.STARTTLS,
        (Step.ROOT_DSE, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — the ExtendedResponse: success → upgrade (the buffer must be empty);
        # protocolError ("unsupported extended operation") → not offered; any other
        # result → refused. A Notice of Disconnection → refused.
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
    }

    def __init__(self, *, message_id: int = 1, root_dse: bool = True,
                 max_line: int = DEFAULT_MAX_LINE, max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        if not 0 < message_id < 2**31 - 2:
            raise LocalProtocolError(f"ldap: message_id must be in 1..2**31-3: {message_id}")
        self._next_id = message_id
        self._id = 0
        self._root_dse = root_dse
        self._attributes: dict[str, tuple[str, ...]] | None = None

    def _first_step(self) -> enum.Enum:
        return Step.ROOT_DSE if self._root_dse else Step.STARTTLS

    def _partial(self) -> bool:
        return bool(self._buffer)

    def _next_reply(self) -> LdapMessage | None:
        head = ber.header(self._buffer)
        if head is None:
            return None
        tag, start, length = head
        if tag != ber.SEQUENCE:
            raise RemoteProtocolError(f"ldap: not an LDAPMessage (tag 0x{tag:02x})")
        if start + length > self.max_reply:
            raise LimitExceededError(
                f"ldap: a {start + length}-byte message exceeds {self.max_reply} bytes"
            )
        if len(self._buffer) < start + length:
            return None
        data = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        return parse_message(data)

    def _command(self, step: enum.Enum) -> Send | None:
        self._id = self._next_id
        self._next_id += 1
        if step is Step.ROOT_DSE:
            return Send(search_root_dse(self._id), "RootDSE search")
        return Send(starttls_request(self._id), "StartTLS")

    def _classify(self, step: enum.Enum, reply: LdapMessage) -> Outcome:
        result = "" if reply.result_code is None else RESULT_NAMES.get(
            reply.result_code, str(reply.result_code)
        )
        self._last_text = printable(
            f"{result}: {reply.diagnostic}" if result and reply.diagnostic else
            result or reply.diagnostic
        )
        if reply.message_id == 0:
            if reply.op == EXTENDED_RESPONSE and reply.response_name == (
                NOTICE_OF_DISCONNECTION_OID
            ):
                return Outcome.CLOSING
            raise RemoteProtocolError("ldap: an unknown unsolicited notification")
        if reply.message_id != self._id:
            raise RemoteProtocolError(
                f"ldap: a response to message {reply.message_id}, expected {self._id}"
            )
        if step is Step.ROOT_DSE:
            if reply.op == SEARCH_ENTRY:
                self._attributes = {name.lower(): values for name, values in reply.attributes}
                return Outcome.WAIT
            if reply.op == SEARCH_REFERENCE:
                return Outcome.WAIT
            if reply.op == SEARCH_DONE:
                return self._root_dse_done(reply)
        elif reply.op == EXTENDED_RESPONSE:
            if reply.result_code == 0:
                return Outcome.OK
            if reply.result_code == 2:
                self._why = "the server does not know the StartTLS operation"
                return Outcome.ABSENT
            return Outcome.NO
        raise RemoteProtocolError(f"ldap: unexpected protocolOp 0x{reply.op:02x}")

    def _root_dse_done(self, reply: LdapMessage) -> Outcome:
        attributes = self._attributes
        if reply.result_code != 0 or attributes is None:
            return Outcome.UNKNOWN
        items = [
            f"{name}: {value}" + (f" ({KNOWN_OIDS[value]})" if value in KNOWN_OIDS else "")
            for name in ROOT_DSE_ATTRIBUTES
            for value in attributes.get(name.lower(), ())
        ]
        self._capabilities(items)
        for name in ("vendorName", "vendorVersion"):
            if attributes.get(name.lower()):
                self._detail(name, attributes[name.lower()][0])
        mechanisms = {m.upper() for m in attributes.get("supportedsaslmechanisms", ())}
        if PLAINTEXT_MECHANISMS & mechanisms:
            self._plaintext_login(True)
        extensions = attributes.get("supportedextension")
        if extensions is None:
            return Outcome.UNKNOWN
        offered = STARTTLS_OID in extensions
        self._update(starttls_offered=offered)
        return Outcome.OFFERED if offered else Outcome.ABSENT
