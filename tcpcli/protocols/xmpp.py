"""XMPP STARTTLS (RFC 6120 §5), client-to-server and server-to-server, sans-IO.

    C: <?xml version='1.0'?><stream:stream xmlns='jabber:client' ... to='example.com' version='1.0'>
    S: <?xml version='1.0'?><stream:stream ... from='example.com' id='...' version='1.0'>
    S: <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>
       <mechanisms ...><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>
    C: <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>
    S: <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>   <- nothing may follow it
    -- TLS --
    C: <stream:stream ...>                        <- RFC 6120 §5.4.3.3: restart the stream
    S: <stream:stream ...><stream:features>...    <- the capabilities after TLS
"""

from __future__ import annotations

import enum
from typing import ClassVar

from tcpcli.protocols.base import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_REPLY,
    Goal,
    Outcome,
    Send,
    Table,
    TableDialogue,
    check_token,
    printable,
)
from tcpcli.protocols.errors import LocalProtocolError, RemoteProtocolError
from tcpcli.protocols.lines import PLAINTEXT_MECHANISMS
from tcpcli.protocols.xmlstream import (
    STREAMS_NS,
    Element,
    StreamClose,
    StreamOpen,
    XmlEvent,
    XmlStreamParser,
)

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
IQ_AUTH_NS = "http://jabber.org/features/iq-auth"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-streams"


class Step(enum.Enum):
    STREAM = "stream"
    FEATURES = "features"
    STARTTLS = "starttls"
    TLS_STREAM = "tls-stream"
    TLS_FEATURES = "tls-features"


class XmppDialogue(TableDialogue[XmlEvent]):
    """XMPP client STARTTLS. Options: ``to`` (the XMPP domain, required)."""

    name = "xmpp"
    default_ports = (5222,)
    server_speaks_first = False
    LOCKSTEP = False  # whitespace keepalives may come between elements
    CONTENT_NS: ClassVar[str] = "jabber:client"

    FIRST = Step.STREAM
    AFTER_TLS = Step.TLS_STREAM
    TABLE: ClassVar[Table] = {
        # Rule 1 — our stream header; the server's header → wait for its features. A
        # header without version='1.0' (pre-RFC 3920) has no features → not offered.
        (Step.STREAM, Outcome.OK): Step.FEATURES,
        (Step.STREAM, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.STREAM, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 2 — <stream:features>: <starttls/> listed → send <starttls/>; not listed →
        # not offered. A stream error (host-unknown, ...) → the session is refused.
        (Step.FEATURES, Outcome.OFFERED): Step.STARTTLS,
        (Step.FEATURES, Outcome.ABSENT): Goal.NOT_OFFERED,
        (Step.FEATURES, Outcome.CLOSING): Goal.SESSION_REFUSED,
        # Rule 3 — <proceed/> → upgrade (the buffer must be empty); <failure/> → refused.
        (Step.STARTTLS, Outcome.OK): Goal.UPGRADE,
        (Step.STARTTLS, Outcome.NO): Goal.REFUSED,
        (Step.STARTTLS, Outcome.CLOSING): Goal.REFUSED,
        # Rule 4 — over TLS: a new stream header, then the features after TLS.
        (Step.TLS_STREAM, Outcome.OK): Step.TLS_FEATURES,
        (Step.TLS_STREAM, Outcome.ABSENT): Goal.DONE,
        (Step.TLS_STREAM, Outcome.CLOSING): Goal.SESSION_REFUSED,
        (Step.TLS_FEATURES, Outcome.OK): Goal.DONE,
        (Step.TLS_FEATURES, Outcome.CLOSING): Goal.SESSION_REFUSED,
    }

    def __init__(self, *, to: str | None = None, from_: str | None = None,
                 max_line: int = DEFAULT_MAX_LINE, max_reply: int = DEFAULT_MAX_REPLY) -> None:
        super().__init__(max_line=max_line, max_reply=max_reply)
        if to is None:
            raise LocalProtocolError(f"{self.name}: the server's XMPP domain is needed (to=)")
        self.to = check_token(to, "XMPP domain", max_length=1023)
        self.from_ = None if from_ is None else check_token(from_, "XMPP from", max_length=1023)
        self._parser = XmlStreamParser(self.name, max_tag=max_line, max_element=max_reply)

    def _partial(self) -> bool:
        return self._parser.partial

    def _next_reply(self) -> XmlEvent | None:
        return self._parser.next(self._buffer)

    def _header(self) -> bytes:
        sender = f" from='{self.from_}'" if self.from_ else ""
        return (
            f"<?xml version='1.0'?><stream:stream xmlns='{self.CONTENT_NS}'"
            f" xmlns:stream='{STREAMS_NS}' to='{self.to}'{sender} version='1.0'>"
        ).encode()

    def _command(self, step: enum.Enum) -> Send | None:
        if step in (Step.STREAM, Step.TLS_STREAM):
            self._parser.reset()
            return Send(self._header(), "stream")
        if step is Step.STARTTLS:
            return Send(f"<starttls xmlns='{TLS_NS}'/>".encode(), "starttls")
        return None

    def _classify(self, step: enum.Enum, reply: XmlEvent) -> Outcome:
        if isinstance(reply, StreamClose):
            self._last_text = "</stream:stream>"
            self._why = "the server closed the stream"
            return Outcome.CLOSING
        if isinstance(reply, StreamOpen):
            return self._opened(step, reply)
        self._last_text = f"<{reply.local}/>"
        if (reply.namespace, reply.local) == (STREAMS_NS, "error"):
            condition = next((c.local for c in reply.children if c.namespace == STANZAS_NS), "")
            text = next((c.text for c in reply.children if c.local == "text"), "")
            self._last_text = printable(f"stream error {condition} {text}".strip())
            return Outcome.CLOSING
        if step in (Step.FEATURES, Step.TLS_FEATURES) and (
            (reply.namespace, reply.local) == (STREAMS_NS, "features")
        ):
            return self._features(step, reply)
        if step is Step.STARTTLS and reply.namespace == TLS_NS:
            if reply.local == "proceed":
                return Outcome.OK
            if reply.local == "failure":
                return Outcome.NO
        raise RemoteProtocolError(
            f"{self.name}: unexpected <{printable(reply.local)}> in step {self.step}"
        )

    def _opened(self, step: enum.Enum, header: StreamOpen) -> Outcome:
        if step not in (Step.STREAM, Step.TLS_STREAM):
            raise RemoteProtocolError(f"{self.name}: a second stream header")
        attrs = header.attributes
        if header.default_namespace != self.CONTENT_NS:
            raise RemoteProtocolError(
                f"{self.name}: the server's stream is in namespace"
                f" {printable(header.default_namespace)!r}, not {self.CONTENT_NS!r}"
            )
        self._last_text = printable(
            " ".join(f"{key}={attrs[key]}" for key in ("from", "id", "version") if key in attrs)
        )
        if step is Step.STREAM:
            self._greeting(self._last_text)
        if not attrs.get("version", "").startswith("1."):
            self._why = "the server's stream has no version='1.0', hence no stream features"
            return Outcome.ABSENT
        return Outcome.OK

    def _features(self, step: enum.Enum, features: Element) -> Outcome:
        items: list[str] = []
        mechanisms: set[str] = set()
        offered = False
        for feature in features.children:
            if (feature.namespace, feature.local) == (TLS_NS, "starttls"):
                offered = True
                required = feature.child(TLS_NS, "required") is not None
                items.append("STARTTLS (required)" if required else "STARTTLS")
                if step is Step.FEATURES:
                    self._detail("starttls_required", "yes" if required else "no")
            elif (feature.namespace, feature.local) == (SASL_NS, "mechanisms"):
                for mechanism in feature.children:
                    if mechanism.local == "mechanism" and mechanism.text:
                        mechanisms.add(mechanism.text.upper())
                        items.append(f"SASL {mechanism.text}")
            elif (feature.namespace, feature.local) == (IQ_AUTH_NS, "auth"):
                mechanisms.add("IQ-AUTH")
                items.append("iq-auth (XEP-0078)")
            else:
                items.append(f"{feature.local} ({feature.namespace})")
        self._capabilities(items)
        if step is Step.TLS_FEATURES:
            return Outcome.OK
        self._plaintext_login(bool((PLAINTEXT_MECHANISMS | {"IQ-AUTH"}) & mechanisms))
        self._update(starttls_offered=offered)
        return Outcome.OFFERED if offered else Outcome.ABSENT


class XmppServerDialogue(XmppDialogue):
    """XMPP server-to-server STARTTLS. Options: ``to`` (required), ``from_`` (our domain)."""

    name = "xmpp-server"
    default_ports = (5269,)
    CONTENT_NS = "jabber:server"
