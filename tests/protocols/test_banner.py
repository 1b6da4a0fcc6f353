"""``probe --banner``: naming a service from its first bytes or its answer to a probe."""

from __future__ import annotations

import ssl

import pytest

from tcpcli.protocols import (
    Confidence,
    ServiceGuess,
    client_hello,
    http_head_probe,
    identify,
    mqtt_connect_probe,
    mqtt_disconnect,
    parse_tls_reply,
    probes_for_silent_service,
    wants_more,
)
from tcpcli.protocols.banner import REDIS_PING
from tcpcli.protocols.errors import LocalProtocolError
from tcpcli.protocols.postgres import SSL_REQUEST

MARIADB = bytes.fromhex(
    "630000000a352e352e352d31302e31312e362d4d6172696144422d302b64656231327531001f0000005b2472"
    "3f6e48404c00feff2d0200ff81150000000000001d0000002b555d7a44617c3e55254d58006d7973716c5f6e"
    "61746976655f70617373776f726400"
)
MYSQL_DENIED = bytes.fromhex(
    "45000000ff6a04486f737420273139322e302e322e313027206973206e6f7420616c6c6f77656420746f2063"
    "6f6e6e65637420746f2074686973204d61726961444220736572766572"
)


def named(data: bytes, **kwargs: object) -> tuple[str, Confidence, str | None, str | None]:
    guess = identify(data, **kwargs)  # type: ignore[arg-type]
    assert guess is not None, data
    return guess.name, guess.confidence, guess.product, guess.version


@pytest.mark.parametrize(("data", "expected"), [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
     ("ssh", Confidence.HIGH, "OpenSSH", "9.2p1")),
    (b"SSH-2.0-dropbear_2022.83\r\n", ("ssh", Confidence.HIGH, "dropbear", "2022.83")),
    (b"SSH-2.0-Cisco-1.25\r\n", ("ssh", Confidence.HIGH, "Cisco", "1.25")),
    (b"a pre-banner line\r\nSSH-2.0-Go\r\n", ("ssh", Confidence.HIGH, "Go", None)),
    (b"220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n",
     ("smtp", Confidence.HIGH, "Postfix", None)),
    (b"220 mx.example.net ESMTP Exim 4.96 Mon, 04 Mar 2024\r\n",
     ("smtp", Confidence.HIGH, "Exim", "4.96")),
    (b"220 (vsFTPd 3.0.3)\r\n", ("ftp", Confidence.HIGH, "vsftpd", "3.0.3")),
    (b"220 ProFTPD Server (Debian) [::ffff:192.0.2.20]\r\n",
     ("ftp", Confidence.HIGH, "ProFTPD", None)),
    (b"220 ProFTPD 1.3.8 Server (Debian)\r\n", ("ftp", Confidence.HIGH, "ProFTPD", "1.3.8")),
    (b"+OK Dovecot (Debian) ready.\r\n", ("pop3", Confidence.HIGH, "Dovecot", None)),
    (b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.\r\n",
     ("imap", Confidence.HIGH, "Dovecot", None)),
    (b"200 news.example.com InterNetNews NNRP server INN 2.7.1 ready\r\n",
     ("nntp", Confidence.HIGH, "INN", "2.7.1")),
    (b'"IMPLEMENTATION" "Dovecot Pigeonhole"\r\n', ("sieve", Confidence.HIGH, "Dovecot", None)),
    (b"RFB 003.008\n", ("vnc", Confidence.HIGH, None, "003.008")),
    (b"\xff\xfd\x18\xff\xfd\x20", ("telnet", Confidence.HIGH, None, None)),
    (MARIADB, ("mysql", Confidence.HIGH, "MariaDB", "10.11.6")),
    (b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n\r\n",
     ("http", Confidence.HIGH, "nginx", "1.22.1")),
    (b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\n",
     ("http", Confidence.HIGH, "SimpleHTTP", "0.6")),
    (b"HTTP/1.1 200 OK\r\nServer: Apache\r\n\r\n", ("http", Confidence.HIGH, "Apache", None)),
    (b":irc.example.net 451 * :You have not registered\r\n",
     ("irc", Confidence.HIGH, None, None)),
])
def test_spontaneous_banners(data: bytes,
                             expected: tuple[str, Confidence, str | None, str | None]) -> None:
    assert named(data) == expected


def test_ssh_comment_and_protocol_are_kept() -> None:
    guess = identify(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    assert guess is not None and guess.info == "Debian-2+deb12u3"
    assert guess.fact("protocol") == "2.0"


def test_mariadb_says_whether_it_offers_tls() -> None:
    guess = identify(MARIADB)
    assert guess is not None and guess.fact("tls") == "offered"
    assert guess.info == "10.11.6-MariaDB-0+deb12u1"


def test_a_bare_220_leans_on_the_port() -> None:
    assert named(b"220 ready\r\n", port=21) == ("ftp", Confidence.LOW, None, None)
    assert named(b"220 ready\r\n", port=25) == ("smtp", Confidence.MEDIUM, None, None)
    assert named(b"220 ready\r\n") == ("smtp", Confidence.LOW, None, None)


def test_mysql_refusal_is_still_mysql() -> None:
    guess = identify(MYSQL_DENIED)
    assert guess is not None and guess.name == "mysql" and "1130" in guess.detail


def test_unknown_bytes_name_nothing() -> None:
    assert identify(b"") is None
    assert identify(b"\x00\x01\x02garbage") is None


@pytest.mark.parametrize(("data", "detail"), [
    (b"+PONG\r\n", "PING answered +PONG"),
    (b"-NOAUTH Authentication required.\r\n", "authentication required"),
    (b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n",
     "protected mode"),
])
def test_redis_answers_ping(data: bytes, detail: str) -> None:
    guess = identify(data, probe="redis")
    assert guess is not None and guess.name == "redis" and guess.confidence is Confidence.HIGH
    assert guess.detail.startswith(detail)


def test_postgres_answers_sslrequest() -> None:
    assert identify(b"S", probe="postgres") == ServiceGuess(
        "postgres", "SSLRequest answered S: TLS available", Confidence.HIGH,
        product="PostgreSQL", facts=(("tls", "available"),))
    guess = identify(b"N", probe="postgres")
    assert guess is not None and "TLS off" in guess.detail
    # Without the probe a lone "S" means nothing.
    assert identify(b"S") is None


def test_mqtt_probe_and_connack() -> None:
    assert mqtt_connect_probe() == b"\x10\x18\x00\x04MQTT\x04\x02\x00\x0a\x00\x0ctcpcli-probe"
    assert mqtt_disconnect() == b"\xe0\x00"
    accepted = identify(b"\x20\x02\x00\x00", probe="mqtt")
    assert accepted is not None and accepted.detail == "CONNACK: connection accepted"
    refused = identify(b"\x20\x02\x00\x05", probe="mqtt")
    assert refused is not None and refused.detail == "CONNACK: not authorized"
    with pytest.raises(LocalProtocolError):
        mqtt_connect_probe("bad id\r\n")


def test_http_probe() -> None:
    assert http_head_probe("example.com").startswith(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n")
    assert b"Host: [::1]\r\n" in http_head_probe("::1")
    assert http_head_probe().endswith(b"\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        http_head_probe("evil\r\nX-Injected: 1")


def test_tls_alert() -> None:
    guess = identify(bytes.fromhex("15030300020228"), probe="tls")
    assert guess == ServiceGuess("tls", "TLS alert handshake_failure", Confidence.HIGH, "TLS 1.2")


def _server_reply(context: ssl.SSLContext, hello: bytes) -> bytes:
    """Feed our ClientHello to a real TLS server (memory BIOs, no socket) and get its reply."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello)
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    return outgoing.read()


def test_client_hello_against_openssl_tls13(server_ssl_context: ssl.SSLContext) -> None:
    reply = _server_reply(server_ssl_context, client_hello("localhost"))
    guess = identify(reply, probe="tls")
    assert guess is not None and guess.name == "tls" and guess.version == "TLS 1.3"
    assert guess.detail.startswith("TLS 1.3, server hello, TLS_")


def test_client_hello_against_openssl_tls12(tls_ca: object) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    tls_ca.issue_cert("localhost").configure_cert(context)  # type: ignore[attr-defined]
    reply = parse_tls_reply(_server_reply(context, client_hello("localhost")))
    assert reply is not None and reply.version == "TLS 1.2"
    assert reply.kind == "server-hello" and reply.cipher is not None
    assert reply.cipher.startswith("ECDHE-")


def test_client_hello_is_deterministic_when_asked() -> None:
    fixed = {"random": bytes(32), "key_share": bytes(32), "session_id": bytes(32)}
    assert client_hello("a.example", **fixed) == client_hello("a.example", **fixed)
    assert b"a.example" in client_hello("a.example", **fixed)
    assert b"127.0.0.1" not in client_hello("127.0.0.1", **fixed)  # no SNI for literals
    with pytest.raises(LocalProtocolError):
        client_hello("bad..name")


def test_probes_for_silent_services() -> None:
    assert [name for name, _ in probes_for_silent_service(6379)][:1] == ["redis"]
    assert probes_for_silent_service(5432)[0] == ("postgres", SSL_REQUEST)
    assert probes_for_silent_service(1883)[0][0] == "mqtt"
    assert probes_for_silent_service(8080)[0][0] == "http"
    assert probes_for_silent_service(None)[0][0] == "tls"
    for port in (6379, 5432, None, 12345):
        probes = probes_for_silent_service(port, host="db.example")
        assert sorted(name for name, _ in probes) == ["http", "mqtt", "postgres", "redis", "tls"]
        assert all(payload for _, payload in probes)
    assert probes_for_silent_service(80)[0][1].startswith(b"HEAD / HTTP/1.1\r\nHost: localhost")


@pytest.mark.parametrize(("data", "probe", "more"), [
    (b"", None, True),
    (b"SSH-2.0-Open", None, True),
    (b"SSH-2.0-OpenSSH_9.2p1\r\n", None, False),
    (bytes.fromhex("160303003a02"), None, True),
    (bytes.fromhex("15030300020228"), None, False),
    (MARIADB[:20], None, True),
    (MARIADB, None, False),
    (b"HTTP/1.1 200 OK\r\nServer: x\r\n", None, True),
    (b"HTTP/1.1 200 OK\r\n\r\n", None, False),
    (b"S", "postgres", False),
    (b"\x20\x02", "mqtt", True),
])
def test_wants_more(data: bytes, probe: str | None, more: bool) -> None:
    assert wants_more(data, probe=probe) is more



@pytest.mark.parametrize("probe", ["tls", "http", "redis", "postgres", "mqtt"])
def test_an_echo_service_is_named_as_such_not_as_the_protocol_we_spoke(probe: str) -> None:
    payload = dict(probes_for_silent_service(None))[probe]
    for echoed in (payload, payload[:1]):
        guess = identify(echoed, probe=probe, sent=payload)
        assert guess is not None and guess.name == "echo", (probe, echoed)
    # Without knowing what was sent, an echoed ClientHello looked like a TLS server.
    if probe == "tls":
        assert identify(payload, probe=probe).name == "tls"  # type: ignore[union-attr]


def test_a_real_answer_is_not_mistaken_for_an_echo() -> None:
    guess = identify(b"+PONG\r\n", probe="redis", sent=REDIS_PING)
    assert guess is not None and guess.name == "redis"
