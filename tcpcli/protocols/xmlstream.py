"""A small, bounded XML stream tokenizer for XMPP's restricted XML (RFC 6120 §11).

No XML library: XMPP forbids DTDs, comments and processing instructions, and an XML
parser that resolves entities is an attack surface (billion laughs, external entities).
This one knows the five predefined entities and character references, nothing else, and
rejects everything XMPP forbids. It yields, one at a time:

* :class:`StreamOpen` — the ``<stream:stream ...>`` header (the root is never closed
  until the end of the stream);
* :class:`Element` — each complete first-level child (``<stream:features>``,
  ``<proceed/>``, ``<stream:error>``), as a small tree;
* :class:`StreamClose` — ``</stream:stream>``.

Bounds: a tag's size (``max_tag``), a first-level element's size (``max_element``) and
the nesting depth (``max_depth``); exceeding any is a :class:`LimitExceededError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tcpcli.protocols.base import printable
from tcpcli.protocols.errors import LimitExceededError, RemoteProtocolError

STREAMS_NS = "http://etherx.jabber.org/streams"
XML_NS = "http://www.w3.org/XML/1998/namespace"

_NAME = r"[^\s/>=\"'<&]+"
_ATTRIBUTE = re.compile(rf"\s+({_NAME})\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
_TAG_NAME = re.compile(_NAME)
_REFERENCE = re.compile(r"&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


@dataclass
class Element:
    """A complete first-level XML element of the stream, as parsed."""

    namespace: str
    local: str
    attributes: dict[str, str] = field(default_factory=dict)
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def child(self, namespace: str, local: str) -> Element | None:
        for element in self.children:
            if element.namespace == namespace and element.local == local:
                return element
        return None


@dataclass(frozen=True)
class StreamOpen:
    """The peer's stream header: its attributes and default namespace."""

    attributes: dict[str, str]
    default_namespace: str


@dataclass(frozen=True)
class StreamClose:
    """The peer closed its stream (</stream:stream>)."""


XmlEvent = StreamOpen | Element | StreamClose


def unescape(raw: bytes, name: str) -> str:
    """Decode UTF-8 and the predefined entities / character references; reject others."""
    text = raw.decode("utf-8", "replace")

    def replace(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("#"):
            code = int(ref[2:], 16) if ref[1:2] == "x" else int(ref[1:])
            if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise RemoteProtocolError(f"{name}: invalid character reference &{ref};")
            return chr(code)
        return _PREDEFINED[ref]

    out = _REFERENCE.sub(replace, text)
    if "&" in _REFERENCE.sub("", text):
        raise RemoteProtocolError(f"{name}: an undefined entity (XMPP allows none)")
    return out


class _Open:
    """An element still open: its qualified name, namespace scope and tree node."""

    def __init__(self, qname: str, scope: dict[str, str], node: Element | None) -> None:
        self.qname = qname
        self.scope = scope
        self.node = node
        self.text = bytearray()


class XmlStreamParser:
    def __init__(self, name: str, *, max_tag: int, max_element: int, max_depth: int = 16):
        self.name = name
        self.max_tag = max_tag
        self.max_element = max_element
        self.max_depth = max_depth
        self.reset()

    def reset(self) -> None:
        """Start a new stream (after TLS the stream restarts from scratch)."""
        self._stack: list[_Open] = []
        self._started = False  # the root element was seen
        self._first = True  # nothing consumed yet: an XML declaration may come
        self._element_size = 0
        self._scan = 0  # where the scan for the end of the pending tag resumes
        self._quote = 0  # the open quote character at _scan, or 0

    @property
    def partial(self) -> bool:
        return len(self._stack) > 1 or self._scan > 0

    def next(self, buffer: bytearray) -> XmlEvent | None:
        while buffer:
            if buffer[0] != 0x3C:  # character data up to the next "<"
                end = buffer.find(b"<")
                end = len(buffer) if end < 0 else end
                self._text(bytes(buffer[:end]))
                del buffer[:end]
                continue
            if buffer[1:2] == b"!":
                raise RemoteProtocolError(
                    f"{self.name}: comments, CDATA and DTDs are not allowed in XMPP"
                )
            tag_end = self._find_tag_end(buffer)
            if tag_end is None:
                return None
            tag = bytes(buffer[: tag_end + 1])
            del buffer[: tag_end + 1]
            self._scan = 0
            self._quote = 0
            event = self._tag(tag)
            if event is not None:
                return event
        return None

    def _count(self, size: int) -> None:
        if len(self._stack) > 1:
            self._element_size += size
            if self._element_size > self.max_element:
                raise LimitExceededError(
                    f"{self.name}: an XML element is larger than {self.max_element} bytes"
                )

    def _text(self, data: bytes) -> None:
        self._count(len(data))
        self._first = False
        if len(self._stack) <= 1:
            if data.strip(b" \t\r\n"):
                raise RemoteProtocolError(
                    f"{self.name}: text outside any element: {printable(data[:60])}"
                )
            return
        self._stack[-1].text += data

    def _find_tag_end(self, buffer: bytearray) -> int | None:
        """Index of the ">" that ends the tag at buffer[0], skipping quoted values."""
        i = max(self._scan, 1)
        quote = self._quote
        limit = min(len(buffer), self.max_tag)
        while i < limit:
            byte = buffer[i]
            if quote:
                if byte == quote:
                    quote = 0
                elif byte == 0x3C:
                    raise RemoteProtocolError(f"{self.name}: '<' inside an attribute value")
            elif byte in (0x22, 0x27):
                quote = byte
            elif byte == 0x3E:
                return i
            elif byte == 0x3C:
                raise RemoteProtocolError(f"{self.name}: '<' inside a tag")
            i += 1
        if len(buffer) >= self.max_tag:
            raise LimitExceededError(f"{self.name}: a tag is longer than {self.max_tag} bytes")
        self._scan = i
        self._quote = quote
        return None

    def _tag(self, tag: bytes) -> XmlEvent | None:
        self._count(len(tag))
        first, self._first = self._first, False
        if tag.startswith(b"<?"):
            if first and tag.startswith(b"<?xml") and tag.endswith(b"?>"):
                return None
            raise RemoteProtocolError(f"{self.name}: processing instructions are not allowed")
        if tag.startswith(b"<!"):
            raise RemoteProtocolError(
                f"{self.name}: comments, CDATA and DTDs are not allowed in XMPP"
            )
        text = tag.decode("utf-8", "replace")
        if text.startswith("</"):
            return self._end(text[2:-1].strip())
        self_closing = text.endswith("/>")
        body = text[1:-2] if self_closing else text[1:-1]
        match = _TAG_NAME.match(body)
        if match is None:
            raise RemoteProtocolError(f"{self.name}: malformed tag: {printable(tag[:60])}")
        qname = match.group(0)
        attributes: dict[str, str] = {}
        position = match.end()
        while (attr := _ATTRIBUTE.match(body, position)) is not None:
            value = attr.group(2) if attr.group(2) is not None else attr.group(3)
            if attr.group(1) in attributes:
                raise RemoteProtocolError(f"{self.name}: duplicate attribute {attr.group(1)}")
            attributes[attr.group(1)] = unescape(value.encode(), self.name)
            position = attr.end()
        if body[position:].strip():
            raise RemoteProtocolError(f"{self.name}: malformed tag: {printable(tag[:60])}")
        return self._start(qname, attributes, self_closing)

    def _start(self, qname: str, attributes: dict[str, str],
               self_closing: bool) -> XmlEvent | None:
        parent = self._stack[-1].scope if self._stack else {"xml": XML_NS}
        scope = dict(parent)
        for key, value in attributes.items():
            if key == "xmlns":
                scope[""] = value
            elif key.startswith("xmlns:"):
                scope[key[6:]] = value
        prefix, _, local = qname.rpartition(":")
        if prefix not in scope:
            raise RemoteProtocolError(f"{self.name}: unbound namespace prefix {prefix!r}")
        namespace = scope[prefix]
        if not self._stack:
            if self._started or (namespace, local) != (STREAMS_NS, "stream") or self_closing:
                raise RemoteProtocolError(
                    f"{self.name}: expected <stream:stream>, got <{printable(qname)}>"
                )
            self._started = True
            self._stack.append(_Open(qname, scope, None))
            return StreamOpen(attributes, scope.get("", ""))
        if len(self._stack) > self.max_depth:
            raise LimitExceededError(f"{self.name}: XML nested deeper than {self.max_depth}")
        node = Element(namespace, local, attributes)
        parent_node = self._stack[-1].node
        if parent_node is not None:
            parent_node.children.append(node)
        if self_closing:
            return node if len(self._stack) == 1 else None
        if len(self._stack) == 1:
            self._element_size = 0
        self._stack.append(_Open(qname, scope, node))
        return None

    def _end(self, qname: str) -> XmlEvent | None:
        if not self._stack or self._stack[-1].qname != qname:
            raise RemoteProtocolError(f"{self.name}: mismatched end tag </{printable(qname)}>")
        closed = self._stack.pop()
        if closed.node is None:
            return StreamClose()
        closed.node.text = unescape(bytes(closed.text), self.name).strip()
        if len(self._stack) == 1:
            self._element_size = 0
            return closed.node
        return None
