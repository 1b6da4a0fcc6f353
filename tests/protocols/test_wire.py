"""Exact bytes on the wire and the small codecs underneath (BER, MySQL packets, telnet
commands, the XMPP tokenizer, IMAP/ManageSieve literals, IRC messages)."""

from __future__ import annotations

import pytest

from tcpcli.protocols import (
    NEED_DATA,
    Capabilities,
    LimitExceededError,
    ReadyForTls,
    Send,
    ber,
    get_dialogue,
)
from tcpcli.protocols.base import Dialogue
from tcpcli.protocols.errors import LocalProtocolError, RemoteProtocolError
from tcpcli.protocols.irc import parse_message
from tcpcli.protocols.ldap import parse_message as parse_ldap, search_root_dse, starttls_request
from tcpcli.protocols.mysql import CLIENT_SSL, Packet, parse_greeting, ssl_request
from tcpcli.protocols.postgres import SSL_REQUEST
from tcpcli.protocols.xmlstream import Element, StreamClose, StreamOpen, XmlStreamParser
from tests.protocols.transcript import fuzz_drive

MYSQL8 = bytes.fromhex(
    "4a0000000a382e302e333600080000003a1f6b2c49550e7d00ffffff0200ffdf1500000000000000000000"
    "1e4f0b62731c5a2d3b4e6f110063616368696e675f736861325f70617373776f726400"
)


def first_sends(dialogue: Dialogue) -> bytes:
    out = b""
    while isinstance(event := dialogue.next_event(), Send):
        out += event.data
    assert event is NEED_DATA
    return out


# -- PostgreSQL, LDAP, BER -----------------------------------------------------------------


def test_postgres_sslrequest_is_length_8_code_80877103() -> None:
    assert bytes.fromhex("0000000804d2162f") == SSL_REQUEST
    assert first_sends(get_dialogue("postgres")) == SSL_REQUEST


def test_ldap_starttls_request_matches_openssl() -> None:
    # openssl s_client -starttls ldap sends exactly this (apps/s_client.c, messageID 1).
    expected = bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037"
    assert starttls_request(1) == expected
    assert first_sends(get_dialogue("ldap", root_dse=False)) == expected
    assert first_sends(get_dialogue("ldap", root_dse=False, message_id=7))[4] == 7


def test_ldap_rootdse_search_decodes_to_a_base_search() -> None:
    (tag, content), = ber.children(search_root_dse(1))
    assert tag == ber.SEQUENCE
    message_id, request = ber.children(content)
    assert message_id == (ber.INTEGER, b"\x01") and request[0] == 0x63
    fields = ber.children(request[1])
    assert fields[0] == (ber.OCTET_STRING, b"")  # baseObject ""
    assert fields[1] == (ber.ENUMERATED, b"\x00")  # scope baseObject
    assert fields[6] == (0x87, b"objectClass")  # (objectClass=*)
    names = [value for _, value in ber.children(fields[7][1])]
    assert b"supportedExtension" in names


@pytest.mark.parametrize(("length", "encoded"), [
    (0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65536, "83010000"),
])
def test_ber_lengths(length: int, encoded: str) -> None:
    assert ber.encode_length(length).hex() == encoded
    assert ber.header(bytes([0x04]) + bytes.fromhex(encoded)) == (0x04, 1 + len(encoded) // 2,
                                                                  length)


@pytest.mark.parametrize(("value", "encoded"), [(0, "020100"), (127, "02017f"),
                                                (128, "02020080"), (-1, "0201ff")])
def test_ber_integers(value: int, encoded: str) -> None:
    assert ber.integer(value).hex() == encoded
    assert ber.decode_integer(bytes.fromhex(encoded)[2:]) == value


@pytest.mark.parametrize("data", ["3080", "1f8101", "3085ffffffffff"])
def test_ber_rejects_what_ldap_forbids(data: str) -> None:
    with pytest.raises(RemoteProtocolError):
        ber.header(bytes.fromhex(data))


def test_ber_truncated_is_incomplete_not_an_error() -> None:
    assert ber.header(b"\x30") is None
    assert ber.header(b"\x30\x82\x01") is None
    with pytest.raises(RemoteProtocolError):
        ber.children(b"\x04\x05ab")


def test_ldap_response_to_another_message_id_is_an_error() -> None:
    wrong = bytes.fromhex("300c02010978070a010004000400")  # ExtendedResponse, messageID 9
    run = fuzz_drive("ldap", [wrong], root_dse=False)
    assert type(run.error) is RemoteProtocolError and "message 9" in str(run.error)


def test_ldap_result_names() -> None:
    data = bytes.fromhex("3024020101781f0a013404000418") + b"Could not initialize TLS"
    message = parse_ldap(data[2:])  # the outer SEQUENCE's content
    assert message.result_code == 52 and message.diagnostic == "Could not initialize TLS"


# -- MySQL ---------------------------------------------------------------------------------


def test_mysql8_greeting_fields() -> None:
    greeting = parse_greeting(Packet(MYSQL8[3], MYSQL8[4:]))
    assert not isinstance(greeting, type(None))
    assert greeting.server_version == "8.0.36"  # type: ignore[union-attr]
    assert greeting.connection_id == 8  # type: ignore[union-attr]
    assert greeting.capabilities == 0xDFFFFFFF  # type: ignore[union-attr]
    assert greeting.charset == 255  # type: ignore[union-attr]
    assert greeting.auth_plugin == "caching_sha2_password"  # type: ignore[union-attr]


def test_mysql_sslrequest_by_hand() -> None:
    greeting = parse_greeting(Packet(0, MYSQL8[4:]))
    request = ssl_request(greeting)  # type: ignore[arg-type]
    assert request[:4] == b"\x20\x00\x00\x01"  # 32-byte payload, sequence id 1
    flags = int.from_bytes(request[4:8], "little")
    assert flags & CLIENT_SSL and flags & 0x200  # CLIENT_SSL, CLIENT_PROTOCOL_41
    assert request[8:12] == b"\x00\x00\x00\x01"  # max packet 16 MiB
    assert request[12] == 255 and request[13:] == bytes(23)
    # The greeting's sequence id decides ours.
    assert ssl_request(parse_greeting(Packet(4, MYSQL8[4:])))[3] == 5  # type: ignore[arg-type]


def test_mysql_plugin_name_without_nul() -> None:
    # MySQL bug #59453: some servers omit the NUL after the auth plugin name.
    greeting = parse_greeting(Packet(0, MYSQL8[4:-1]))
    assert greeting.auth_plugin == "caching_sha2_password"  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [b"\x09" + MYSQL8[5:], b"\x0a5.7", b"", b"\xff\x01"])
def test_mysql_bad_greetings(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_greeting(Packet(0, payload))


def test_mysql_pre41_server() -> None:
    payload = bytearray(MYSQL8[4:])
    flags_at = 1 + len(b"8.0.36\0") + 4 + 8 + 1
    payload[flags_at : flags_at + 2] = (0xFFFF & ~0x200).to_bytes(2, "little")
    packet = len(payload).to_bytes(3, "little") + b"\x00" + bytes(payload)
    run = fuzz_drive("mysql", [packet])
    assert type(run.error) is RemoteProtocolError and "pre-4.1" in str(run.error)


# -- Telnet --------------------------------------------------------------------------------


def test_telnet_answers_and_silence_after_follows() -> None:
    run = fuzz_drive("telnet", [bytes([255, 253, 46]), bytes([255, 253, 24, 255, 251, 1,
                                                              255, 250, 46, 1, 255, 240])])
    sends = [e.data for e in run.events if isinstance(e, Send)]
    # After our FOLLOWS the draft forbids any telnet command: DO TTYPE gets no WONT.
    assert sends == [bytes([255, 251, 46, 255, 250, 46, 1, 255, 240])]
    assert any(isinstance(e, ReadyForTls) for e in run.events)


def test_telnet_escaped_iac_is_data() -> None:
    run = fuzz_drive("telnet", [b"\xff\xffhello"])
    assert "does not offer" in str(run.error)


def test_telnet_other_start_tls_subnegotiation_is_an_error() -> None:
    run = fuzz_drive("telnet", [bytes([255, 253, 46]), bytes([255, 250, 46, 2, 255, 240])])
    assert type(run.error) is RemoteProtocolError


# -- XMPP's XML ----------------------------------------------------------------------------


def parse_all(data: bytes) -> list[object]:
    parser = XmlStreamParser("xmpp", max_tag=512, max_element=4096, max_depth=4)
    buffer = bytearray(data)
    events: list[object] = []
    while (event := parser.next(buffer)) is not None:
        events.append(event)
    return events


HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def test_xml_stream_events() -> None:
    events = parse_all(HEADER + b"<stream:features><x xmlns='urn:a' v='1&gt;2&#x41;&#66;'>"
                       b"t&amp;u</x></stream:features></stream:stream>")
    assert isinstance(events[0], StreamOpen) and events[0].default_namespace == "jabber:client"
    features = events[1]
    assert isinstance(features, Element) and features.local == "features"
    child = features.children[0]
    assert (child.namespace, child.attributes["v"], child.text) == ("urn:a", "1>2AB", "t&u")
    assert isinstance(events[2], StreamClose)


def test_xml_gt_inside_an_attribute_value_split_anywhere() -> None:
    data = HEADER + b"<stream:features><a b='x>y' c=\"'\"/></stream:features>"
    parser = XmlStreamParser("xmpp", max_tag=512, max_element=4096)
    buffer = bytearray()
    events = []
    for byte in data:
        buffer.append(byte)
        while (event := parser.next(buffer)) is not None:
            events.append(event)
    assert isinstance(events[1], Element)
    assert events[1].children[0].attributes == {"b": "x>y", "c": "'"}


@pytest.mark.parametrize("bad", [
    b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>',  # billion laughs
    b"<!-- comment -->",
    b"<?php evil ?>",
    b"<stream:features>&xxe;</stream:features>",
    b"<stream:features><![CDATA[x]]></stream:features>",
    b"<p:x/>",  # unbound prefix
    b"<stream:features></stream:other>",
    b"<a b='<'/>",
    b"<a b='1' b='2'/>",
    b"<a>&#0;</a>",
    b"text at the top level",
])
def test_xml_rejects_what_xmpp_forbids(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_all(HEADER + bad)


def test_xml_bounds() -> None:
    with pytest.raises(LimitExceededError):
        parse_all(HEADER + b"<a>" * 10)  # deeper than max_depth
    with pytest.raises(LimitExceededError):
        parse_all(HEADER + b"<a " + b"x='1' " * 200 + b"/>")  # a tag over max_tag
    with pytest.raises(LimitExceededError):
        parse_all(HEADER + b"<a>" + b"y" * 5000 + b"</a>")  # an element over max_element


def test_xml_root_must_be_a_stream() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_all(b"<html>")
    with pytest.raises(RemoteProtocolError):
        parse_all(HEADER + HEADER)


def test_xmpp_needs_its_domain_and_escapes_nothing() -> None:
    with pytest.raises(LocalProtocolError):
        get_dialogue("xmpp")
    with pytest.raises(LocalProtocolError):
        get_dialogue("xmpp", to="example.com' evil='1")
    header = first_sends(get_dialogue("xmpp-server", to="example.com", from_="me.example"))
    assert b"xmlns='jabber:server'" in header and b"from='me.example'" in header


def test_xmpp_wrong_content_namespace() -> None:
    run = fuzz_drive("xmpp", [HEADER.replace(b"jabber:client", b"jabber:server")],
                     to="example.com")
    assert type(run.error) is RemoteProtocolError and "namespace" in str(run.error)


# -- Literals, IMAP, ManageSieve, IRC, SMTP ------------------------------------------------


def test_imap_literal_cannot_fake_the_tagged_reply() -> None:
    greeting = b"* OK ready\r\n"
    # The literal holds "a1 OK" text: it is data inside an untagged response, not our tag.
    reply = (b"* ID (\"name\" {21}\r\nx\r\na1 OK STARTTLS x\r\n)\r\n"
             b"* CAPABILITY IMAP4rev1\r\na1 OK done\r\n")
    run = fuzz_drive("imap", [greeting, reply])
    assert "does not offer" in str(run.error)  # the capability listing had no STARTTLS
    caps = [e for e in run.events if isinstance(e, Capabilities)]
    assert caps[-1].items == ("IMAP4rev1",)


def test_imap_literal_over_the_bound() -> None:
    run = fuzz_drive("imap", [b"* OK ready\r\n", b"* X {999999}\r\n"], max_line=64, max_reply=1024)
    assert isinstance(run.error, LimitExceededError)


def test_imap_foreign_tag_is_an_error() -> None:
    run = fuzz_drive("imap", [b"* OK ready\r\n", b"zz9 OK what\r\n"])
    assert type(run.error) is RemoteProtocolError


def test_sieve_quoted_strings_with_escapes() -> None:
    listing = b'"IMPLEMENTATION" "say \\"hi\\" \\\\o/"\r\n"STARTTLS"\r\nOK (TAG "x") "ready"\r\n'
    run = fuzz_drive("sieve", [listing, b"OK\r\n"])
    assert run.report.details["implementation"] == 'say "hi" \\o/'
    assert run.report.greeting == "ready"


@pytest.mark.parametrize(("line", "expected"), [
    (b":irc.example.net 670 * :STARTTLS successful", ("670", ["*", "STARTTLS successful"])),
    (b"@time=2024-01-01T00:00:00Z :srv CAP * LS :a b", ("CAP", ["*", "LS", "a b"])),
    (b"PING :12345", ("PING", ["12345"])),
    (b"ERROR :Closing Link", ("ERROR", ["Closing Link"])),
    (b"notice AUTH :*** hi", ("NOTICE", ["AUTH", "*** hi"])),
])
def test_irc_messages(line: bytes, expected: tuple[str, list[str]]) -> None:
    assert parse_message(line) == expected


def test_irc_does_not_pong_after_starttls() -> None:
    run = fuzz_drive("irc", [b":s CAP * LS :tls\r\n", b"PING :late\r\n:s 670 * :go\r\n"])
    sends = [e.data for e in run.events if isinstance(e, Send)]
    assert sends == [b"CAP LS 302\r\n", b"CAP END\r\n", b"STARTTLS\r\n"]


@pytest.mark.parametrize("name", ["a\r\nRCPT TO:<x>", "a b", "", "x" * 300, "é.example"])
def test_ehlo_name_cannot_inject(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        get_dialogue("smtp", ehlo_name=name)


def test_smtp_old_style_auth_is_plaintext() -> None:
    run = fuzz_drive("smtp", [b"220 x ESMTP\r\n", b"250-x\r\n250-AUTH=LOGIN\r\n250 STARTTLS\r\n",
                              b"220 go\r\n"])
    assert run.report.plaintext_login_offered is True


def test_smtp_code_change_inside_a_reply() -> None:
    run = fuzz_drive("smtp", [b"220-x\r\n250 y\r\n"])
    assert type(run.error) is RemoteProtocolError
